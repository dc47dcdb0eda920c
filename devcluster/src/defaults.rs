//! What the apiserver fills in or checks on create: name validation and per-type defaults.

use serde_json::{Map, Value, json};

use crate::core::Core;
use crate::json::{get_path, meta_mut, set_path};
use crate::registry::ResourceDef;
use crate::status::Cause;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// Checks an object name for a resource; the causes of a 422 when it is invalid.
pub(crate) fn validate_name(res: &ResourceDef, name: &str) -> Vec<Cause> {
    let label_names = matches!(&*res.storage, "/namespaces" | "/services");
    let ok = if label_names {
        is_label(name)
    } else {
        is_subdomain(name)
    };
    if ok {
        return Vec::new();
    }
    let why = if label_names {
        LABEL_MSG
    } else {
        SUBDOMAIN_MSG
    };
    vec![Cause::new(
        "FieldValueInvalid",
        format!("Invalid value: \"{name}\": {why}"),
        "metadata.name",
    )]
}

/// Checks `metadata.labels` keys and values; the causes of a 422 when some are invalid.
pub(crate) fn validate_labels(obj: &Map<String, Value>) -> Vec<Cause> {
    let Some(labels) = crate::json::meta(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    for (k, v) in labels {
        if !crate::selector::valid_key(k) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
                "metadata.labels",
            ));
        }
        match v.as_str() {
            Some(s) if crate::selector::valid_value(s) => {}
            _ => {
                let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    format!("Invalid value: \"{shown}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
                    "metadata.labels",
                ));
            }
        }
    }
    causes
}

/// Random suffix for `generateName`, from the apiserver's alphabet.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Applies the create-time defaults of built-in types.
pub(crate) fn on_create(core: &mut Core, res: &ResourceDef, obj: &mut Map<String, Value>) {
    match &*res.storage {
        "/namespaces" => {
            let name = crate::json::meta_str(obj, "name")
                .unwrap_or_default()
                .to_owned();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), Value::from(name));
            }
            set_path(obj, &["spec", "finalizers"], json!(["kubernetes"]));
            obj.insert("status".into(), json!({"phase": "Active"}));
        }
        "/pods" => {
            obj.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
            let spec = obj.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                for (k, v) in [
                    ("restartPolicy", json!("Always")),
                    ("dnsPolicy", json!("ClusterFirst")),
                    ("schedulerName", json!("default-scheduler")),
                    ("terminationGracePeriodSeconds", json!(30)),
                    ("securityContext", json!({})),
                    ("enableServiceLinks", json!(true)),
                    ("preemptionPolicy", json!("PreemptLowerPriority")),
                    ("priority", json!(0)),
                    ("serviceAccountName", json!("default")),
                    ("serviceAccount", json!("default")),
                ] {
                    spec.entry(k).or_insert(v);
                }
                default_containers(spec);
                default_tolerations(spec);
                crate::auth::serviceaccounts::mount_token(spec);
            }
        }
        "/services" => {
            let spec = obj.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                let ty = spec
                    .entry("type")
                    .or_insert_with(|| json!("ClusterIP"))
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                spec.entry("sessionAffinity")
                    .or_insert_with(|| json!("None"));
                if ty != "ExternalName" {
                    if spec
                        .get("clusterIP")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        let n = core.next_cluster_ip;
                        core.next_cluster_ip += 1;
                        let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
                        spec.insert("clusterIP".into(), json!(ip));
                    }
                    let ip = spec.get("clusterIP").cloned().unwrap_or_default();
                    spec.entry("clusterIPs").or_insert_with(|| json!([ip]));
                    spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
                    spec.entry("ipFamilyPolicy")
                        .or_insert_with(|| json!("SingleStack"));
                    spec.entry("internalTrafficPolicy")
                        .or_insert_with(|| json!("Cluster"));
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert_with(|| json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            p.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
            obj.insert("status".into(), json!({"loadBalancer": {}}));
        }
        "/secrets" => {
            obj.entry("type").or_insert_with(|| json!("Opaque"));
        }
        "apps/deployments" => {
            // Typed status structs are always present; no controller fills them here.
            obj.insert("status".into(), json!({}));
            let spec = obj.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("replicas").or_insert(json!(1));
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                default_rolling(
                    spec,
                    "strategy",
                    &[("maxSurge", json!("25%")), ("maxUnavailable", json!("25%"))],
                );
                default_template(spec);
            }
        }
        "apps/replicasets" | "apps/statefulsets" | "apps/daemonsets" => {
            obj.insert("status".into(), json!({}));
            let spec = obj.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                match res.plural.as_str() {
                    "statefulsets" => {
                        spec.entry("replicas").or_insert(json!(1));
                        spec.entry("podManagementPolicy")
                            .or_insert_with(|| json!("OrderedReady"));
                        spec.entry("revisionHistoryLimit").or_insert(json!(10));
                        default_rolling(spec, "updateStrategy", &[("partition", json!(0))]);
                        spec.entry("persistentVolumeClaimRetentionPolicy")
                            .or_insert_with(
                                || json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                            );
                    }
                    "daemonsets" => {
                        spec.entry("revisionHistoryLimit").or_insert(json!(10));
                        default_rolling(
                            spec,
                            "updateStrategy",
                            &[("maxSurge", json!(0)), ("maxUnavailable", json!(1))],
                        );
                    }
                    _ => {
                        spec.entry("replicas").or_insert(json!(1));
                    }
                }
                default_template(spec);
            }
        }
        _ => {
            if res.custom && res.status_subresource {
                obj.remove("status");
            }
        }
    }
    mutate_secret(res, obj);
}

/// Secrets fold `stringData` into base64 `data`, on every write.
pub(crate) fn mutate_secret(res: &ResourceDef, obj: &mut Map<String, Value>) {
    if &*res.storage != "/secrets" {
        return;
    }
    if let Some(Value::Object(string_data)) = obj.remove("stringData") {
        use base64::Engine;
        let data = obj.entry("data").or_insert_with(|| json!({}));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default().to_owned();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

/// The `DefaultTolerationSeconds` admission plugin: tolerate not-ready and unreachable nodes for 300 s.
/// A workload's strategy as the apiserver defaults it, field by field: an
/// absent or empty type is RollingUpdate, whose absent settings take their
/// defaults (so `strategy: {}`, as `kubectl create deployment` sends it, is
/// filled too).
fn default_rolling(spec: &mut Map<String, Value>, key: &str, settings: &[(&str, Value)]) {
    let strategy = spec.entry(key).or_insert_with(|| json!({}));
    let Some(strategy) = strategy.as_object_mut() else {
        return;
    };
    let kind = strategy
        .entry("type")
        .or_insert_with(|| json!("RollingUpdate"));
    if kind.as_str() != Some("RollingUpdate") {
        return;
    }
    let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
    if let Some(rolling) = rolling.as_object_mut() {
        for (name, value) in settings {
            rolling
                .entry((*name).to_owned())
                .or_insert_with(|| value.clone());
        }
    }
}

fn default_tolerations(pod_spec: &mut Map<String, Value>) {
    let list = pod_spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let present = list.iter().any(|t| {
            t.get("key").and_then(Value::as_str) == Some(key)
                && t.get("effect")
                    .and_then(Value::as_str)
                    .is_none_or(|e| e == "NoExecute")
        });
        if !present {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    if let Some(pod_spec) = spec
        .get_mut("template")
        .and_then(Value::as_object_mut)
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        for (k, v) in [
            ("restartPolicy", json!("Always")),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("securityContext", json!({})),
        ] {
            pod_spec.entry(k).or_insert(v);
        }
        default_containers(pod_spec);
    }
}

fn default_containers(pod_spec: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                !i.contains('@')
                    && i.rsplit('/')
                        .next()
                        .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"))
            });
            c.entry("imagePullPolicy")
                .or_insert_with(|| json!(if latest { "Always" } else { "IfNotPresent" }));
            c.entry("terminationMessagePath")
                .or_insert_with(|| json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy")
                .or_insert_with(|| json!("File"));
            c.entry("resources").or_insert_with(|| json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.entry("protocol").or_insert_with(|| json!("TCP"));
                }
            }
        }
    }
}

/// The value at a CRD-style JSON path such as `.spec.replicas`.
pub(crate) fn at_json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    get_path(obj, &parts)
}

/// Sets the value at a CRD-style JSON path.
pub(crate) fn set_json_path(obj: &mut Map<String, Value>, path: &str, value: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    set_path(obj, &parts, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_per_resource() {
        let reg = crate::registry::Registry::builtin();
        let cm = reg.find("", "v1", "configmaps").unwrap();
        let ns = reg.find("", "v1", "namespaces").unwrap();
        assert!(validate_name(&cm, "a.b-c").is_empty());
        assert!(!validate_name(&cm, "Upper").is_empty());
        assert!(!validate_name(&ns, "a.b").is_empty());
        assert_eq!(random_suffix().len(), 5);
    }
}
