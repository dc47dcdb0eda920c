//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}` and `/apis/{group}/{version}`.

use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceDef};

/// The Kubernetes version the server reports.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "36",
        "emulationMajor": "1",
        "emulationMinor": "36",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "35",
        "gitVersion": "v1.36.0-devcluster",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

/// `/api`.
pub(crate) fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn group_version(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| group_version(name, v)).collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// `/apis`.
pub(crate) fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
pub(crate) fn group(reg: &Registry, name: &str) -> Option<Value> {
    let (_, versions) = reg.groups().into_iter().find(|(g, _)| g == name)?;
    let mut doc = group_doc(name, &versions);
    if let Some(m) = doc.as_object_mut() {
        m.insert("kind".into(), Value::from("APIGroup"));
        m.insert("apiVersion".into(), Value::from("v1"));
    }
    Some(doc)
}

fn resource_entry(r: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::from(r.plural.clone()));
    m.insert("singularName".into(), Value::from(r.singular.clone()));
    m.insert("namespaced".into(), Value::from(r.namespaced));
    m.insert("kind".into(), Value::from(r.kind.clone()));
    m.insert("verbs".into(), Value::from(r.verbs.to_vec()));
    if !r.short_names.is_empty() {
        m.insert("shortNames".into(), Value::from(r.short_names.clone()));
    }
    if !r.categories.is_empty() {
        m.insert("categories".into(), Value::from(r.categories.clone()));
    }
    Value::Object(m)
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub(crate) fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    if !reg.serves_group_version(group, version) {
        return None;
    }
    let mut list = Vec::new();
    for r in reg
        .all()
        .iter()
        .filter(|r| r.group == group && r.versions.iter().any(|v| v == version))
    {
        list.push(resource_entry(r));
        for sub in r.all_subresources() {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind.map_or(r.kind.as_str(), |(_, _, kind)| kind),
                "verbs": sub.verbs,
            });
            if let Some((group, version, _)) = sub.kind.filter(|(g, _, _)| *g != r.group) {
                entry["group"] = Value::from(group);
                entry["version"] = Value::from(version);
            }
            list.push(entry);
        }
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let mut doc = Map::new();
    doc.insert("kind".into(), Value::from("APIResourceList"));
    if !group.is_empty() {
        doc.insert("apiVersion".into(), Value::from("v1"));
    }
    doc.insert("groupVersion".into(), Value::from(gv));
    doc.insert("resources".into(), Value::Array(list));
    Some(Value::Object(doc))
}

/// The `Content-Type` of aggregated discovery documents.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery (v2).
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|a| {
        a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2") && !a.contains("v=v2beta1")
    })
}

fn aggregated_resource(r: &ResourceDef) -> Value {
    let kind = json!({"group": "", "version": "", "kind": r.kind});
    let mut m = Map::new();
    m.insert("resource".into(), Value::from(r.plural.clone()));
    m.insert("responseKind".into(), kind.clone());
    m.insert(
        "scope".into(),
        Value::from(if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }),
    );
    m.insert("singularResource".into(), Value::from(r.singular.clone()));
    m.insert("verbs".into(), Value::from(r.verbs.to_vec()));
    if !r.short_names.is_empty() {
        m.insert("shortNames".into(), Value::from(r.short_names.clone()));
    }
    if !r.categories.is_empty() {
        m.insert("categories".into(), Value::from(r.categories.clone()));
    }
    let subs: Vec<Value> = r
        .all_subresources()
        .iter()
        .map(|sub| {
            let response = sub.kind.map_or_else(
                || kind.clone(),
                |(group, version, kind)| json!({"group": group, "version": version, "kind": kind}),
            );
            let mut entry =
                json!({"subresource": sub.name, "responseKind": response, "verbs": sub.verbs});
            if sub.name == "scale" {
                entry["acceptedTypes"] = json!([response]);
            }
            entry
        })
        .collect();
    if !subs.is_empty() {
        m.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(m)
}

fn aggregated_group(reg: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = reg
                .all()
                .iter()
                .filter(|r| r.group == group && r.versions.contains(v))
                .map(|r| aggregated_resource(r))
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery for `/api` (`core == true`) or `/apis`.
pub(crate) fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(reg, "", &["v1".to_owned()])]
    } else {
        reg.groups()
            .iter()
            .map(|(g, vs)| aggregated_group(reg, g, vs))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_v1_lists_scale_and_status_subresources() {
        let reg = Registry::builtin();
        let doc = resources(&reg, "apps", "v1").unwrap();
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"), "{names:?}");
        assert!(names.contains(&"deployments/status"), "{names:?}");
        assert!(resources(&reg, "apps", "v9").is_none());
        let groups = groups(&reg);
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "coordination.k8s.io")
        );
    }
}
