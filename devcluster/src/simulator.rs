//! The workload simulator: makes Deployment, ReplicaSet and StatefulSet status follow `spec.replicas`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value};

use crate::json::meta;
use crate::shared::Shared;

const WORKLOADS: &[&str] = &["apps/deployments", "apps/replicasets", "apps/statefulsets"];

/// The status a workload would reach once all its replicas run.
fn settled_status(storage: &str, obj: &Map<String, Value>) -> Map<String, Value> {
    let replicas = obj
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = meta(obj)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut status = obj
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    status.insert("observedGeneration".into(), Value::from(generation));
    let mut fields = vec![
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "updatedReplicas",
    ];
    match storage {
        "apps/replicasets" => {
            fields = vec![
                "replicas",
                "readyReplicas",
                "availableReplicas",
                "fullyLabeledReplicas",
            ]
        }
        "apps/statefulsets" => fields.push("currentReplicas"),
        _ => {}
    }
    if storage == "apps/deployments" {
        set_deployment_conditions(&mut status, obj);
    }
    for f in fields {
        if replicas > 0 {
            status.insert(f.into(), Value::from(replicas));
        } else {
            status.remove(f);
        }
    }
    status
}

/// Adds the `Available` and `Progressing` conditions a settled Deployment has, keeping the
/// timestamps of conditions that already say so.
fn set_deployment_conditions(status: &mut Map<String, Value>, obj: &Map<String, Value>) {
    let name = crate::json::meta_str(obj, "name").unwrap_or_default();
    let now = crate::json::now_rfc3339();
    let wanted = [
        (
            "Available",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_owned(),
        ),
        (
            "Progressing",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{name}\" has successfully progressed."),
        ),
    ];
    let existing: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = existing
        .iter()
        .filter(|c| {
            !wanted
                .iter()
                .any(|(t, _, _)| c.get("type").and_then(Value::as_str) == Some(t))
        })
        .cloned()
        .collect();
    for (ty, reason, message) in wanted {
        let kept = existing.iter().find(|c| {
            c.get("type").and_then(Value::as_str) == Some(ty)
                && c.get("status").and_then(Value::as_str) == Some("True")
                && c.get("reason").and_then(Value::as_str) == Some(reason)
        });
        conditions.push(kept.cloned().unwrap_or_else(|| {
            serde_json::json!({
                "type": ty, "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                "reason": reason, "message": message,
            })
        }));
    }
    status.insert("conditions".into(), Value::Array(conditions));
}

/// Brings every workload's status in line with its spec, when the simulator is on.
pub(crate) fn sync(shared: &Shared) {
    sync_since(shared, 0);
}

/// Like [`sync`], but only looks at workloads written after resourceVersion
/// `since` (so following each change costs what changed, not the whole
/// store); the store's resourceVersion after the sync.
fn sync_since(shared: &Shared, since: u64) -> u64 {
    let mut core = shared.core.lock();
    if !shared.simulator.load(Ordering::SeqCst) {
        return core.store.rv();
    }
    for storage in WORKLOADS {
        let key: Arc<str> = Arc::from(*storage);
        let pending: Vec<Map<String, Value>> = core
            .store
            .iter(storage, None)
            .filter(|(_, s)| s.rv > since)
            .map(|(_, s)| s.decode())
            .filter(|o| !meta(o).is_some_and(|m| m.contains_key("deletionTimestamp")))
            .filter_map(|mut o| {
                let status = settled_status(storage, &o);
                if o.get("status").and_then(Value::as_object) == Some(&status) {
                    return None;
                }
                o.insert("status".into(), Value::Object(status));
                Some(o)
            })
            .collect();
        for obj in pending {
            core.store.put(&key, obj);
        }
    }
    core.store.rv()
}

/// Follows every change while the cluster runs.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut changes = shared.core.lock().store.subscribe();
    let mut since = 0;
    while changes.changed().await.is_ok() {
        // Turning the simulator on calls `sync`, which covers everything
        // written while it was off.
        since = sync_since(&shared, since);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_follows_spec_and_omits_zero_counts() {
        let d = json!({"metadata": {"name": "web", "generation": 3}, "spec": {"replicas": 2}});
        let s = settled_status("apps/deployments", d.as_object().unwrap());
        for f in [
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
        ] {
            assert_eq!(s[f], 2, "{f}");
        }
        assert_eq!(s["observedGeneration"], 3);
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["Available", "Progressing"]);
        let mut settled = d.as_object().cloned().unwrap();
        settled.insert("status".into(), Value::Object(s.clone()));
        assert_eq!(
            settled_status("apps/deployments", &settled),
            s,
            "a settled status is left alone"
        );

        let d = json!({"metadata": {"generation": 4}, "spec": {"replicas": 0}, "status": {"replicas": 2}});
        let s = settled_status("apps/replicasets", d.as_object().unwrap());
        assert_eq!(Value::Object(s), json!({"observedGeneration": 4}));
    }
}
