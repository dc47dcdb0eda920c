//! Protobuf on the wire: kubectl's protobuf request bodies for built-in kinds, and protobuf
//! answers (objects, lists, errors, watch frames) read back with a decoder written here from
//! the protobuf encoding rules alone.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use devcluster::{DevCluster, Options};
use http_body_util::BodyExt;
use kube::{Client, Config};
use serde_json::{Value, json};

use common::Kubectl;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// How long one frame of a watch may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

async fn client(dev: &DevCluster) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(Client::try_from(config)?)
}

/// One field of a protobuf message: its number and either a varint or length-delimited bytes.
#[derive(Debug, Clone, PartialEq)]
enum Wire {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn varint(buf: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().context("varint runs off the end")?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint too long")
}

/// Every field of one message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Wire)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            2 => {
                let len = usize::try_from(varint(&mut buf)?)?;
                ensure!(len <= buf.len(), "field {} runs off the end", key >> 3);
                let (head, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(head.to_vec())
            }
            t => bail!("wire type {t} is not used by these messages"),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

/// The bytes of field `n` (the first one).
fn bytes(msg: &[u8], n: u64) -> Result<Vec<u8>> {
    fields(msg)?
        .into_iter()
        .find_map(|(k, v)| match v {
            Wire::Bytes(b) if k == n => Some(b),
            _ => None,
        })
        .with_context(|| format!("no field {n}"))
}

/// The bytes of every field `n`.
fn all_bytes(msg: &[u8], n: u64) -> Result<Vec<Vec<u8>>> {
    Ok(fields(msg)?
        .into_iter()
        .filter_map(|(k, v)| match v {
            Wire::Bytes(b) if k == n => Some(b),
            _ => None,
        })
        .collect())
}

fn text(msg: &[u8], n: u64) -> Result<String> {
    Ok(String::from_utf8(bytes(msg, n)?)?)
}

fn number(msg: &[u8], n: u64) -> Result<u64> {
    fields(msg)?
        .into_iter()
        .find_map(|(k, v)| match v {
            Wire::Varint(x) if k == n => Some(x),
            _ => None,
        })
        .with_context(|| format!("no varint field {n}"))
}

/// Opens a `k8s\0` body: `(apiVersion, kind, message)`, checking the envelope's last two
/// fields are Go's empty content encoding and type.
fn envelope(body: &[u8]) -> Result<(String, String, Vec<u8>)> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .with_context(|| format!("no k8s\\0 magic: {:?}", &body[..body.len().min(8)]))?;
    let f = fields(rest)?;
    ensure!(f.len() == 4, "envelope has {} fields", f.len());
    ensure!(f[2] == (3, Wire::Bytes(Vec::new())) && f[3] == (4, Wire::Bytes(Vec::new())));
    let type_meta = bytes(rest, 1)?;
    Ok((text(&type_meta, 1)?, text(&type_meta, 2)?, bytes(rest, 2)?))
}

async fn get(client: &Client, uri: &str, accept: &str) -> Result<(u16, String, Vec<u8>)> {
    let req = http::Request::builder()
        .uri(uri)
        .header("accept", accept)
        .body(kube::client::Body::empty())?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.into_body().collect_bytes().await?;
    Ok((code, content_type, body.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_built_in_kinds_with_protobuf_bodies() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let k = Kubectl::new(dir.path(), "kubeconfig", &dev.kubeconfig_yaml())?;

    // kubectl sends each of these as protobuf and reads the protobuf answer back.
    let out = k
        .run(&["create", "deployment", "web", "--image=nginx"])
        .await?;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let out = k
        .run(&["create", "service", "clusterip", "web", "--tcp=80:8080"])
        .await?;
    assert_eq!(out.trim(), "service/web created");
    let out = k
        .run(&["create", "secret", "generic", "s", "--from-literal=a=b"])
        .await?;
    assert_eq!(out.trim(), "secret/s created");
    let out = k
        .run(&[
            "run",
            "p",
            "--image=busybox",
            "--labels=app=p",
            "--",
            "sleep",
            "3600",
        ])
        .await?;
    assert_eq!(out.trim(), "pod/p created");

    let d = k.json(&["get", "deployment", "web"]).await?;
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    let template = &d["spec"]["template"];
    assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(template["metadata"]["creationTimestamp"], Value::Null);
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["name"], "nginx");
    assert_eq!(container["image"], "nginx");
    assert_eq!(container["resources"], json!({}));
    assert!(
        d["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()),
        "{d}"
    );
    // Go always writes empty strings; JSON leaves them out, and so must the decoded object.
    assert!(d["metadata"].get("generateName").is_none(), "{d}");
    assert!(container.get("workingDir").is_none(), "{container}");

    let s = k.json(&["get", "service", "web"]).await?;
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["selector"], json!({"app": "web"}));
    let port = &s["spec"]["ports"][0];
    assert_eq!(port["name"], "80-8080");
    assert_eq!(port["port"], 80);
    assert_eq!(port["protocol"], "TCP");
    assert_eq!(port["targetPort"], 8080);

    let secret = k.json(&["get", "secret", "s"]).await?;
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"], json!({"a": "Yg=="}));

    let pod = k.json(&["get", "pod", "p"]).await?;
    assert_eq!(pod["metadata"]["labels"], json!({"app": "p"}));
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["name"], "p");
    assert_eq!(container["image"], "busybox");
    assert_eq!(container["args"], json!(["sleep", "3600"]));
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_answers_for_gets_lists_watches_and_errors() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = client(&dev).await?;
    let accept = "application/vnd.kubernetes.protobuf, */*";
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "default");
    let cm = serde_json::from_value(
        json!({"metadata": {"name": "c1", "labels": {"a": "b"}}, "data": {"k": "v"}}),
    )?;
    cms.create(&Default::default(), &cm).await?;

    // A get: the enveloped ConfigMap.
    let (code, content_type, body) =
        get(&client, "/api/v1/namespaces/default/configmaps/c1", accept).await?;
    assert_eq!((code, content_type.as_str()), (200, PROTOBUF));
    let (api_version, kind, raw) = envelope(&body)?;
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    let meta = bytes(&raw, 1)?;
    assert_eq!(text(&meta, 1)?, "c1");
    assert_eq!(text(&meta, 3)?, "default");
    let label = bytes(&meta, 11)?;
    assert_eq!(
        (text(&label, 1)?, text(&label, 2)?),
        ("a".into(), "b".into())
    );
    let data = bytes(&raw, 2)?;
    assert_eq!((text(&data, 1)?, text(&data, 2)?), ("k".into(), "v".into()));
    let rv: u64 = text(&meta, 6)?.parse()?;

    // A list: ListMeta at 1 and the items at 2, each a bare ConfigMap message.
    let (code, content_type, body) =
        get(&client, "/api/v1/namespaces/default/configmaps", accept).await?;
    assert_eq!((code, content_type.as_str()), (200, PROTOBUF));
    let (api_version, kind, raw) = envelope(&body)?;
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("v1", "ConfigMapList")
    );
    let names: Vec<String> = all_bytes(&raw, 2)?
        .iter()
        .map(|item| text(&bytes(item, 1)?, 1))
        .collect::<Result<_>>()?;
    assert!(names.contains(&"c1".to_owned()), "{names:?}");
    assert!(text(&bytes(&raw, 1)?, 2)?.parse::<u64>()? >= rv);

    // An error: a Status message with its code at 6.
    let (code, content_type, body) = get(
        &client,
        "/api/v1/namespaces/default/configmaps/none",
        accept,
    )
    .await?;
    assert_eq!((code, content_type.as_str()), (404, PROTOBUF));
    let (api_version, kind, raw) = envelope(&body)?;
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "Status"));
    assert_eq!(text(&raw, 4)?, "NotFound");
    assert_eq!(number(&raw, 6)?, 404);
    assert_eq!(text(&raw, 3)?, "configmaps \"none\" not found");

    // A watch from before c1: frames of a 4-byte big-endian length and a WatchEvent.
    let req = http::Request::builder()
        .uri(format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}",
            rv - 1
        ))
        .header("accept", accept)
        .body(kube::client::Body::empty())?;
    let resp = client.send(req).await?;
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/vnd.kubernetes.protobuf;stream=watch")
    );
    let mut body = resp.into_body();
    let mut buffered = Vec::new();
    let mut next_frame = async || -> Result<Vec<u8>> {
        loop {
            if buffered.len() >= 4 {
                let len = u32::from_be_bytes(buffered[..4].try_into()?) as usize;
                if buffered.len() >= 4 + len {
                    let frame = buffered[4..4 + len].to_vec();
                    buffered.drain(..4 + len);
                    return Ok(frame);
                }
            }
            let chunk = tokio::time::timeout(WAIT, body.frame())
                .await
                .context("no watch frame in time")?
                .context("watch ended")??;
            if let Ok(data) = chunk.into_data() {
                buffered.extend_from_slice(&data);
            }
        }
    };
    let event = next_frame().await?;
    assert_eq!(text(&event, 1)?, "ADDED");
    let (api_version, kind, raw) = envelope(&bytes(&bytes(&event, 2)?, 1)?)?;
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    assert_eq!(text(&bytes(&raw, 1)?, 1)?, "c1");
    cms.delete("c1", &Default::default()).await?;
    let event = next_frame().await?;
    assert_eq!(text(&event, 1)?, "DELETED");
    let (_, _, raw) = envelope(&bytes(&bytes(&event, 2)?, 1)?)?;
    assert_eq!(text(&bytes(&raw, 1)?, 1)?, "c1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_answer_json_their_errors_protobuf() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = client(&dev).await?;
    let crds: kube::Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = kube::Api::all(client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))?;
    crds.create(&Default::default(), &crd).await?;
    let uri = "/apis/example.com/v1/namespaces/default/widgets";

    // The CRD itself is built-in: protobuf.
    let (code, content_type, body) = get(
        &client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        PROTOBUF,
    )
    .await?;
    assert_eq!((code, content_type.as_str()), (200, PROTOBUF));
    assert_eq!(envelope(&body)?.1, "CustomResourceDefinition");

    // Protobuf first, JSON allowed: JSON, as a real server answers for custom resources.
    let (code, content_type, body) = get(
        &client,
        uri,
        "application/vnd.kubernetes.protobuf, application/json",
    )
    .await?;
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let list: Value = serde_json::from_slice(&body)?;
    assert_eq!(list["kind"], "WidgetList");

    // Nothing but protobuf: 406 NotAcceptable, a Status written as protobuf.
    let (code, content_type, body) = get(&client, uri, PROTOBUF).await?;
    assert_eq!((code, content_type.as_str()), (406, PROTOBUF));
    let (_, kind, status) = envelope(&body)?;
    assert_eq!(kind, "Status");
    assert_eq!(text(&status, 4)?, "NotAcceptable");
    assert_eq!(
        text(&status, 3)?,
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );

    // Errors are Status objects: protobuf when preferred, for custom resources too.
    let (code, content_type, body) = get(
        &client,
        &format!("{uri}/none"),
        "application/vnd.kubernetes.protobuf, application/json",
    )
    .await?;
    assert_eq!((code, content_type.as_str()), (404, PROTOBUF));
    assert_eq!(number(&envelope(&body)?.2, 6)?, 404);

    // Nothing the server writes: 406 in JSON.
    let (code, content_type, _) = get(&client, uri, "text/html").await?;
    assert_eq!((code, content_type.as_str()), (406, "application/json"));

    // A protobuf body for a custom resource: read into an object with no kind, a 400.
    let req = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", PROTOBUF)
        .header("accept", "application/json")
        .body(kube::client::Body::from(
            b"k8s\0\x0a\x18\x0a\x0eexample.com/v1\x12\x06Widget".to_vec(),
        ))?;
    let resp = client.send(req).await?;
    assert_eq!(resp.status().as_u16(), 400);
    let status: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await?)?;
    assert_eq!(
        status["message"],
        "Widget in version \"v1\" cannot be handled as a Widget: Object 'Kind' is missing in 'object has no kind field '"
    );
    Ok(())
}

/// A length-delimited field.
fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![
        (field << 3) | 2,
        u8::try_from(bytes.len()).expect("short field"),
    ];
    out.extend_from_slice(bytes);
    out
}

/// A `k8s\0` body holding `raw` as `apiVersion` `kind`.
fn enveloped(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, raw)].concat()
}

async fn send(client: &Client, method: &str, uri: &str, body: Vec<u8>) -> Result<(u16, Value)> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", PROTOBUF)
        .header("accept", "application/json")
        .body(kube::client::Body::from(body))?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await?;
    Ok((code, serde_json::from_slice(&body)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_updates_and_delete_options_arrive_as_protobuf() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = client(&dev).await?;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), "default");
    let d = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))?;
    deployments.create(&Default::default(), &d).await?;
    let uri = "/apis/apps/v1/namespaces/default/deployments/web";

    // Scale: metadata {name: web} at 1, spec {replicas: 3} at 2.
    let scale = [ld(1, &ld(1, b"web")), ld(2, &[0x08, 3])].concat();
    let (code, body) = send(
        &client,
        "PUT",
        &format!("{uri}/scale"),
        enveloped("autoscaling/v1", "Scale", &scale),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["replicas"], 3);
    assert_eq!(
        deployments.get("web").await?.spec.and_then(|s| s.replicas),
        Some(3)
    );

    // DeleteOptions with dryRun: ["All"] at 5, sent as client-go does under the resource's
    // group version: the Deployment survives.
    let options = ld(5, b"All");
    let (code, body) = send(
        &client,
        "DELETE",
        uri,
        enveloped("apps/v1", "DeleteOptions", &options),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    assert!(deployments.get_opt("web").await?.is_some());
    let (code, _) = send(
        &client,
        "DELETE",
        uri,
        enveloped("apps/v1", "DeleteOptions", &[]),
    )
    .await?;
    assert_eq!(code, 200);
    assert!(deployments.get_opt("web").await?.is_none());

    // A body in a format the server does not read: 415, listing protobuf among those it does.
    let req = http::Request::builder()
        .method("POST")
        .uri("/apis/apps/v1/namespaces/default/deployments")
        .header("content-type", "text/plain")
        .body(kube::client::Body::from(b"{}".to_vec()))?;
    let resp = client.send(req).await?;
    assert_eq!(resp.status().as_u16(), 415);
    let status: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await?)?;
    assert_eq!(
        status["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );

    // A malformed body: the apiserver's 400.
    let (code, body) = send(
        &client,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        enveloped("apps/v1", "Deployment", &[0x0a, 0x05, 0x0a]),
    )
    .await?;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: unexpected EOF"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_built_in_resource_lists_as_protobuf() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = client(&dev).await?;
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    let mut listed = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if !caps.supports_operation(kube::discovery::verbs::LIST) {
                continue;
            }
            let uri = match resource.group.as_str() {
                "" => format!("/api/{}/{}", resource.version, resource.plural),
                g => format!("/apis/{g}/{}/{}", resource.version, resource.plural),
            };
            let (code, content_type, body) = get(&client, &uri, PROTOBUF).await?;
            assert_eq!(
                (code, content_type.as_str()),
                (200, PROTOBUF),
                "{uri}: {}",
                String::from_utf8_lossy(&body)
            );
            let (api_version, kind, _) = envelope(&body)?;
            assert_eq!(api_version, resource.api_version, "{uri}");
            assert_eq!(kind, format!("{}List", resource.kind), "{uri}");
            listed.push(resource.plural);
        }
    }
    for plural in [
        "configmaps",
        "deployments",
        "pods",
        "leases",
        "clusterroles",
    ] {
        assert!(listed.iter().any(|p| p == plural), "{plural} in {listed:?}");
    }
    Ok(())
}
