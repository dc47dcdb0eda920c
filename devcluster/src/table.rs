//! Server-side `Table`s (`Accept: ...;as=Table;g=meta.k8s.io;v=v1`), the columns `kubectl get` prints.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::core::Target;
use crate::json::{decode, encode_typed, get_path, metadata_only, with_type};

/// One column: name, type, format, priority (1 = only with `-o wide`).
type Column = (&'static str, &'static str, &'static str, u8);

const NAME: Column = ("Name", "string", "name", 0);
const AGE: Column = ("Age", "string", "", 0);
/// The apiserver's default table, for kinds without a printer (Roles, LimitRanges, ...).
const CREATED_AT: Column = ("Created At", "date", "", 0);

/// The apiserver's `HumanDuration`: `45s`, `3m20s`, `2h5m`, `4d3h`, `2y30d`.
pub(crate) fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn since(v: Option<&Value>) -> Value {
    let Some(ts) = v.and_then(Value::as_str) else {
        return Value::from("<unknown>");
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => Value::from(human_duration(
            jiff::Timestamp::now().as_second() - t.as_second(),
        )),
        Err(_) => Value::from("<unknown>"),
    }
}

fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    get_path(obj, &parts)
}

fn int(obj: &Value, path: &str) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn text(obj: &Value, path: &str) -> String {
    at(obj, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn count(obj: &Value, path: &str) -> i64 {
    at(obj, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len() as i64)
}

fn containers_and_images(obj: &Value, path: &str) -> (Value, Value) {
    let list = at(obj, path)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = list
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let images: Vec<&str> = list
        .iter()
        .filter_map(|c| c.get("image").and_then(Value::as_str))
        .collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

fn selector(obj: &Value, path: &str) -> Value {
    Value::from(crate::scale::selector_string(at(obj, path)).unwrap_or_default())
}

fn or_none(s: String) -> Value {
    Value::from(if s.is_empty() { "<none>".to_owned() } else { s })
}

/// A status condition's `status`, by type.
fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    at(obj, "status.conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))?
        .get("status")?
        .as_str()
}

/// Whether a status condition of this type is `True`.
fn has_condition(obj: &Value, kind: &str) -> bool {
    condition(obj, kind) == Some("True")
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    get_path(obj, &["metadata", "annotations", key]).and_then(Value::as_str)
}

/// Seconds since the epoch of an RFC 3339 timestamp.
fn timestamp(value: Option<&Value>) -> Option<i64> {
    value?
        .as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// A `*bool` as the printers print it: `False` when unset.
fn go_bool_ptr(value: Option<&Value>) -> &'static str {
    match value.and_then(Value::as_bool) {
        Some(true) => "True",
        _ => "False",
    }
}

/// At most three items, then `+ N more...`, or `none` for an empty list.
fn first_three(items: &[&str], none: &str) -> String {
    match items.len() {
        0 => none.to_owned(),
        1..=3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

/// An autoscaler's targets as `kubectl get hpa` prints them: each metric's
/// current value (or `<unknown>`) over its target.
fn hpa_targets(obj: &Value) -> String {
    let metrics = at(obj, "spec.metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if metrics.is_empty() {
        return "<none>".to_owned();
    }
    let current = at(obj, "status.currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    for metric in &metrics {
        let kind = metric
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let source = match kind {
            "Resource" => metric.get("resource"),
            "ContainerResource" => metric.get("containerResource"),
            "Pods" => metric.get("pods"),
            "Object" => metric.get("object"),
            "External" => metric.get("external"),
            _ => None,
        };
        let Some(source) = source else {
            parts.push("<unknown type>".to_owned());
            continue;
        };
        let target = &source["target"];
        let name = source
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| source["metric"]["name"].as_str())
            .unwrap_or_default();
        let (wanted, suffix) = match target.get("averageUtilization") {
            Some(utilization) => (utilization.to_string(), "%"),
            None => (
                target
                    .get("averageValue")
                    .or_else(|| target.get("value"))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_default(),
                "",
            ),
        };
        let now = current
            .iter()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            .find_map(|c| {
                let seen = match kind {
                    "Resource" => c.get("resource"),
                    "ContainerResource" => c.get("containerResource"),
                    "Pods" => c.get("pods"),
                    "Object" => c.get("object"),
                    _ => c.get("external"),
                }?;
                let seen_name = seen
                    .get("name")
                    .and_then(Value::as_str)
                    .or_else(|| seen["metric"]["name"].as_str())
                    .unwrap_or_default();
                if seen_name != name {
                    return None;
                }
                let value = &seen["current"];
                if suffix == "%" {
                    value.get("averageUtilization").map(|u| format!("{u}%"))
                } else {
                    value
                        .get("averageValue")
                        .or_else(|| value.get("value"))
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                }
            })
            .unwrap_or_else(|| "<unknown>".to_owned());
        let prefix = if kind == "Resource" || kind == "ContainerResource" {
            format!("{name}: ")
        } else {
            String::new()
        };
        parts.push(format!("{prefix}{now}/{wanted}{suffix}"));
    }
    match parts.len() {
        n if n > 2 => format!("{} + {} more...", parts[..2].join(", "), n - 2),
        _ => parts.join(", "),
    }
}

/// Columns and cells of one built-in resource (the apiserver's printers), or `None` for
/// the default table (Name, Created At).
fn builtin_row(storage: &str, o: &Value) -> Option<(Vec<Column>, Vec<Value>)> {
    let name = Value::from(text(o, "metadata.name"));
    let age = since(at(o, "metadata.creationTimestamp"));
    let row = match storage {
        "apps/deployments" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            (
                vec![
                    NAME,
                    ("Ready", "string", "", 0),
                    ("Up-to-date", "string", "", 0),
                    ("Available", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!(
                        "{}/{}",
                        int(o, "status.readyReplicas"),
                        int(o, "spec.replicas")
                    )),
                    Value::from(int(o, "status.updatedReplicas")),
                    Value::from(int(o, "status.availableReplicas")),
                    age,
                    c,
                    i,
                    selector(o, "spec.selector"),
                ],
            )
        }
        "apps/replicasets" | "/replicationcontrollers" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            // A ReplicationController's selector is a plain label map.
            let selector = if storage == "/replicationcontrollers" {
                let pairs: Vec<String> = at(o, "spec.selector")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                Value::from(pairs.join(","))
            } else {
                selector(o, "spec.selector")
            };
            (
                vec![
                    NAME,
                    ("Desired", "integer", "", 0),
                    ("Current", "integer", "", 0),
                    ("Ready", "integer", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(int(o, "spec.replicas")),
                    Value::from(int(o, "status.replicas")),
                    Value::from(int(o, "status.readyReplicas")),
                    age,
                    c,
                    i,
                    selector,
                ],
            )
        }
        "apps/statefulsets" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            (
                vec![
                    NAME,
                    ("Ready", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!(
                        "{}/{}",
                        int(o, "status.readyReplicas"),
                        int(o, "spec.replicas")
                    )),
                    age,
                    c,
                    i,
                ],
            )
        }
        "apps/daemonsets" => {
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            let node_selector: Vec<String> = at(o, "spec.template.spec.nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    NAME,
                    ("Desired", "integer", "", 0),
                    ("Current", "integer", "", 0),
                    ("Ready", "integer", "", 0),
                    ("Up-to-date", "integer", "", 0),
                    ("Available", "integer", "", 0),
                    ("Node Selector", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(int(o, "status.desiredNumberScheduled")),
                    Value::from(int(o, "status.currentNumberScheduled")),
                    Value::from(int(o, "status.numberReady")),
                    Value::from(int(o, "status.updatedNumberScheduled")),
                    Value::from(int(o, "status.numberAvailable")),
                    or_none(node_selector.join(",")),
                    age,
                    c,
                    i,
                    selector(o, "spec.selector"),
                ],
            )
        }
        "/services" => {
            let ty = text(o, "spec.type");
            let cluster_ip = at(o, "spec.clusterIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .or_else(|| at(o, "spec.clusterIP"))
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .map_or_else(|| "<none>".to_owned(), str::to_owned);
            let external = match ty.as_str() {
                "ExternalName" => text(o, "spec.externalName"),
                "LoadBalancer" => "<pending>".to_owned(),
                _ => "<none>".to_owned(),
            };
            let ports: Vec<String> = at(o, "spec.ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(n) if n > 0 => format!("{port}:{n}/{proto}"),
                                _ => format!("{port}/{proto}"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let sel: Vec<String> = at(o, "spec.selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            (
                vec![
                    NAME,
                    ("Type", "string", "", 0),
                    ("Cluster-IP", "string", "", 0),
                    ("External-IP", "string", "", 0),
                    ("Port(s)", "string", "", 0),
                    AGE,
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(ty),
                    Value::from(cluster_ip),
                    Value::from(external),
                    or_none(ports.join(",")),
                    age,
                    or_none(sel.join(",")),
                ],
            )
        }
        "/configmaps" => (
            vec![NAME, ("Data", "string", "", 0), AGE],
            vec![
                name,
                Value::from(count(o, "data") + count(o, "binaryData")),
                age,
            ],
        ),
        "/secrets" => (
            vec![
                NAME,
                ("Type", "string", "", 0),
                ("Data", "string", "", 0),
                AGE,
            ],
            vec![
                name,
                Value::from(text(o, "type")),
                Value::from(count(o, "data")),
                age,
            ],
        ),
        "/namespaces" => (
            vec![NAME, ("Status", "string", "", 0), AGE],
            vec![name, Value::from(text(o, "status.phase")), age],
        ),
        "/pods" => {
            let total = at(o, "spec.containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = at(o, "status.containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| {
                    s.iter()
                        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                        .count()
                });
            let restarts: i64 = at(o, "status.containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| {
                    s.iter()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                        .sum()
                });
            let status = at(o, "status.reason")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| text(o, "status.phase"));
            (
                vec![
                    NAME,
                    ("Ready", "string", "", 0),
                    ("Status", "string", "", 0),
                    ("Restarts", "string", "", 0),
                    AGE,
                    ("IP", "string", "", 1),
                    ("Node", "string", "", 1),
                    ("Nominated Node", "string", "", 1),
                    ("Readiness Gates", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!("{ready}/{total}")),
                    Value::from(status),
                    Value::from(restarts.to_string()),
                    age,
                    or_none(text(o, "status.podIP")),
                    or_none(text(o, "spec.nodeName")),
                    or_none(text(o, "status.nominatedNodeName")),
                    Value::from("<none>"),
                ],
            )
        }
        "apiextensions.k8s.io/customresourcedefinitions" => (
            vec![NAME, ("Created At", "date", "", 0)],
            vec![
                name,
                at(o, "metadata.creationTimestamp")
                    .cloned()
                    .unwrap_or(Value::Null),
            ],
        ),
        "batch/jobs" => {
            let succeeded = int(o, "status.succeeded");
            let completions = match at(o, "spec.completions").and_then(Value::as_i64) {
                Some(want) => format!("{succeeded}/{want}"),
                None => match at(o, "spec.parallelism").and_then(Value::as_i64) {
                    Some(parallel) if parallel > 1 => format!("{succeeded}/1 of {parallel}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let duration = match (
                timestamp(at(o, "status.startTime")),
                timestamp(at(o, "status.completionTime")),
            ) {
                (None, _) => String::new(),
                (Some(start), None) => human_duration(jiff::Timestamp::now().as_second() - start),
                (Some(start), Some(end)) => human_duration(end - start),
            };
            let status = if has_condition(o, "Complete") {
                "Complete"
            } else if has_condition(o, "Failed") {
                "Failed"
            } else if at(o, "metadata.deletionTimestamp").is_some() {
                "Terminating"
            } else if has_condition(o, "Suspended") {
                "Suspended"
            } else if has_condition(o, "FailureTarget") {
                "FailureTarget"
            } else if has_condition(o, "SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else {
                "Running"
            };
            let (c, i) = containers_and_images(o, "spec.template.spec.containers");
            (
                vec![
                    NAME,
                    ("Status", "string", "", 0),
                    ("Completions", "string", "", 0),
                    ("Duration", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(status),
                    Value::from(completions),
                    Value::from(duration),
                    age,
                    c,
                    i,
                    selector(o, "spec.selector"),
                ],
            )
        }
        "batch/cronjobs" => {
            let (c, i) = containers_and_images(o, "spec.jobTemplate.spec.template.spec.containers");
            let last = match at(o, "status.lastScheduleTime") {
                Some(time) => since(Some(time)),
                None => Value::from("<none>"),
            };
            (
                vec![
                    NAME,
                    ("Schedule", "string", "", 0),
                    ("Timezone", "string", "", 0),
                    ("Suspend", "boolean", "", 0),
                    ("Active", "integer", "", 0),
                    ("Last Schedule", "string", "", 0),
                    AGE,
                    ("Containers", "string", "", 1),
                    ("Images", "string", "", 1),
                    ("Selector", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(text(o, "spec.schedule")),
                    or_none(text(o, "spec.timeZone")),
                    Value::from(go_bool_ptr(at(o, "spec.suspend"))),
                    Value::from(
                        at(o, "status.active")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len),
                    ),
                    last,
                    age,
                    c,
                    i,
                    selector(o, "spec.jobTemplate.spec.selector"),
                ],
            )
        }
        "/nodes" => {
            let mut status: Vec<&str> = Vec::new();
            if let Some(ready) = condition(o, "Ready") {
                status.push(if ready == "True" { "Ready" } else { "NotReady" });
            }
            if status.is_empty() {
                status.push("Unknown");
            }
            if at(o, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push("SchedulingDisabled");
            }
            let mut roles: Vec<String> = at(o, "metadata.labels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(key, value)| {
                    if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_owned())
                    } else if key == "kubernetes.io/role" {
                        value.as_str().filter(|v| !v.is_empty()).map(str::to_owned)
                    } else {
                        None
                    }
                })
                .collect();
            roles.sort();
            roles.dedup();
            let address = |kind: &str| {
                at(o, "status.addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
                    .and_then(|a| a.get("address").and_then(Value::as_str))
                    .unwrap_or("<none>")
                    .to_owned()
            };
            let unknown = |path: &str| {
                let value = text(o, path);
                if value.is_empty() {
                    "<unknown>".to_owned()
                } else {
                    value
                }
            };
            let mut kernel = unknown("status.nodeInfo.kernelVersion");
            let arch = text(o, "status.nodeInfo.architecture");
            if !arch.is_empty() {
                kernel = format!("{kernel} ({arch})");
            }
            (
                vec![
                    NAME,
                    ("Status", "string", "", 0),
                    ("Roles", "string", "", 0),
                    AGE,
                    ("Version", "string", "", 0),
                    ("Internal-IP", "string", "", 1),
                    ("External-IP", "string", "", 1),
                    ("OS-Image", "string", "", 1),
                    ("Kernel-Version", "string", "", 1),
                    ("Container-Runtime", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(status.join(",")),
                    or_none(roles.join(",")),
                    age,
                    Value::from(text(o, "status.nodeInfo.kubeletVersion")),
                    Value::from(address("InternalIP")),
                    Value::from(address("ExternalIP")),
                    Value::from(unknown("status.nodeInfo.osImage")),
                    Value::from(kernel),
                    Value::from(unknown("status.nodeInfo.containerRuntimeVersion")),
                ],
            )
        }
        "networking.k8s.io/ingresses" => {
            let hosts: Vec<&str> = at(o, "spec.rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("host").and_then(Value::as_str))
                .filter(|h| !h.is_empty())
                .collect();
            let hosts = match hosts.len() {
                0 => "*".to_owned(),
                1..=4 => hosts.join(","),
                n => format!("{} + {} more...", hosts[..4].join(","), n - 4),
            };
            let address: Vec<&str> = at(o, "status.loadBalancer.ingress")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                })
                .collect();
            let tls = at(o, "spec.tls")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty());
            (
                vec![
                    NAME,
                    ("Class", "string", "", 0),
                    ("Hosts", "string", "", 0),
                    ("Address", "string", "", 0),
                    ("Ports", "string", "", 0),
                    AGE,
                ],
                vec![
                    name,
                    or_none(text(o, "spec.ingressClassName")),
                    Value::from(hosts),
                    Value::from(address.join(",")),
                    Value::from(if tls { "80, 443" } else { "80" }),
                    age,
                ],
            )
        }
        "networking.k8s.io/ingressclasses" => {
            let mut shown = text(o, "metadata.name");
            if annotation(o, "ingressclass.kubernetes.io/is-default-class") == Some("true") {
                shown.push_str(" (default)");
            }
            let parameters = match at(o, "spec.parameters") {
                Some(p) => {
                    let mut kind = p
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(group) = p.get("apiGroup").and_then(Value::as_str) {
                        kind = format!("{kind}.{group}");
                    }
                    format!(
                        "{kind}/{}",
                        p.get("name").and_then(Value::as_str).unwrap_or_default()
                    )
                }
                None => "<none>".to_owned(),
            };
            (
                vec![
                    NAME,
                    ("Controller", "string", "", 0),
                    ("Parameters", "string", "", 0),
                    AGE,
                ],
                vec![
                    Value::from(shown),
                    Value::from(text(o, "spec.controller")),
                    Value::from(parameters),
                    age,
                ],
            )
        }
        "autoscaling/horizontalpodautoscalers" => {
            let min = at(o, "spec.minReplicas")
                .and_then(Value::as_i64)
                .map_or_else(|| "<unset>".to_owned(), |m| m.to_string());
            (
                vec![
                    NAME,
                    ("Reference", "string", "", 0),
                    ("Targets", "string", "", 0),
                    ("MinPods", "string", "", 0),
                    ("MaxPods", "string", "", 0),
                    ("Replicas", "string", "", 0),
                    AGE,
                ],
                vec![
                    name,
                    Value::from(format!(
                        "{}/{}",
                        text(o, "spec.scaleTargetRef.kind"),
                        text(o, "spec.scaleTargetRef.name")
                    )),
                    Value::from(hpa_targets(o)),
                    Value::from(min),
                    Value::from(int(o, "spec.maxReplicas")),
                    Value::from(int(o, "status.currentReplicas")),
                    age,
                ],
            )
        }
        "policy/poddisruptionbudgets" => {
            let bound = |path: &str| match at(o, path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "N/A".to_owned(),
            };
            (
                vec![
                    NAME,
                    ("Min Available", "string", "", 0),
                    ("Max Unavailable", "string", "", 0),
                    ("Allowed Disruptions", "integer", "", 0),
                    AGE,
                ],
                vec![
                    name,
                    Value::from(bound("spec.minAvailable")),
                    Value::from(bound("spec.maxUnavailable")),
                    Value::from(int(o, "status.disruptionsAllowed")),
                    age,
                ],
            )
        }
        "rbac.authorization.k8s.io/rolebindings"
        | "rbac.authorization.k8s.io/clusterrolebindings" => {
            let subjects = |kind: &str| -> Value {
                let names: Vec<String> = at(o, "subjects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                    .map(|s| {
                        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
                        match s.get("namespace").and_then(Value::as_str) {
                            Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                            _ => name.to_owned(),
                        }
                    })
                    .collect();
                Value::from(names.join(", "))
            };
            (
                vec![
                    NAME,
                    ("Role", "string", "", 0),
                    AGE,
                    ("Users", "string", "", 1),
                    ("Groups", "string", "", 1),
                    ("ServiceAccounts", "string", "", 1),
                ],
                vec![
                    name,
                    Value::from(format!(
                        "{}/{}",
                        text(o, "roleRef.kind"),
                        text(o, "roleRef.name")
                    )),
                    age,
                    subjects("User"),
                    subjects("Group"),
                    subjects("ServiceAccount"),
                ],
            )
        }
        "certificates.k8s.io/certificatesigningrequests" => {
            let mut status: Vec<&str> = Vec::new();
            for kind in ["Approved", "Denied", "Failed"] {
                if has_condition(o, kind) {
                    status.push(kind);
                }
            }
            if status.is_empty() {
                status.push("Pending");
            }
            if at(o, "status.certificate")
                .is_some_and(|c| c.as_str().is_some_and(|c| !c.is_empty()))
            {
                status.push("Issued");
            }
            let requested = at(o, "spec.expirationSeconds")
                .and_then(Value::as_i64)
                .map_or_else(|| "<none>".to_owned(), human_duration);
            (
                vec![
                    NAME,
                    AGE,
                    ("SignerName", "string", "", 0),
                    ("Requestor", "string", "", 0),
                    ("RequestedDuration", "string", "", 0),
                    ("Condition", "string", "", 0),
                ],
                vec![
                    name,
                    age,
                    or_none(text(o, "spec.signerName")),
                    Value::from(text(o, "spec.username")),
                    Value::from(requested),
                    Value::from(status.join(",")),
                ],
            )
        }
        "scheduling.k8s.io/priorityclasses" => (
            vec![
                NAME,
                ("Value", "integer", "", 0),
                ("Global-Default", "boolean", "", 0),
                AGE,
                ("PreemptionPolicy", "string", "", 0),
            ],
            vec![
                name,
                Value::from(int(o, "value")),
                Value::from(
                    at(o, "globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
                age,
                Value::from(text(o, "preemptionPolicy")),
            ],
        ),
        "storage.k8s.io/storageclasses" => {
            let mut shown = text(o, "metadata.name");
            if annotation(o, "storageclass.kubernetes.io/is-default-class") == Some("true")
                || annotation(o, "storageclass.beta.kubernetes.io/is-default-class") == Some("true")
            {
                shown.push_str(" (default)");
            }
            let or = |path: &str, default: &str| {
                let value = text(o, path);
                if value.is_empty() {
                    default.to_owned()
                } else {
                    value
                }
            };
            (
                vec![
                    NAME,
                    ("Provisioner", "string", "", 0),
                    ("ReclaimPolicy", "string", "", 0),
                    ("VolumeBindingMode", "string", "", 0),
                    ("AllowVolumeExpansion", "string", "", 0),
                    AGE,
                ],
                vec![
                    Value::from(shown),
                    Value::from(text(o, "provisioner")),
                    Value::from(or("reclaimPolicy", "Delete")),
                    Value::from(or("volumeBindingMode", "Immediate")),
                    Value::from(
                        at(o, "allowVolumeExpansion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    ),
                    age,
                ],
            )
        }
        "discovery.k8s.io/endpointslices" => {
            let ports: Vec<String> = at(o, "ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("port").and_then(Value::as_i64))
                .map(|p| p.to_string())
                .collect();
            let addresses: Vec<&str> = at(o, "endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("addresses").and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            (
                vec![
                    NAME,
                    ("AddressType", "string", "", 0),
                    ("Ports", "string", "", 0),
                    ("Endpoints", "string", "", 0),
                    AGE,
                ],
                vec![
                    name,
                    Value::from(text(o, "addressType")),
                    Value::from(if ports.is_empty() {
                        "<unset>".to_owned()
                    } else {
                        ports.join(",")
                    }),
                    Value::from(first_three(&addresses, "<unset>")),
                    age,
                ],
            )
        }
        "node.k8s.io/runtimeclasses" => (
            vec![NAME, ("Handler", "string", "", 0), AGE],
            vec![name, Value::from(text(o, "handler")), age],
        ),
        "admissionregistration.k8s.io/mutatingwebhookconfigurations"
        | "admissionregistration.k8s.io/validatingwebhookconfigurations" => (
            vec![NAME, ("Webhooks", "integer", "", 0), AGE],
            vec![
                name,
                Value::from(
                    at(o, "webhooks")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len),
                ),
                age,
            ],
        ),
        "/serviceaccounts" => (vec![NAME, AGE], vec![name, age]),
        "apiregistration.k8s.io/apiservices" => {
            let service = match at(o, "spec.service") {
                Some(s) if !s.is_null() => format!(
                    "{}/{}",
                    s.get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    s.get("name").and_then(Value::as_str).unwrap_or_default()
                ),
                _ => "Local".to_owned(),
            };
            let available = match condition(o, "Available") {
                Some("True") => "True".to_owned(),
                Some(status) => {
                    let reason = at(o, "status.conditions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
                        .and_then(|c| c.get("reason").and_then(Value::as_str))
                        .unwrap_or_default();
                    format!("{status} ({reason})")
                }
                None => "Unknown".to_owned(),
            };
            (
                vec![
                    NAME,
                    ("Service", "string", "", 0),
                    ("Available", "string", "", 0),
                    AGE,
                ],
                vec![name, Value::from(service), Value::from(available), age],
            )
        }
        "coordination.k8s.io/leases" => (
            vec![NAME, ("Holder", "string", "", 0), AGE],
            vec![name, Value::from(text(o, "spec.holderIdentity")), age],
        ),
        "/events" => {
            let first = at(o, "firstTimestamp")
                .filter(|v| v.is_string())
                .or_else(|| at(o, "eventTime"));
            let last = at(o, "series.lastObservedTime")
                .or_else(|| at(o, "lastTimestamp").filter(|v| v.is_string()))
                .or(first);
            let kind = text(o, "involvedObject.kind").to_lowercase();
            let target = match text(o, "involvedObject.name") {
                n if n.is_empty() => kind,
                n => format!("{kind}/{n}"),
            };
            let count = at(o, "series.count")
                .or_else(|| at(o, "count"))
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .unwrap_or(1);
            let source = match (text(o, "source.component"), text(o, "reportingComponent")) {
                (s, _) if !s.is_empty() => s,
                (_, r) => r,
            };
            (
                vec![
                    ("Last Seen", "string", "", 0),
                    ("Type", "string", "", 0),
                    ("Reason", "string", "", 0),
                    ("Object", "string", "", 0),
                    ("Subobject", "string", "", 1),
                    ("Source", "string", "", 1),
                    ("Message", "string", "", 0),
                    ("First Seen", "string", "", 1),
                    ("Count", "string", "", 1),
                    ("Name", "string", "name", 1),
                ],
                vec![
                    since(last),
                    Value::from(text(o, "type")),
                    Value::from(text(o, "reason")),
                    Value::from(target),
                    Value::from(text(o, "involvedObject.fieldPath")),
                    Value::from(source),
                    Value::from(text(o, "message").trim().to_owned()),
                    since(first),
                    Value::from(count),
                    name,
                ],
            )
        }
        _ => return None,
    };
    Some(row)
}

/// Columns and cells from a CRD's `additionalPrinterColumns`: Name, then exactly the columns
/// (a real server adds no Age; a CRD that wants one lists it).
fn printer_row(columns: &[Value], o: &Value) -> (Vec<Value>, Vec<Value>) {
    let mut defs = vec![column_json(NAME)];
    let mut cells = vec![Value::from(text(o, "metadata.name"))];
    for c in columns {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
        let mut def = Map::new();
        def.insert("name".into(), c.get("name").cloned().unwrap_or_default());
        def.insert(
            "type".into(),
            Value::from(if ty == "date" { "string" } else { ty }),
        );
        def.insert(
            "format".into(),
            c.get("format").cloned().unwrap_or_else(|| Value::from("")),
        );
        def.insert(
            "description".into(),
            c.get("description")
                .cloned()
                .unwrap_or_else(|| Value::from("")),
        );
        def.insert(
            "priority".into(),
            c.get("priority").cloned().unwrap_or_else(|| Value::from(0)),
        );
        defs.push(Value::Object(def));
        let path = c
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        cells.push(printer_cell(ty, first_match(o, path)));
    }
    (defs, cells)
}

/// The first value a CRD column's JSONPath (`.status.conditions[?(@.type=="Ready")].status`)
/// finds, as the apiserver's table convertor takes it.
fn first_match<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let query = if path.starts_with('$') {
        path.to_owned()
    } else {
        format!("${path}")
    };
    jsonpath_rust::JsonPath::query(obj, &query)
        .ok()?
        .into_iter()
        .next()
}

/// A column's cell of a given type, as the apiserver's table convertor fills it:
/// values of another type are empty, strings print any value as text.
fn printer_cell(ty: &str, value: Option<&Value>) -> Value {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match ty {
        "date" => since(Some(value)),
        "string" => match value {
            Value::String(text) => Value::from(text.clone()),
            other => Value::from(other.to_string()),
        },
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => value.as_f64().map_or(Value::Null, Value::from),
        "boolean" => value.as_bool().map_or(Value::Null, Value::from),
        _ => Value::Null,
    }
}

fn column_json((name, ty, format, priority): Column) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

/// A `Table` of encoded bodies (stored shape, no kind/apiVersion).
pub(crate) fn render(t: &Target, bodies: &[Bytes], list_meta: Map<String, Value>) -> Bytes {
    let mut columns: Option<Vec<Value>> = None;
    let mut rows = Vec::with_capacity(bodies.len());
    for body in bodies {
        let obj = Value::Object(decode(body));
        let (defs, cells) = if let Some(printer) = &t.res.printer_columns {
            printer_row(printer, &obj)
        } else if let Some((cols, cells)) = builtin_row(&t.res.storage, &obj) {
            (cols.into_iter().map(column_json).collect(), cells)
        } else {
            (
                vec![column_json(NAME), column_json(CREATED_AT)],
                vec![
                    Value::from(text(&obj, "metadata.name")),
                    at(&obj, "metadata.creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null),
                ],
            )
        };
        columns.get_or_insert(defs);
        let partial: Value = serde_json::from_slice(&with_type(
            "PartialObjectMetadata",
            "meta.k8s.io/v1",
            &metadata_only(body),
        ))
        .unwrap_or_default();
        rows.push(json!({"cells": cells, "object": partial}));
    }
    let columns = columns.unwrap_or_else(|| {
        if let Some(printer) = &t.res.printer_columns {
            printer_row(printer, &Value::Null).0
        } else {
            builtin_row(&t.res.storage, &Value::Null)
                .map(|(c, _)| c.into_iter().map(column_json).collect())
                .unwrap_or_else(|| vec![column_json(NAME), column_json(CREATED_AT)])
        }
    });
    encode_typed(&json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(4 * 86400 + 3 * 3600), "4d3h");
        assert_eq!(human_duration(100 * 86400), "100d");
    }

    #[test]
    fn deployment_rows_show_ready_over_desired() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"readyReplicas": 2}});
        let (cols, cells) = builtin_row("apps/deployments", &d).unwrap();
        assert_eq!(
            cols.iter().map(|c| c.0).collect::<Vec<_>>()[..5],
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[7], "app=web");
    }

    #[test]
    fn crd_columns_follow_their_json_paths_and_add_no_age() {
        let columns = vec![
            json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
            json!({"name": "Labels", "type": "string", "jsonPath": ".metadata.labels"}),
            json!({"name": "Wrong", "type": "boolean", "jsonPath": ".spec.replicas"}),
            json!({"name": "First", "type": "string", "jsonPath": ".spec.items[*].name"}),
        ];
        let widget = json!({
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {"replicas": 3.0, "items": [{"name": "x"}, {"name": "y"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
        });
        let (defs, cells) = printer_row(&columns, &widget);
        let names: Vec<&str> = defs.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(
            names,
            ["Name", "Ready", "Replicas", "Labels", "Wrong", "First"]
        );
        assert_eq!(
            cells,
            [
                json!("w"),
                json!("True"),
                json!(3),
                json!("{\"a\":\"b\"}"),
                Value::Null,
                json!("x")
            ]
        );
    }

    fn cells_of(storage: &str, obj: Value) -> Vec<(String, Value)> {
        let (columns, cells) = builtin_row(storage, &obj).expect("a printer");
        columns.iter().map(|c| c.0.to_owned()).zip(cells).collect()
    }

    #[test]
    fn jobs_nodes_and_autoscalers_print_as_kubectl_shows_them() {
        let job = cells_of(
            "batch/jobs",
            json!({"metadata": {"name": "once"}, "spec": {"completions": 3},
                "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}),
        );
        assert_eq!(job[1], ("Status".into(), json!("Complete")));
        assert_eq!(job[2], ("Completions".into(), json!("1/3")));

        let node = cells_of(
            "/nodes",
            json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
                "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": {"kubeletVersion": "v1.36.0"}}}),
        );
        assert_eq!(node[1].1, json!("NotReady,SchedulingDisabled"));
        assert_eq!(node[2].1, json!("control-plane"));
        assert_eq!(node[4].1, json!("v1.36.0"));

        let hpa = cells_of(
            "autoscaling/horizontalpodautoscalers",
            json!({"metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}),
        );
        assert_eq!(hpa[1].1, json!("Deployment/web"));
        assert_eq!(hpa[2].1, json!("cpu: <unknown>/60%"));
        assert_eq!(hpa[3].1, json!("<unset>"));
    }

    #[test]
    fn kinds_without_a_printer_get_the_default_table() {
        assert!(builtin_row("rbac.authorization.k8s.io/roles", &json!({})).is_none());
        assert_eq!(CREATED_AT.0, "Created At");
    }
}
