//! The APIService objects a real server's aggregator keeps: one per served
//! built-in group-version (labelled `automanaged: onstart`, with the priorities
//! kube-apiserver gives them) and one per group-version a CustomResourceDefinition
//! serves (`automanaged: "true"`, group priority 1000, version priority 100,
//! removed with the last CRD that serves it). All are local, so always Available.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::core::Core;
use crate::json::meta;

const STORAGE: &str = "apiregistration.k8s.io/apiservices";
const MANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// kube-apiserver's group and version priorities of the built-in group-versions.
const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v2", 17500, 30),
    ("autoscaling", "v1", 17500, 15),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("resource.k8s.io", "v1", 16200, 21),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
];

/// `{version}.{group}`, as the aggregator names an APIService.
fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// The APIServices the served resources call for: name to (spec, managed label).
fn wanted(core: &Core) -> BTreeMap<String, (Value, &'static str)> {
    let mut wanted = BTreeMap::new();
    for res in core.registry.all() {
        for version in &res.versions {
            let name = name_of(&res.group, version);
            let (group_priority, version_priority, managed) = match PRIORITIES
                .iter()
                .find(|(g, v, _, _)| *g == res.group && v == version)
            {
                Some((_, _, group, version)) => (*group, *version, "onstart"),
                None if res.custom => (1000, 100, "true"),
                // The aggregator serves its own group without an APIService.
                None => continue,
            };
            wanted.entry(name).or_insert_with(|| {
                (
                    json!({
                        "group": res.group,
                        "version": version,
                        "groupPriorityMinimum": group_priority,
                        "versionPriority": version_priority,
                    }),
                    managed,
                )
            });
        }
    }
    wanted
}

/// Brings the stored APIServices in line with the served resources: adds the
/// missing ones and removes those of group-versions no CRD serves any more.
/// APIServices written by clients are left alone.
pub(crate) fn sync(core: &mut Core) {
    let wanted = wanted(core);
    let existing: Vec<(String, Option<String>)> = core
        .store
        .iter(STORAGE, None)
        .map(|((_, name), stored)| {
            let managed = meta(&stored.decode())
                .and_then(|m| m.get("labels"))
                .and_then(|l| l.get(MANAGED))
                .and_then(Value::as_str)
                .map(str::to_owned);
            (name.clone(), managed)
        })
        .collect();
    let storage: Arc<str> = Arc::from(STORAGE);
    for (name, managed) in &existing {
        if managed.as_deref() == Some("true") && !wanted.contains_key(name) {
            core.store.remove(&storage, "", name);
        }
    }
    let now = crate::json::now_rfc3339();
    for (name, (spec, managed)) in wanted {
        if existing.iter().any(|(have, _)| *have == name) {
            continue;
        }
        let object = json!({
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now,
                "labels": {MANAGED: managed},
            },
            "spec": spec,
            "status": {"conditions": [{
                "type": "Available",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "Local",
                "message": "Local APIServices are always available",
            }]},
        });
        if let Value::Object(object) = object {
            core.store.put(&storage, object);
        }
    }
}

/// The stored APIService names, for tests.
#[cfg(test)]
fn names(core: &Core) -> Vec<String> {
    core.store
        .iter(STORAGE, None)
        .map(|((_, name), _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_built_in_group_version_has_an_api_service() {
        let core = Core::new(100, std::time::Duration::ZERO);
        let names = names(&core);
        assert_eq!(names.len(), PRIORITIES.len(), "{names:?}");
        for (group, version, _, _) in PRIORITIES {
            assert!(
                names.contains(&name_of(group, version)),
                "{version}.{group} missing from {names:?}"
            );
        }
    }
}
