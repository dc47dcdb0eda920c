//! Objects are stored in one shape per resource and shown in the shape of the
//! version a request names, as the apiserver converts through its internal
//! version:
//! - events.k8s.io/v1 Events are core/v1 Events with renamed fields;
//! - autoscaling/v1 HorizontalPodAutoscalers are autoscaling/v2 ones with the
//!   CPU utilization target as a field and what v1 cannot hold (other
//!   metrics, current metrics, conditions, behavior) in the
//!   `autoscaling.alpha.kubernetes.io/*` annotations.

use serde_json::{Map, Value, json};

use crate::json::meta_mut;
use crate::registry::ResourceDef;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The CPU utilization v1 names by a field when no metric is given.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn is_hpa_v1(res: &ResourceDef, version: &str) -> bool {
    res.group == "autoscaling" && res.plural == "horizontalpodautoscalers" && version == "v1"
}

/// Whether objects of `res` served at `version` differ from their stored shape.
pub(crate) fn converts(res: &ResourceDef, version: &str) -> bool {
    crate::events::is_events_view(res) || is_hpa_v1(res, version)
}

/// Turns a stored object into the shape of `version`.
pub(crate) fn to_served(res: &ResourceDef, version: &str, obj: &mut Map<String, Value>) {
    if crate::events::is_events_view(res) {
        crate::events::to_view(obj);
    } else if is_hpa_v1(res, version) {
        hpa_to_v1(obj);
    }
}

/// Turns an object written in the shape of `version` into the stored shape.
pub(crate) fn to_stored(res: &ResourceDef, version: &str, obj: &mut Map<String, Value>) {
    if crate::events::is_events_view(res) {
        crate::events::to_core(obj);
    } else if is_hpa_v1(res, version) {
        hpa_to_v2(obj);
    }
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["averageUtilization"].is_i64()
}

fn annotate(obj: &mut Map<String, Value>, key: &str, value: &Value) {
    let annotations = meta_mut(obj)
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(key.to_owned(), Value::from(value.to_string()));
    }
}

/// Removes and parses a round-trip annotation.
fn take_annotation(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let annotations = meta_mut(obj).get_mut("annotations")?.as_object_mut()?;
    let text = annotations.remove(key)?;
    let empty = annotations.is_empty();
    if empty {
        meta_mut(obj).remove("annotations");
    }
    serde_json::from_str(text.as_str()?).ok()
}

fn hpa_to_v1(obj: &mut Map<String, Value>) {
    let mut spec = obj.remove("spec").unwrap_or_else(|| json!({}));
    let mut status = obj.remove("status");
    let metrics = spec
        .as_object_mut()
        .and_then(|s| s.remove("metrics"))
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let behavior = spec.as_object_mut().and_then(|s| s.remove("behavior"));
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        spec["targetCPUUtilizationPercentage"] =
            cpu["resource"]["target"]["averageUtilization"].clone();
    }
    let others: Vec<Value> = metrics
        .into_iter()
        .filter(|m| !is_cpu_utilization(m))
        .collect();
    if !others.is_empty() {
        annotate(obj, METRICS, &Value::Array(others));
    }
    if let Some(behavior) = behavior.filter(|b| !b.is_null()) {
        annotate(obj, BEHAVIOR, &behavior);
    }
    if let Some(status) = status.as_mut().and_then(Value::as_object_mut) {
        let current = status
            .remove("currentMetrics")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        if let Some(cpu) = current.iter().find(|m| {
            m["type"] == "Resource"
                && m["resource"]["name"] == "cpu"
                && m["resource"]["current"]["averageUtilization"].is_i64()
        }) {
            status.insert(
                "currentCPUUtilizationPercentage".into(),
                cpu["resource"]["current"]["averageUtilization"].clone(),
            );
        }
        let conditions = status.remove("conditions");
        if !current.is_empty() {
            annotate(obj, CURRENT_METRICS, &Value::Array(current));
        }
        if let Some(conditions) = conditions.filter(|c| c.as_array().is_some_and(|c| !c.is_empty()))
        {
            annotate(obj, CONDITIONS, &conditions);
        }
    }
    obj.insert("spec".into(), spec);
    if let Some(status) = status {
        obj.insert("status".into(), status);
    }
}

fn hpa_to_v2(obj: &mut Map<String, Value>) {
    let mut spec = obj.remove("spec").unwrap_or_else(|| json!({}));
    let cpu = spec
        .as_object_mut()
        .and_then(|s| s.remove("targetCPUUtilizationPercentage"));
    let mut metrics: Vec<Value> = take_annotation(obj, METRICS)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let cpu = cpu.or_else(|| {
        metrics
            .is_empty()
            .then(|| Value::from(DEFAULT_CPU_UTILIZATION))
    });
    if let Some(cpu) = cpu {
        metrics.push(json!({
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}},
        }));
    }
    spec["metrics"] = Value::Array(metrics);
    if let Some(behavior) = take_annotation(obj, BEHAVIOR) {
        spec["behavior"] = behavior;
    }
    let current = take_annotation(obj, CURRENT_METRICS);
    let conditions = take_annotation(obj, CONDITIONS);
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let cpu = status.remove("currentCPUUtilizationPercentage");
        let mut metrics: Vec<Value> = current
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        if let Some(cpu) = cpu
            && !metrics.iter().any(|m| m["resource"]["name"] == "cpu")
        {
            metrics.push(json!({
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": cpu}},
            }));
        }
        if !metrics.is_empty() {
            status.insert("currentMetrics".into(), Value::Array(metrics));
        }
        if let Some(conditions) = conditions {
            status.insert("conditions".into(), conditions);
        }
    }
    obj.insert("spec".into(), spec);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_v1_autoscaler_is_stored_with_a_cpu_metric_and_read_back_unchanged() {
        let v1 = obj(json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60},
        }));
        let mut stored = v1.clone();
        hpa_to_v2(&mut stored);
        assert_eq!(
            stored["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
        );
        hpa_to_v1(&mut stored);
        assert_eq!(stored, v1);
    }

    #[test]
    fn what_v1_cannot_hold_travels_in_annotations() {
        let v2 = obj(json!({
            "metadata": {"name": "web"},
            "spec": {
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "conditions": [{"type": "AbleToScale", "status": "True"}]},
        }));
        let mut v1 = v2.clone();
        hpa_to_v1(&mut v1);
        let annotations = &v1["metadata"]["annotations"];
        assert!(
            annotations[METRICS]
                .as_str()
                .is_some_and(|m| m.contains("qps")),
            "{v1:?}"
        );
        assert!(annotations[BEHAVIOR].is_string());
        assert!(annotations[CONDITIONS].is_string());
        assert!(v1["spec"].get("targetCPUUtilizationPercentage").is_none());
        hpa_to_v2(&mut v1);
        assert_eq!(v1, v2);
    }

    #[test]
    fn a_v1_autoscaler_without_a_target_gets_the_default_cpu_target() {
        let mut stored = obj(json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 3}}));
        hpa_to_v2(&mut stored);
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
    }
}
