//! What kube-controller-manager and ServiceAccount admission add: a `default` ServiceAccount and
//! the `kube-root-ca.crt` ConfigMap in every namespace, the token volume of Pods, and TokenRequest.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::authn::Authenticator;
use super::tokens::{Grant, ISSUER, ObjectClaim};
use crate::core::{Core, Target};
use crate::json::{encode_typed, meta, meta_str, now_rfc3339};
use crate::status::{ApiError, Cause};

/// The ConfigMap holding the cluster CA in every namespace.
const ROOT_CA: &str = "kube-root-ca.crt";
/// Where Pods find their token, namespace and CA.
const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The shortest and default lifetime of a requested token, in seconds.
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;

fn new_object(name: &str, namespace: &str) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert(
        "metadata".into(),
        json!({
            "name": name,
            "namespace": namespace,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now_rfc3339(),
        }),
    );
    obj
}

/// Gives every active namespace its `default` ServiceAccount and an up-to-date `kube-root-ca.crt`.
pub(crate) fn ensure_namespace_objects(core: &mut Core) {
    let namespaces: Vec<String> = core
        .store
        .iter("/namespaces", None)
        .map(|(k, s)| (k.1.clone(), s.decode()))
        .filter(|(_, n)| !meta(n).is_some_and(|m| m.contains_key("deletionTimestamp")))
        .map(|(name, _)| name)
        .collect();
    let accounts: Arc<str> = Arc::from("/serviceaccounts");
    let configmaps: Arc<str> = Arc::from("/configmaps");
    for ns in namespaces {
        if core.store.get(&accounts, &ns, "default").is_none() {
            core.store.put(&accounts, new_object("default", &ns));
        }
        let current = core
            .store
            .get(&configmaps, &ns, ROOT_CA)
            .map(|s| s.decode());
        let up_to_date = current.as_ref().is_some_and(|c| {
            c.get("data")
                .and_then(|d| d.get("ca.crt"))
                .and_then(Value::as_str)
                == Some(core.root_ca.as_str())
        });
        if up_to_date {
            continue;
        }
        let mut cm = current.unwrap_or_else(|| {
            let mut cm = new_object(ROOT_CA, &ns);
            crate::json::meta_mut(&mut cm).insert(
                "annotations".into(),
                json!({"kubernetes.io/description": ROOT_CA_DESCRIPTION}),
            );
            cm
        });
        cm.insert("data".into(), json!({"ca.crt": core.root_ca}));
        core.store.put(&configmaps, cm);
    }
}

/// Adds the projected `kube-api-access-xxxxx` volume and its mounts to a Pod spec, as the
/// ServiceAccount admission plugin does, unless the Pod opts out or mounts the path itself.
pub(crate) fn mount_token(spec: &mut Map<String, Value>) {
    if spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)) {
        return;
    }
    let mounted = ["containers", "initContainers"].iter().any(|list| {
        spec.get(*list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("volumeMounts").and_then(Value::as_array))
            .flatten()
            .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT))
    });
    if mounted {
        return;
    }
    let name = format!("kube-api-access-{}", crate::defaults::random_suffix());
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(volume);
    }
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT});
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(m) = mounts.as_array_mut() {
                m.push(mount.clone());
            }
        }
    }
}

fn invalid(name: &str, value: i64, why: &str) -> ApiError {
    ApiError::invalid(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![Cause::new(
            "FieldValueInvalid",
            format!("Invalid value: {value}: {why}"),
            "spec.expirationSeconds",
        )],
    )
}

/// `POST .../serviceaccounts/NAME/token`: a signed token for the ServiceAccount, for the asked
/// audiences (default: the API server) and lifetime (default one hour, at least ten minutes),
/// optionally bound to a Pod or Secret.
pub(crate) fn token_request(
    core: &Core,
    authn: &Authenticator,
    t: &Target,
    body: &[u8],
    content_type: &str,
) -> Result<(u16, Bytes), ApiError> {
    let request = crate::write::parse_object(body, content_type, "TokenRequest", false)?;
    let (ns, name) = (t.ns(), t.name());
    let sa = core
        .store
        .get("/serviceaccounts", ns, name)
        .ok_or_else(|| t.not_found())?
        .decode();
    let uid = meta_str(&sa, "uid").unwrap_or_default();
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(ISSUER.to_owned());
    }
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            name,
            expiration,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            name,
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null());
    let (mut pod, mut secret) = (None, None);
    if let Some(bound) = bound {
        let kind = bound
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bound_name = bound
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (storage, plural) = match kind {
            "Pod" => ("/pods", "pods"),
            "Secret" => ("/secrets", "secrets"),
            _ => {
                return Err(ApiError::invalid(
                    "TokenRequest",
                    "authentication.k8s.io",
                    name,
                    vec![Cause::new(
                        "FieldValueNotSupported",
                        format!(
                            "Unsupported value: \"{kind}\": supported values: \"Pod\", \"Secret\""
                        ),
                        "spec.boundObjectRef.kind",
                    )],
                ));
            }
        };
        let object = core
            .store
            .get(storage, ns, bound_name)
            .ok_or_else(|| ApiError::not_found(plural, "", bound_name))?
            .decode();
        let object_uid = meta_str(&object, "uid").unwrap_or_default().to_owned();
        if let Some(want) = bound
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            && want != object_uid
        {
            return Err(ApiError::conflict(
                plural,
                "",
                bound_name,
                &format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let claim = Some(ObjectClaim {
            name: bound_name.to_owned(),
            uid: object_uid,
        });
        if kind == "Pod" {
            pod = claim;
        } else {
            secret = claim;
        }
    }
    let grant = Grant {
        namespace: ns,
        name,
        uid,
        audiences: &audiences,
        expiration_seconds: expiration,
        pod,
        secret,
    };
    let (token, claims) = authn
        .issue(&grant)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": bound.cloned().unwrap_or(Value::Null),
        },
        "status": {"token": token, "expirationTimestamp": expires},
    });
    Ok((201, encode_typed(&response)))
}
