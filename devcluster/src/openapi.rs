//! Minimal OpenAPI v3 documents: just enough for clients (kubectl) to see that every resource
//! takes the `fieldValidation` parameter, so they let the server validate.

use serde_json::{Map, Value, json};

use crate::registry::Registry;

/// Every served group-version as its OpenAPI v3 path (`api/v1`, `apis/apps/v1`).
fn group_versions(reg: &Registry) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for r in reg.all() {
        for v in &r.versions {
            let path = if r.group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{}/{v}", r.group)
            };
            if !out.iter().any(|(p, _, _)| *p == path) {
                out.push((path, r.group.clone(), v.clone()));
            }
        }
    }
    out
}

fn hash_of(reg: &Registry, group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in reg
        .all()
        .iter()
        .filter(|r| r.group == group && r.versions.iter().any(|v| v == version))
    {
        r.plural.hash(&mut h);
        r.kind.hash(&mut h);
        r.namespaced.hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the index of group-version documents.
pub(crate) fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (path, group, version) in group_versions(reg) {
        let url = format!("/openapi/v3/{path}?hash={}", hash_of(reg, &group, &version));
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{api/v1 | apis/G/V}`: one PATCH operation per resource, declaring `fieldValidation`.
pub(crate) fn group_version(reg: &Registry, gv_path: &str) -> Option<Value> {
    let (_, group, version) = group_versions(reg)
        .into_iter()
        .find(|(p, _, _)| p == gv_path)?;
    let mut paths = Map::new();
    for r in reg
        .all()
        .iter()
        .filter(|r| r.group == group && r.versions.contains(&version))
    {
        let item = if r.namespaced {
            format!("/{gv_path}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("/{gv_path}/{}/{{name}}", r.plural)
        };
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", r.kind),
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": group, "kind": r.kind, "version": version},
                }
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.36.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_declare_field_validation_per_resource() {
        let reg = Registry::builtin();
        let root = root(&reg);
        assert!(
            root["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
        let doc = group_version(&reg, "apis/apps/v1").unwrap();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }
}
