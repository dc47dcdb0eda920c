//! Drives the devcluster with kube-rs and checks the answers a real kube-apiserver gives.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use devcluster::{DevCluster, FaultRule, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::{Client, Config};
use serde_json::{Value, json};

/// How long any awaited condition may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

async fn start(options: Options) -> Result<(DevCluster, Client)> {
    let dev = DevCluster::start(options).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = Client::try_from(config)?;
    Ok((dev, client))
}

async fn cluster() -> Result<(DevCluster, Client)> {
    start(Options::new()).await
}

/// The Status of a failed call.
fn status<T: std::fmt::Debug>(r: kube::Result<T>) -> Box<Status> {
    match r {
        Err(kube::Error::Api(s)) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Deletes the `kube-root-ca.crt` ConfigMap every namespace holds, for tests that count the
/// ConfigMaps of `default`.
async fn without_root_ca(api: &Api<ConfigMap>) -> Result<()> {
    api.delete("kube-root-ca.crt", &DeleteParams::default())
        .await?;
    Ok(())
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"a": "1"}}))
        .expect("valid ConfigMap")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
        }
    }))
    .expect("valid Deployment")
}

/// Sends a raw request; returns status code and body.
async fn raw(
    client: &Client,
    method: &str,
    uri: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, String)> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await?;
    Ok((code, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Polls `check` until it returns `Some`, failing after `WAIT`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn widget_crd(scope: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
            }],
        },
    })
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

async fn create_widget_crd(client: &Client) -> Result<()> {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(widget_crd("Namespaced"))?;
    let created = crds.create(&PostParams::default(), &crd).await?;
    let conditions = created.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for ty in ["Established", "NamesAccepted"] {
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == ty && c["status"] == "True"),
            "{ty} condition missing: {conditions:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn anonymous_requests_are_forbidden_and_bad_tokens_get_401() -> Result<()> {
    let (dev, _) = cluster().await?;
    let with_token = |token: Option<&str>| {
        let mut kubeconfig = kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?;
        for user in &mut kubeconfig.auth_infos {
            if let Some(info) = user.auth_info.as_mut() {
                info.token = token.map(|t| t.to_owned().into());
            }
        }
        anyhow::Ok(kubeconfig)
    };
    let config = Config::from_custom_kubeconfig(with_token(None)?, &Default::default()).await?;
    let anonymous = Client::try_from(config)?;
    let s = status(
        Api::<ConfigMap>::default_namespaced(anonymous)
            .list(&ListParams::default())
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.message,
        r#"configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" in API group "" in the namespace "default""#
    );
    let config =
        Config::from_custom_kubeconfig(with_token(Some("wrong"))?, &Default::default()).await?;
    let s = status(
        Api::<ConfigMap>::default_namespaced(Client::try_from(config)?)
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        (s.code, s.reason.as_str(), s.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
    Ok(())
}

#[tokio::test]
async fn discovery_lists_groups_resources_and_subresources() -> Result<()> {
    let (_dev, client) = cluster().await?;
    assert_eq!(client.apiserver_version().await?.major, "1");
    let apps = client.list_api_group_resources("apps/v1").await?;
    let deploy = apps
        .resources
        .iter()
        .find(|r| r.name == "deployments")
        .context("deployments")?;
    assert!(deploy.namespaced);
    assert_eq!(deploy.kind, "Deployment");
    assert_eq!(
        deploy.short_names.as_deref(),
        Some(&["deploy".to_owned()][..])
    );
    assert!(
        apps.resources
            .iter()
            .any(|r| r.name == "deployments/scale" && r.kind == "Scale")
    );
    assert!(
        apps.resources
            .iter()
            .any(|r| r.name == "deployments/status")
    );
    let core = client.list_core_api_resources("v1").await?;
    assert!(
        core.resources
            .iter()
            .any(|r| r.name == "namespaces" && !r.namespaced)
    );
    let groups = client.list_api_groups().await?;
    for g in [
        "apps",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
    ] {
        assert!(
            groups.groups.iter().any(|x| x.name == g),
            "group {g} missing"
        );
    }
    let req = http::Request::builder()
        .uri("/apis")
        .header(
            "accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(kube::client::Body::empty())?;
    let resp = client.send(req).await?;
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.contains("as=APIGroupDiscoveryList"),
        "{content_type}"
    );
    let aggregated: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await?)?;
    let apps = aggregated["items"]
        .as_array()
        .context("items")?
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .context("apps")?;
    let deployments = apps["versions"][0]["resources"]
        .as_array()
        .context("resources")?
        .iter()
        .find(|r| r["resource"] == "deployments")
        .context("deployments")?;
    assert_eq!(deployments["scope"], "Namespaced");
    assert!(
        deployments["subresources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["subresource"] == "scale"))
    );
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    assert!(discovery.has_group("apps"));
    let namespaces: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        namespaces,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let (code, body) = raw(&client, "GET", "/apis/apps/v9", "application/json", "").await?;
    assert_eq!(code, 404);
    assert!(body.contains("\"kind\":\"Status\""), "{body}");
    Ok(())
}

#[tokio::test]
async fn create_get_update_and_conflicts_of_configmaps() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = api.create(&PostParams::default(), &cm("one")).await?;
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, None, "ConfigMaps have no generation");
    let rv = meta.resource_version.clone().context("rv")?;

    let s = status(api.create(&PostParams::default(), &cm("one")).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        s.details.as_ref().map(|d| d.kind.as_str()),
        Some("configmaps")
    );

    // A no-op update keeps the resourceVersion.
    let same = api.replace("one", &PostParams::default(), &created).await?;
    assert_eq!(same.metadata.resource_version.as_deref(), Some(rv.as_str()));

    let mut changed = created.clone();
    changed.data = Some([("a".to_owned(), "2".to_owned())].into());
    let updated = api.replace("one", &PostParams::default(), &changed).await?;
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );

    // The stale copy now conflicts.
    let s = status(api.replace("one", &PostParams::default(), &changed).await);
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("the object has been modified"),
        "{}",
        s.message
    );

    let s = status(
        api.replace("missing", &PostParams::default(), &cm("missing"))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        s.details
            .as_ref()
            .map(|d| (d.name.as_str(), d.kind.as_str())),
        Some(("missing", "configmaps"))
    );

    let s = status(api.create(&PostParams::default(), &cm("Bad_Name")).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let details = s.details.context("details")?;
    assert_eq!(details.kind, "ConfigMap");
    assert_eq!(details.causes[0].reason, "FieldValueInvalid");
    assert_eq!(details.causes[0].field, "metadata.name");

    let s = status(
        Api::<ConfigMap>::namespaced(client.clone(), "nowhere")
            .create(&PostParams::default(), &cm("x"))
            .await,
    );
    assert_eq!(s.code, 404);
    assert_eq!(s.details.map(|d| d.kind), Some("namespaces".to_owned()));
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), "nowhere")
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );

    let bad_label: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "lbl", "labels": {"ok": "not ok!"}}}))?;
    let s = status(api.create(&PostParams::default(), &bad_label).await);
    assert_eq!(s.code, 422);
    assert_eq!(
        s.details.map(|d| d.causes[0].field.clone()),
        Some("metadata.labels".to_owned())
    );

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = api.create(&dry, &cm("dry")).await?;
    assert_eq!(answered.metadata.name.as_deref(), Some("dry"));
    assert!(
        api.get_opt("dry").await?.is_none(),
        "dryRun=All stores nothing"
    );

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}}))?;
    let g = api.create(&PostParams::default(), &generated).await?;
    let name = g.metadata.name.context("generated name")?;
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let s = api
        .delete("one", &DeleteParams::default())
        .await?
        .right()
        .context("a plain delete answers a Status")?;
    assert_eq!(s.code, 0, "a plain delete's Status has no code");
    assert_eq!(
        s.details.map(|d| (d.kind, d.uid)),
        Some((
            "configmaps".to_owned(),
            created.metadata.uid.unwrap_or_default()
        ))
    );
    assert_eq!(status(api.get("one").await).code, 404);
    Ok(())
}

#[tokio::test]
async fn raw_wire_format_and_odd_requests() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        r#"{"metadata":{"name":"w"},"data":{"k":"v"}}"#,
    )
    .await?;
    assert_eq!(code, 201);
    assert!(
        body.starts_with(r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#),
        "{body}"
    );
    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "",
    )
    .await?;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body)?;
    assert!(
        list["items"][0].get("kind").is_none(),
        "list items carry no kind"
    );
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps/w",
        "application/json",
        "{}",
    )
    .await?;
    assert_eq!(code, 405);
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        r#"{"metadata":{"name":"rv","resourceVersion":"5"}}"#,
    )
    .await?;
    assert_eq!(code, 500, "{body}");
    let (code, _) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/w",
        "text/plain",
        "{}",
    )
    .await?;
    assert_eq!(code, 415);
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/vnd.kubernetes.protobuf",
        "k8s\0",
    )
    .await?;
    assert_eq!(code, 400, "the magic alone is an empty protobuf body");
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/yaml",
        "metadata:\n  name: from-yaml\n",
    )
    .await?;
    assert_eq!(code, 201, "{body}");
    let (code, body) = raw(
        &client,
        "GET",
        "/apis/example.com/v1/widgets",
        "application/json",
        "",
    )
    .await?;
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));
    Ok(())
}

#[tokio::test]
async fn generation_status_and_scale_subresources_of_deployments() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await?;
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.clone().context("spec")?;
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await?;
    assert_eq!(labelled.metadata.generation, Some(1), "labels are not spec");

    let status_patch =
        json!({"spec": {"replicas": 7}, "status": {"replicas": 1, "readyReplicas": 1}});
    let st = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(status_patch))
        .await?;
    assert_eq!(
        st.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "/status ignores spec"
    );
    assert_eq!(st.status.as_ref().and_then(|s| s.ready_replicas), Some(1));
    assert_eq!(st.metadata.generation, Some(1));

    let main = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 5}})),
        )
        .await?;
    assert_eq!(
        main.status.as_ref().and_then(|s| s.ready_replicas),
        Some(1),
        "main resource ignores status"
    );

    let scale = api.get_scale("web").await?;
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert_eq!(
        scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .as_deref(),
        Some("app=web")
    );
    let scaled = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(3));
    let after = api.get("web").await?;
    assert_eq!(after.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        after.metadata.generation,
        Some(2),
        "a scale moves the generation"
    );

    let sidecar = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}});
    let merged = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(sidecar))
        .await?;
    let names: Vec<String> = merged
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    assert_eq!(names, ["sidecar", "app"]);
    assert_eq!(merged.metadata.generation, Some(3));
    Ok(())
}

#[tokio::test]
async fn patch_errors_match_the_apiserver() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("p")).await?;
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"a": "2"}});
    let s = status(
        api.patch("p", &PatchParams::default(), &Patch::Merge(stale))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    let path = "/api/v1/namespaces/default/configmaps/p";
    let json_patch = "application/json-patch+json";
    let (code, body) = raw(
        &client,
        "PATCH",
        path,
        json_patch,
        r#"[{"op":"test","path":"/data/a","value":"9"}]"#,
    )
    .await?;
    assert_eq!(code, 422, "failed test op: {body}");
    let (code, _) = raw(
        &client,
        "PATCH",
        path,
        json_patch,
        r#"[{"op":"remove","path":"/data/nope"}]"#,
    )
    .await?;
    assert_eq!(code, 422, "removing a missing path");
    let (code, _) = raw(&client, "PATCH", path, json_patch, "{oops").await?;
    assert_eq!(code, 400, "malformed patch");
    let (code, _) = raw(
        &client,
        "PATCH",
        path,
        json_patch,
        r#"[{"op":"replace","path":"/data/a","value":"3"}]"#,
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(
        api.get("p")
            .await?
            .data
            .and_then(|d| d.get("a").cloned())
            .as_deref(),
        Some("3")
    );
    Ok(())
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_reports_conflicts() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "a"}});
    let a = api
        .patch("ssa", &PatchParams::apply("mgr-a"), &Patch::Apply(&body))
        .await?;
    let rv = a.metadata.resource_version.clone();
    let fields = a.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(fields.len(), 1);
    assert_eq!(
        (fields[0].manager.as_deref(), fields[0].operation.as_deref()),
        (Some("mgr-a"), Some("Apply"))
    );

    let again = api
        .patch("ssa", &PatchParams::apply("mgr-a"), &Patch::Apply(&body))
        .await?;
    assert_eq!(
        again.metadata.resource_version, rv,
        "re-applying identical content is a no-op"
    );

    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "b"}});
    let s = status(
        api.patch("ssa", &PatchParams::apply("mgr-b"), &Patch::Apply(&other))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Apply failed with 1 conflict: conflict with \"mgr-a\": .data.shared"
    );
    let details = s.details.context("details")?;
    assert_eq!((details.name.as_str(), details.kind.as_str()), ("", ""));
    assert_eq!(
        (
            details.causes[0].reason.as_str(),
            details.causes[0].field.as_str()
        ),
        ("FieldManagerConflict", ".data.shared")
    );

    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(&other),
        )
        .await?;
    assert_eq!(
        forced
            .data
            .and_then(|d| d.get("shared").cloned())
            .as_deref(),
        Some("b")
    );
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["mgr-b"]);

    let (code, body) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa",
        "application/apply-patch+yaml",
        "data:\n  x: y\n",
    )
    .await?;
    assert_eq!(code, 422, "apply without fieldManager: {body}");
    let (code, body) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/yaml?fieldManager=m",
        "application/apply-patch+yaml",
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: y\n",
    )
    .await?;
    assert_eq!(
        code, 201,
        "apply creates, taking the name from the URL: {body}"
    );

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(&PostParams::default(), &deployment("d", 1))
        .await?;
    let with_sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}});
    let applied = deploys
        .patch(
            "d",
            &PatchParams::apply("side").force(),
            &Patch::Apply(&with_sidecar),
        )
        .await?;
    let names: Vec<String> = applied
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        ["app", "sidecar"],
        "apply merges containers by name and appends"
    );
    Ok(())
}

#[tokio::test]
async fn lists_select_sort_and_paginate() -> Result<()> {
    let (dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    without_root_ca(&api).await?;
    for (name, tier) in [
        ("e", "web"),
        ("c", "db"),
        ("a", "web"),
        ("d", "cache"),
        ("b", "web"),
    ] {
        let obj: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}}))?;
        api.create(&PostParams::default(), &obj).await?;
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(api.list(&ListParams::default()).await?),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().labels("tier=web")).await?),
        ["a", "b", "e"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (db,cache)"))
                .await?
        ),
        ["c", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier,tier notin (web)"))
                .await?
        ),
        ["c", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=c"))
                .await?
        ),
        ["c"]
    );
    assert_eq!(
        status(
            api.list(&ListParams::default().labels("tier in (web"))
                .await
        )
        .code,
        400
    );
    assert_eq!(
        status(api.list(&ListParams::default().fields("spec.nope=1")).await).code,
        400
    );
    assert_eq!(
        status(
            api.list(&ListParams::default().continue_token("garbage"))
                .await
        )
        .code,
        400
    );

    let first = api.list(&ListParams::default().limit(2)).await?;
    let rv = first.metadata.resource_version.clone();
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().context("continue")?;
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await?;
    assert_eq!(second.metadata.remaining_item_count, Some(1));
    assert_eq!(second.metadata.resource_version, rv);
    let token = second.metadata.continue_.clone().context("continue")?;
    let third = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await?;
    assert_eq!(third.metadata.remaining_item_count, None);
    assert!(
        third
            .metadata
            .continue_
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(third.metadata.resource_version, rv);
    assert_eq!(
        [names(first), names(second), names(third)].concat(),
        ["a", "b", "c", "d", "e"]
    );

    let stale = api
        .list(&ListParams::default().limit(2))
        .await?
        .metadata
        .continue_
        .context("continue")?;
    dev.expire_watch_history();
    let s = status(
        api.list(&ListParams::default().limit(2).continue_token(&stale))
            .await,
    );
    assert_eq!(
        (s.code, s.reason.as_str()),
        (410, "Expired"),
        "a continue token older than the history"
    );

    let selected = api
        .list(&ListParams::default().labels("tier=web").limit(1))
        .await?;
    assert_eq!(
        selected.metadata.remaining_item_count, None,
        "no remainingItemCount with a selector"
    );
    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?limit=2&resourceVersion=0",
        "application/json",
        "",
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["items"]
            .as_array()
            .map(Vec::len),
        Some(5),
        "limit ignored with resourceVersion=0"
    );
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?resourceVersionMatch=NotOlderThan",
        "application/json",
        "",
    )
    .await?;
    assert_eq!(code, 422);
    Ok(())
}

async fn next_event<S>(stream: &mut S) -> Result<WatchEvent<ConfigMap>>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    loop {
        let ev = tokio::time::timeout(WAIT, stream.next())
            .await
            .context("no watch event in time")?
            .context("watch ended")??;
        if !matches!(ev, WatchEvent::Bookmark(_)) {
            return Ok(ev);
        }
    }
}

fn name_of(ev: &WatchEvent<ConfigMap>) -> String {
    match ev {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
            o.metadata.name.clone().unwrap_or_default()
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn watches_replay_resume_filter_and_expire() -> Result<()> {
    let (dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    without_root_ca(&api).await?;
    api.create(&PostParams::default(), &cm("old")).await?;
    let mut from_zero = api.watch(&WatchParams::default(), "0").await?.boxed();
    let ev = next_event(&mut from_zero).await?;
    assert!(
        matches!(ev, WatchEvent::Added(_)) && name_of(&ev) == "old",
        "{ev:?}"
    );
    assert_eq!(dev.watches_open("", "configmaps"), 1);

    let created = api.create(&PostParams::default(), &cm("new")).await?;
    let rv = created.metadata.resource_version.clone().context("rv")?;
    assert!(matches!(
        next_event(&mut from_zero).await?,
        WatchEvent::Added(_)
    ));
    api.patch(
        "new",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await?;
    assert!(matches!(
        next_event(&mut from_zero).await?,
        WatchEvent::Modified(_)
    ));
    api.delete("new", &DeleteParams::default()).await?;
    let ev = next_event(&mut from_zero).await?;
    assert!(
        matches!(ev, WatchEvent::Deleted(_)) && name_of(&ev) == "new",
        "{ev:?}"
    );

    // Resuming from a resourceVersion replays what came after it.
    let mut resumed = api.watch(&WatchParams::default(), &rv).await?.boxed();
    assert!(matches!(
        next_event(&mut resumed).await?,
        WatchEvent::Modified(_)
    ));
    assert!(matches!(
        next_event(&mut resumed).await?,
        WatchEvent::Deleted(_)
    ));

    // A label selector turns leaving into DELETED and entering into ADDED.
    let mut selected = api
        .watch(&WatchParams::default().labels("pick=yes"), &rv)
        .await?
        .boxed();
    api.patch(
        "old",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": "yes"}}})),
    )
    .await?;
    assert!(matches!(
        next_event(&mut selected).await?,
        WatchEvent::Added(_)
    ));
    api.patch(
        "old",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": "no"}}})),
    )
    .await?;
    assert!(matches!(
        next_event(&mut selected).await?,
        WatchEvent::Deleted(_)
    ));

    // Closing watches ends the streams.
    dev.close_watches();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(ev) = from_zero.next().await {
            ev?;
        }
        Ok::<_, kube::Error>(())
    })
    .await;
    assert!(matches!(ended, Ok(Ok(()))), "watch did not end: {ended:?}");

    // Too old: HTTP 200, then one ERROR event with 410 Expired.
    dev.expire_watch_history();
    let mut expired = api.watch(&WatchParams::default(), &rv).await?.boxed();
    match next_event(&mut expired).await? {
        WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => bail!("expected 410, got {other:?}"),
    }
    assert!(dev.watches_opened("", "configmaps") >= 4);
    Ok(())
}

#[tokio::test]
async fn watch_timeout_bookmarks_and_streaming_lists() -> Result<()> {
    let (_dev, client) =
        start(Options::new().bookmark_interval(Duration::from_millis(100))).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    without_root_ca(&api).await?;
    api.create(&PostParams::default(), &cm("x")).await?;
    let started = tokio::time::Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await?
        .boxed();
    let mut seen_bookmark = false;
    api.create(&PostParams::default(), &cm("y")).await?;
    let drained = tokio::time::timeout(WAIT, async {
        while let Some(ev) = stream.next().await {
            if let WatchEvent::Bookmark(b) = ev? {
                assert!(!b.metadata.resource_version.is_empty());
                seen_bookmark = true;
            }
        }
        Ok::<_, kube::Error>(())
    })
    .await;
    assert!(
        matches!(drained, Ok(Ok(()))),
        "watch did not end at its timeout: {drained:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(seen_bookmark, "a bookmark arrives once the cluster moved");

    // kube-runtime's streaming list: initial events end with the initial-events-end bookmark.
    let cfg = kube::runtime::watcher::Config::default().streaming_lists();
    let mut events = kube::runtime::watcher(api.clone(), cfg).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .context("watcher stalled")??
        {
            Some(kube::runtime::watcher::Event::InitApply(o)) => {
                initial.push(o.metadata.name.unwrap_or_default())
            }
            Some(kube::runtime::watcher::Event::InitDone) => break,
            Some(_) => {}
            None => bail!("watcher ended"),
        }
    }
    initial.sort();
    assert_eq!(initial, ["x", "y"]);
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true",
        "application/json",
        "",
    )
    .await?;
    assert_eq!(
        code, 422,
        "sendInitialEvents needs resourceVersionMatch=NotOlderThan"
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_and_cannot_be_added_while_deleting() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let obj: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    )?;
    api.create(&PostParams::default(), &obj).await?;
    let held = api
        .delete("f", &DeleteParams::default())
        .await?
        .left()
        .context("a held delete answers the object")?;
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let s = status(
        api.patch("f", &PatchParams::default(), &Patch::Merge(add))
            .await,
    );
    assert_eq!(s.code, 422);
    assert_eq!(
        s.details.map(|d| d.causes[0].reason.clone()),
        Some("FieldValueForbidden".to_owned())
    );
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"still": "allowed"}})),
    )
    .await?;
    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert_eq!(status(api.get("f").await).code, 404);

    api.create(&PostParams::default(), &cm("pre")).await?;
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let s = status(api.delete("pre", &wrong).await);
    assert_eq!(
        (s.code, s.details.map(|d| d.kind)),
        (409, Some("ConfigMap".to_owned()))
    );
    Ok(())
}

fn owned_by(name: &str, owner: &ConfigMap) -> Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": true,
        }]}}),
    )?)
}

#[tokio::test]
async fn garbage_collection_follows_the_propagation_policy() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for policy in ["bg", "fg", "orphan"] {
        let owner = api
            .create(&PostParams::default(), &cm(&format!("{policy}-owner")))
            .await?;
        api.create(
            &PostParams::default(),
            &owned_by(&format!("{policy}-child"), &owner)?,
        )
        .await?;
    }
    api.delete("bg-owner", &DeleteParams::background()).await?;
    let a = api.clone();
    eventually("background dependent gone", || {
        let a = a.clone();
        async move { Ok(a.get_opt("bg-child").await?.is_none().then_some(())) }
    })
    .await?;

    let o = api
        .delete("fg-owner", &DeleteParams::foreground())
        .await?
        .left()
        .context("foreground delete answers the object")?;
    assert!(
        o.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_owned())
    );
    let a = api.clone();
    eventually("foreground owner and dependent gone", || {
        let a = a.clone();
        async move {
            Ok(
                (a.get_opt("fg-owner").await?.is_none() && a.get_opt("fg-child").await?.is_none())
                    .then_some(()),
            )
        }
    })
    .await?;

    let o = api
        .delete("orphan-owner", &DeleteParams::orphan())
        .await?
        .left()
        .context("orphan delete answers the object")?;
    assert!(
        o.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"orphan".to_owned())
    );
    let a = api.clone();
    eventually("orphan owner gone", || {
        let a = a.clone();
        async move { Ok(a.get_opt("orphan-owner").await?.is_none().then_some(())) }
    })
    .await?;
    let ghost: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "ghost-child", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "00000000-0000-0000-0000-000000000000",
        }]}}),
    )?;
    api.create(&PostParams::default(), &ghost).await?;
    let a = api.clone();
    eventually("dependent of a missing owner collected", || {
        let a = a.clone();
        async move { Ok(a.get_opt("ghost-child").await?.is_none().then_some(())) }
    })
    .await?;
    let child = api.get("orphan-child").await?;
    assert!(
        child
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "orphans lose the reference"
    );
    Ok(())
}

#[tokio::test]
async fn namespace_deletion_terminates_then_removes_contents() -> Result<()> {
    let (_dev, client) =
        start(Options::new().namespace_deletion_delay(Duration::from_secs(1))).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )?;
    api.create(&PostParams::default(), &held).await?;
    let s = status(
        namespaces
            .delete("kube-system", &DeleteParams::default())
            .await,
    );
    assert_eq!(
        (s.code, s.reason.as_str()),
        (403, "Forbidden"),
        "system namespaces cannot be deleted"
    );
    let n = namespaces
        .delete("doomed", &DeleteParams::default())
        .await?
        .left()
        .context("namespace delete answers the namespace")?;
    assert_eq!(
        n.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(
        namespaces
            .delete("doomed", &DeleteParams::default())
            .await?
            .is_left(),
        "a second delete is 200 too"
    );
    let s = status(api.create(&PostParams::default(), &cm("late")).await);
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        s.details.map(|d| d.causes[0].reason.clone()),
        Some("NamespaceTerminating".to_owned())
    );
    let a = api.clone();
    eventually("held object marked for deletion", || {
        let a = a.clone();
        async move {
            Ok(a.get_opt("held")
                .await?
                .and_then(|o| o.metadata.deletion_timestamp)
                .map(|_| ()))
        }
    })
    .await?;
    assert!(
        namespaces.get_opt("doomed").await?.is_some(),
        "a finalizer inside holds the namespace"
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    let n = namespaces.clone();
    eventually("namespace gone", || {
        let n = n.clone();
        async move { Ok(n.get_opt("doomed").await?.is_none().then_some(())) }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_served_scaled_and_removed_with_their_crd() -> Result<()> {
    let (_dev, client) = cluster().await?;
    create_widget_crd(&client).await?;
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &widget_resource());
    let w: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}, "status": {"size": 9}}),
    )?;
    let created = widgets.create(&PostParams::default(), &w).await?;
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create with the status subresource"
    );
    let scale = widgets.get_scale("w").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    widgets
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    let after = widgets.get("w").await?;
    assert_eq!(after.data["spec"]["size"], 5);
    assert_eq!(after.metadata.generation, Some(2));
    let st = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"size": 5}})),
        )
        .await?;
    assert_eq!(st.data["status"]["size"], 5);
    assert_eq!(st.metadata.generation, Some(2));
    let s = status(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 1}})),
            )
            .await,
    );
    assert_eq!(s.code, 415);
    let discovered = client.list_api_group_resources("example.com/v1").await?;
    assert!(
        discovered
            .resources
            .iter()
            .any(|r| r.name == "widgets/scale")
    );

    widgets.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"}}))?).await?;
    widgets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().fields("metadata.name=w2"),
        )
        .await?;
    assert!(widgets.get_opt("w2").await?.is_none());

    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let mut watching = widgets.watch(&WatchParams::default(), "0").await?.boxed();
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await?;
    let mut deleted = Vec::new();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(ev) = watching.next().await {
            if let WatchEvent::Deleted(o) = ev? {
                deleted.push(o.metadata.name.unwrap_or_default());
            }
        }
        Ok::<_, kube::Error>(())
    })
    .await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the watch ends with its CRD: {ended:?}"
    );
    assert_eq!(
        deleted,
        ["w"],
        "objects removed with their CRD are seen as DELETED"
    );
    let c = client.clone();
    eventually("custom resource path gone", || {
        let c = c.clone();
        async move {
            let (code, _) = raw(
                &c,
                "GET",
                "/apis/example.com/v1/namespaces/default/widgets",
                "application/json",
                "",
            )
            .await?;
            Ok((code == 404).then_some(()))
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn metadata_only_views() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    without_root_ca(&api).await?;
    api.create(&PostParams::default(), &cm("m")).await?;
    let list = api.list_metadata(&ListParams::default()).await?;
    assert_eq!(list.types.kind, "PartialObjectMetadataList");
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("m"));
    assert_eq!(
        list.items[0].types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata"),
        "each item names its kind"
    );
    let one = api.get_metadata("m").await?;
    assert_eq!(
        one.types.map(|t| (t.api_version, t.kind)),
        Some((
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadata".to_owned()
        ))
    );
    let mut events = api
        .watch_metadata(&WatchParams::default(), "0")
        .await?
        .boxed();
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .context("no metadata watch event")?
        .context("ended")??;
    assert!(
        matches!(first, WatchEvent::Added(ref o) if o.metadata.name.as_deref() == Some("m")),
        "{first:?}"
    );
    Ok(())
}

#[tokio::test]
async fn events_are_one_store_seen_through_two_apis() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let new_api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "e1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "paddock.dev/test",
        "reportingInstance": "test-1",
        "action": "Reconcile",
        "reason": "Scaled",
        "note": "scaled to 3",
        "type": "Normal",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default"},
    }))?;
    new_api.create(&PostParams::default(), &event).await?;
    let old_api: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let core = old_api.get("e1").await?;
    assert_eq!(core.message.as_deref(), Some("scaled to 3"));
    assert_eq!(core.involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        core.reporting_component.as_deref(),
        Some("paddock.dev/test")
    );
    let patched = new_api
        .patch(
            "e1",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "scaled to 4"})),
        )
        .await?;
    assert_eq!(patched.note.as_deref(), Some("scaled to 4"));
    assert_eq!(
        old_api.get("e1").await?.message.as_deref(),
        Some("scaled to 4")
    );
    Ok(())
}

#[tokio::test]
async fn tables_carry_the_columns_kubectl_prints() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await?;
    let req = http::Request::builder()
        .uri("/apis/apps/v1/namespaces/default/deployments")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(kube::client::Body::empty())?;
    let body = client.send(req).await?.into_body().collect_bytes().await?;
    let table: Value = serde_json::from_slice(&body)?;
    assert_eq!(
        (table["kind"].as_str(), table["apiVersion"].as_str()),
        (Some("Table"), Some("meta.k8s.io/v1"))
    );
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .context("columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (cells[0].as_str(), cells[1].as_str(), cells[7].as_str()),
        (Some("web"), Some("0/2"), Some("app=web"))
    );
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    Ok(())
}

#[tokio::test]
async fn data_dir_keeps_objects_and_custom_resources_across_restarts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let (dev, client) = start(Options::new().data_dir(dir.path())).await?;
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &cm("kept"))
            .await?;
        create_widget_crd(&client).await?;
        let widgets: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "default", &widget_resource());
        let w: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}),
        )?;
        widgets.create(&PostParams::default(), &w).await?;
        dev.shutdown().await;
    }
    let (_dev, client) = start(Options::new().data_dir(dir.path())).await?;
    let kept = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .get("kept")
        .await?;
    assert_eq!(
        kept.data.and_then(|d| d.get("a").cloned()).as_deref(),
        Some("1")
    );
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &widget_resource());
    assert_eq!(widgets.get("w").await?.data["spec"]["size"], 1);
    let next = Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm("after"))
        .await?;
    let rv: u64 = next.metadata.resource_version.context("rv")?.parse()?;
    let old: u64 = kept.metadata.resource_version.context("rv")?.parse()?;
    assert!(rv > old, "resourceVersions keep growing across restarts");
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_pruned_and_checked_against_their_schema() -> Result<()> {
    let (_dev, client) = cluster().await?;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let mut crd = widget_crd("Namespaced");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
    });
    crds.create(&PostParams::default(), &serde_json::from_value(crd)?)
        .await?;
    let path = "/apis/example.com/v1/namespaces/default/widgets";
    let send = |uri: String, body: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(body.as_bytes().to_vec()))?;
            let resp = client.send(req).await?;
            let code = resp.status().as_u16();
            let warning = resp
                .headers()
                .get("warning")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body: Value = serde_json::from_slice(&resp.into_body().collect_bytes().await?)?;
            Ok::<_, anyhow::Error>((code, warning, body))
        }
    };
    let (code, warning, body) = send(path.to_owned(), r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"a"},"spec":{"size":1,"extra":true}}"#).await?;
    assert_eq!(code, 201, "{body}");
    assert_eq!(warning, r#"299 - "unknown field \"spec.extra\"""#);
    assert_eq!(
        body["spec"],
        json!({"size": 1}),
        "unknown fields are dropped"
    );
    let (code, _, body) = send(format!("{path}?fieldValidation=Strict"), r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"b"},"spec":{"extra":true}}"#).await?;
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = send(path.to_owned(), r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"c"},"spec":{"size":"big"}}"#).await?;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["reason"],
        "FieldValueTypeInvalid"
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.size");
    assert_eq!(
        body["details"]["causes"][1]["reason"], "FieldValueInvalid",
        "the scale subresource checks its path too"
    );
    assert_eq!(body["details"]["causes"][1]["field"], ".spec.size");
    Ok(())
}

#[tokio::test]
async fn the_admin_endpoint_drives_faults_and_reports_counters() -> Result<()> {
    let (dev, client) = cluster().await?;
    let rule = r#"{"verb":"get","group":"","resource":"configmaps","kind":"conflict","times":1}"#;
    let (code, _) = raw(
        &client,
        "POST",
        "/devcluster/v1/faults",
        "application/json",
        rule,
    )
    .await?;
    assert_eq!(code, 200);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert_eq!(status(api.get("x").await).code, 409);
    assert_eq!(
        status(api.get("x").await).code,
        404,
        "the fault was used up"
    );
    let (code, body) = raw(
        &client,
        "GET",
        "/devcluster/v1/counters",
        "application/json",
        "",
    )
    .await?;
    assert_eq!(code, 200);
    let counters: Value = serde_json::from_str(&body)?;
    let gets = counters["requests"]
        .as_array()
        .context("requests")?
        .iter()
        .find(|r| r["verb"] == "get" && r["resource"] == "configmaps")
        .context("get configmaps counter")?;
    assert_eq!(gets["count"], 2);
    let (code, _) = raw(
        &client,
        "PUT",
        "/devcluster/v1/simulator",
        "application/json",
        r#"{"enabled":true}"#,
    )
    .await?;
    assert_eq!(code, 200);
    let (code, _) = raw(
        &client,
        "POST",
        "/devcluster/v1/close-watches",
        "application/json",
        "",
    )
    .await?;
    assert_eq!(code, 200);
    let (code, _) = raw(
        &client,
        "POST",
        "/devcluster/v1/faults",
        "application/json",
        "{\"kind\":\"nope\"}",
    )
    .await?;
    assert_eq!(code, 400, "a malformed rule is refused");
    assert_eq!(dev.requests("get", "", "configmaps"), 2);
    Ok(())
}

#[tokio::test]
async fn faults_and_counters() -> Result<()> {
    let (dev, client) = cluster().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // kube-rs retries 429 by itself: two failures, then the answer, three requests in all.
    dev.inject(
        FaultRule::too_many_requests()
            .verb("list")
            .resource("", "configmaps")
            .times(2)
            .retry_after_seconds(0),
    );
    api.list(&ListParams::default()).await?;
    assert_eq!(dev.requests("list", "", "configmaps"), 3);
    let (code, body) = {
        dev.inject(
            FaultRule::too_many_requests()
                .verb("get")
                .resource("", "configmaps")
                .retry_after_seconds(0)
                .times(1),
        );
        let plain = Client::try_from({
            let mut config = Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?,
                &Default::default(),
            )
            .await?;
            config.default_retry = false;
            config
        })?;
        raw(
            &plain,
            "GET",
            "/api/v1/namespaces/default/configmaps/x",
            "application/json",
            "",
        )
        .await?
    };
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("\"reason\":\"TooManyRequests\""), "{body}");
    dev.inject(FaultRule::internal_error().verb("create"));
    assert_eq!(
        status(api.create(&PostParams::default(), &cm("boom")).await).code,
        500
    );
    dev.inject(FaultRule::conflict().resource("", "configmaps"));
    assert_eq!(status(api.get("anything").await).code, 409);
    dev.set_latency(Duration::from_millis(50));
    let t = tokio::time::Instant::now();
    api.list(&ListParams::default()).await?;
    assert!(t.elapsed() >= Duration::from_millis(50));
    dev.set_latency(Duration::ZERO);

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let _w1 = deploys.watch(&WatchParams::default(), "0").await?.boxed();
    let _w2 = deploys.watch(&WatchParams::default(), "0").await?.boxed();
    assert_eq!(dev.watches_opened("apps", "deployments"), 2);
    assert_eq!(dev.watches_open("apps", "deployments"), 2);
    drop(_w1);
    let d = &dev;
    eventually("a dropped watch is noticed", || async move {
        Ok((d.watches_open("apps", "deployments") == 1).then_some(()))
    })
    .await?;
    dev.close_watches();
    let d = &dev;
    eventually("watches closed", || async move {
        Ok((d.watches_open("apps", "deployments") == 0).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_workload_simulator_makes_status_follow_replicas() -> Result<()> {
    let (dev, client) = start(Options::new().workload_simulator(true)).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment("sim", 3))
        .await?;
    let a = api.clone();
    let ready = |want: i32| {
        let a = a.clone();
        move || {
            let a = a.clone();
            async move {
                let d = a.get("sim").await?;
                let s = d.status.unwrap_or_default();
                Ok((s.ready_replicas == Some(want)
                    && s.observed_generation == d.metadata.generation)
                    .then_some(()))
            }
        }
    };
    eventually("3 ready", ready(3)).await?;
    api.patch_scale(
        "sim",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await?;
    eventually("5 ready", ready(5)).await?;
    dev.set_workload_simulator(false);
    Ok(())
}
