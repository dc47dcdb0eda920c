//! The subresources that are not a view of one field: a Pod's `binding`,
//! `eviction` and the connections a kubelet would serve (`log`, `exec`,
//! `attach`, `portforward`, `proxy`), `services/proxy` and `nodes/proxy`, and
//! the read-only `componentstatuses`. Each answers as a real kube-apiserver
//! does in a cluster whose nodes run no kubelet.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::core::{Core, Query, Target};
use crate::delete::{self, DeleteOpts};
use crate::json::{encode_typed, get_in, get_path, meta, meta_mut, meta_str};
use crate::status::ApiError;
use crate::write::{Ownership, WriteCtx, finish_update, parse_object};

/// The pod a subresource request names, or 404.
fn pod(core: &Core, t: &Target) -> Result<Map<String, Value>, ApiError> {
    core.store
        .get(&t.res.storage, t.ns(), t.name())
        .map(|stored| stored.decode())
        .ok_or_else(|| t.not_found())
}

/// A nested string field of an object, `""` when absent.
fn text<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> &'a str {
    get_in(obj, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn success(code: u16) -> (u16, Bytes) {
    (
        code,
        encode_typed(&json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": code,
        })),
    )
}

/// `POST pods/{name}/binding` and the older `POST bindings`: assigns a pod to a node.
pub(crate) fn bind(
    core: &mut Core,
    t: &Target,
    body: &[u8],
    content_type: &str,
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let binding = parse_object(body, content_type, "Binding", false)?;
    if binding
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind != "Binding")
    {
        return Err(ApiError::bad_request(format!(
            "not a Binding object: {}",
            binding
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )));
    }
    let name = meta_str(&binding, "name").unwrap_or_default().to_owned();
    // `POST bindings` names the pod in the body; `pods/{name}/binding` in the URL too.
    let target = if t.subresource.is_some() {
        if name != t.name() {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        t.clone()
    } else {
        let res = core
            .registry
            .find("", "v1", "pods")
            .ok_or_else(ApiError::path_not_found)?;
        Target {
            res,
            version: "v1".to_owned(),
            namespace: t.namespace.clone(),
            name: Some(name.clone()),
            subresource: Some("binding".to_owned()),
            metadata_only: false,
            table: false,
        }
    };
    let node = text(&binding, &["target", "name"]).to_owned();
    let target_kind = text(&binding, &["target", "kind"]);
    let mut causes = Vec::new();
    if node.is_empty() {
        causes.push(crate::status::Cause::new(
            "FieldValueRequired",
            "Required value",
            "target.name",
        ));
    }
    if !target_kind.is_empty() && target_kind != "Node" {
        causes.push(crate::status::Cause::new(
            "FieldValueNotSupported",
            format!("Unsupported value: \"{target_kind}\": supported values: \"Node\""),
            "target.kind",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Binding", "", &name, causes));
    }
    let stored = stored_pod(core, &target, &name)?;
    let mut pod = stored.decode();
    let conflict = |why: String| ApiError::conflict("pods/binding", "", &name, &why);
    if meta(&pod).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        return Err(conflict(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        )));
    }
    let assigned = text(&pod, &["spec", "nodeName"]).to_owned();
    if !assigned.is_empty() {
        return Err(conflict(format!(
            "pod {name} is already assigned to node {assigned:?}"
        )));
    }
    if get_in(&pod, &["spec", "schedulingGates"])
        .and_then(Value::as_array)
        .is_some_and(|gates| !gates.is_empty())
    {
        return Err(conflict(format!(
            "pod {name} has non-empty .spec.schedulingGates"
        )));
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("nodeName".into(), Value::from(node));
    }
    if let Some(annotations) = meta(&binding)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let into = meta_mut(&mut pod)
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(into) = into.as_object_mut() {
            into.extend(annotations.clone());
        }
    }
    set_condition(&mut pod, "PodScheduled");
    let status_of_pod = Target {
        subresource: None,
        ..target.clone()
    };
    // The binding writes the pod's spec and its PodScheduled condition at once.
    let status = pod.get("status").cloned();
    finish_update(core, &status_of_pod, &stored, pod, ctx, Ownership::Record)?;
    if let Some(status) = status {
        let stored = stored_pod(core, &target, &name)?;
        let mut pod = stored.decode();
        pod.insert("status".into(), status);
        let status_target = Target {
            subresource: Some("status".to_owned()),
            ..target
        };
        finish_update(core, &status_target, &stored, pod, ctx, Ownership::Record)?;
    }
    Ok(success(201))
}

/// The stored pod a binding names, or 404.
fn stored_pod(core: &Core, target: &Target, name: &str) -> Result<crate::store::Stored, ApiError> {
    core.store
        .get(&target.res.storage, target.ns(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("pods", "", name))
}

/// Sets a pod condition to `True`, keeping the others.
fn set_condition(pod: &mut Map<String, Value>, kind: &str) {
    let status = pod
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    let now = crate::json::now_rfc3339();
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(condition) if condition.get("status").and_then(Value::as_str) == Some("True") => {}
        Some(condition) => {
            condition["status"] = Value::from("True");
            condition["lastTransitionTime"] = Value::from(now);
        }
        None => conditions.push(json!({
            "type": kind,
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": now,
        })),
    }
}

/// `POST pods/{name}/eviction`: deletes the pod unless a PodDisruptionBudget
/// that selects it allows no disruption (429, as a real server answers).
pub(crate) fn evict(
    core: &mut Core,
    t: &Target,
    body: &[u8],
    content_type: &str,
    query: &Query,
) -> Result<(u16, Bytes), ApiError> {
    let eviction = parse_object(body, content_type, "Eviction", false)?;
    let name = meta_str(&eviction, "name").unwrap_or_default();
    if name != t.name() {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let pod = pod(core, t)?;
    let phase = text(&pod, &["status", "phase"]);
    // Pods that ended, or never ran, are deleted without asking a budget.
    if !matches!(phase, "Succeeded" | "Failed" | "Pending" | "") {
        let labels = crate::json::labels(&pod);
        for (_, stored) in core.store.iter("policy/poddisruptionbudgets", Some(t.ns())) {
            let budget = stored.decode();
            let Some(selector) =
                crate::scale::selector_string(get_in(&budget, &["spec", "selector"]))
            else {
                continue;
            };
            let Ok(selector) = crate::selector::LabelSelector::parse(&selector) else {
                continue;
            };
            if selector.is_empty() || !selector.matches(&labels) {
                continue;
            }
            let budget_name = meta_str(&budget, "name").unwrap_or_default();
            let generation = meta(&budget)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let observed = get_in(&budget, &["status", "observedGeneration"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let allowed = get_in(&budget, &["status", "disruptionsAllowed"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let message = if observed < generation {
                format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {budget_name} is still being processed by the server."
                )
            } else if allowed <= 0 {
                format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                    get_in(&budget, &["status", "desiredHealthy"])
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                    get_in(&budget, &["status", "currentHealthy"])
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                )
            } else {
                continue;
            };
            let mut details = Map::new();
            details.insert(
                "causes".into(),
                json!([{"reason": "DisruptionBudget", "message": format!("The disruption budget {budget_name} needs more healthy pods")}]),
            );
            let mut error = ApiError::new(429, "TooManyRequests", message).with_details(details);
            error.retry_after = Some(10);
            return Err(error);
        }
    }
    let options = eviction
        .get("deleteOptions")
        .map(|options| serde_json::to_vec(options).unwrap_or_default())
        .unwrap_or_default();
    let pod_target = Target {
        subresource: None,
        ..t.clone()
    };
    delete::delete(core, &pod_target, &DeleteOpts::parse(&options, query)?)?;
    Ok(success(201))
}

/// `log`, `exec`, `attach`, `portforward` and `proxy` of a pod, and the
/// proxies of services and nodes: what a kubelet or an endpoint would serve.
pub(crate) fn connect(core: &Core, t: &Target, query: &Query) -> Result<(u16, Bytes), ApiError> {
    let sub = t.subresource.as_deref().unwrap_or_default();
    match &*t.res.storage {
        "/pods" => {
            let pod = pod(core, t)?;
            let value = Value::Object(pod);
            if matches!(sub, "log" | "exec" | "attach") {
                check_container(&value, t.name(), query.non_empty("container"))?;
            }
            let node = get_path(&value, &["spec", "nodeName"])
                .and_then(Value::as_str)
                .unwrap_or_default();
            if node.is_empty() {
                if sub == "log" {
                    // A pod no node runs has no log yet: an empty stream.
                    return Ok((200, Bytes::new()));
                }
                return Err(ApiError::bad_request(format!(
                    "pod {} does not have a host assigned",
                    t.name()
                )));
            }
            Err(no_kubelet(node))
        }
        "/nodes" => {
            pod(core, t)?;
            Err(no_kubelet(t.name()))
        }
        _ => {
            pod(core, t)?;
            Err(ApiError::new(
                503,
                "ServiceUnavailable",
                format!("no endpoints available for service \"{}\"", t.name()),
            ))
        }
    }
}

fn no_kubelet(node: &str) -> ApiError {
    ApiError::new(
        502,
        "BadGateway",
        format!("no kubelet serves node {node:?}: the embedded cluster runs no containers"),
    )
}

/// The container a log or exec request names, as the apiserver checks it.
fn check_container(pod: &Value, name: &str, container: Option<&str>) -> Result<(), ApiError> {
    let names: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|field| get_path(pod, &["spec", field]).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let main = get_path(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    match container {
        Some(container) if names.contains(&container) => Ok(()),
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None if main == 1 => Ok(()),
        None if main == 0 => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// The components a `componentstatuses` read reports: the embedded
/// controllers stand in for kube-controller-manager, and the store for etcd.
fn component_statuses() -> Vec<Value> {
    [
        ("controller-manager", "ok"),
        ("scheduler", "ok"),
        ("etcd-0", "{\"health\":\"true\",\"reason\":\"\"}"),
    ]
    .iter()
    .map(|(name, message)| {
        json!({
            "metadata": {"name": name, "creationTimestamp": null},
            "conditions": [{"type": "Healthy", "status": "True", "message": message}],
        })
    })
    .collect()
}

/// `GET componentstatuses[/{name}]`.
pub(crate) fn component_status(t: &Target) -> Result<(u16, Bytes), ApiError> {
    let items = component_statuses();
    match &t.name {
        Some(name) => {
            let mut item = items
                .into_iter()
                .find(|item| item["metadata"]["name"] == name.as_str())
                .ok_or_else(|| t.not_found())?;
            item["kind"] = Value::from("ComponentStatus");
            item["apiVersion"] = Value::from("v1");
            Ok((200, encode_typed(&item)))
        }
        None => Ok((
            200,
            encode_typed(&json!({
                "kind": "ComponentStatusList",
                "apiVersion": "v1",
                "metadata": {},
                "items": items,
            })),
        )),
    }
}
