//! Merge, JSON and strategic-merge patches applied to stored objects.

use serde_json::{Map, Value};

use crate::apply::Lists;
use crate::status::ApiError;

/// The patch types the server accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value.
    pub(crate) fn from_content_type(ct: &str) -> Option<Self> {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        match essence {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

fn invalid_patch(message: String) -> ApiError {
    ApiError::new(422, "Invalid", message).with_details(Map::new())
}

/// Applies an RFC 6902 JSON patch; a malformed document is 400, a failed operation 422.
pub(crate) fn apply_json_patch(target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops.0).map_err(|e| invalid_patch(e.to_string()))
}

/// Parses a JSON patch document body (merge or strategic), 400 when it is not a JSON object.
pub(crate) fn parse_patch_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("patch body must be a JSON object"));
    }
    Ok(v)
}

/// Applies an RFC 7386 merge patch.
pub(crate) fn apply_merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|m| m.get(key))
}

/// Applies a strategic merge patch (built-in types only): lists merge as the type's
/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` say, others are replaced.
pub(crate) fn apply_strategic(
    target: &mut Value,
    patch: &Value,
    rules: Lists<'_>,
) -> Result<(), ApiError> {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => strategic_map(t, p, rules),
        _ => {
            *target = patch.clone();
            Ok(())
        }
    }
}

fn strategic_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    rules: Lists<'_>,
) -> Result<(), ApiError> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = patch.clone();
        target.remove("$patch");
        return Ok(());
    }
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        target.clear();
        return Ok(());
    }
    for (key, pv) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(items) = pv.as_array()
            && let Some(position) = items
                .iter()
                .position(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
        {
            // `[{"$patch": "replace"}, ...]`: the list becomes the other items.
            let mut rest: Vec<Value> = items
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != position)
                .map(|(_, item)| item.clone())
                .collect();
            rest.iter_mut().for_each(strip_directives);
            target.insert(key.clone(), Value::Array(rest));
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), pv.as_array())
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if pv.is_null() {
            target.remove(key);
            continue;
        }
        let field = rules.child(key);
        match (target.get_mut(key), pv) {
            (Some(Value::Object(t)), Value::Object(p)) => strategic_map(t, p, field)?,
            (Some(Value::Array(t)), Value::Array(p)) => match field.patch_merge() {
                Some(Some(mk)) => {
                    *t = merge_keyed_list(std::mem::take(t), p, mk, field.items())?;
                }
                Some(None) => {
                    for v in p {
                        if !t.contains(v) {
                            t.push(v.clone());
                        }
                    }
                }
                None => {
                    let mut v = p.clone();
                    v.iter_mut().for_each(strip_directives);
                    *t = v;
                }
            },
            _ => {
                let mut v = pv.clone();
                strip_directives(&mut v);
                target.insert(key.clone(), v);
            }
        }
    }
    for (key, order) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(list)), Some(order)) =
                (target.get_mut(field), order.as_array())
        {
            let key = rules.child(field).patch_merge().flatten();
            set_element_order(key, list, order);
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        // `$retainKeys`: fields the patch does not list are cleared (a union's other members).
        target.retain(|key, _| retain.iter().any(|k| k.as_str() == Some(key.as_str())));
    }
    Ok(())
}

/// `$setElementOrder/{field}`: the listed elements (by merge key, or by value for
/// primitive lists) in the given order, then the others in their current order.
fn set_element_order(key: Option<&str>, list: &mut Vec<Value>, order: &[Value]) {
    let identity = |item: &Value| -> Value {
        match key {
            Some(mk) => key_of(item, mk).cloned().unwrap_or(Value::Null),
            None => item.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&identity).collect();
    let mut listed: Vec<(usize, Value)> = Vec::new();
    let mut others: Vec<Value> = Vec::new();
    for item in list.drain(..) {
        match wanted.iter().position(|w| *w == identity(&item)) {
            Some(position) => listed.push((position, item)),
            None => others.push(item),
        }
    }
    listed.sort_by_key(|(position, _)| *position);
    list.extend(listed.into_iter().map(|(_, item)| item));
    list.extend(others);
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => {
            a.retain(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"));
            a.iter_mut().for_each(strip_directives);
        }
        _ => {}
    }
}

/// Merges a keyed list the way kube's strategic merge orders it: patch items first in patch order,
/// interleaved with the items only the server has by their server positions.
fn merge_keyed_list(
    server: Vec<Value>,
    patch: &[Value],
    mk: &str,
    items: Lists<'_>,
) -> Result<Vec<Value>, ApiError> {
    let server_keys: Vec<Option<Value>> = server.iter().map(|i| key_of(i, mk).cloned()).collect();
    let mut server = server;
    let mut from_patch: Vec<Value> = Vec::new();
    let mut touched = vec![false; server.len()];
    for item in patch {
        let Some(k) = key_of(item, mk) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {mk}"
            )));
        };
        let pos = server_keys.iter().position(|s| s.as_ref() == Some(k));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        if let Some(pos) = pos {
            touched[pos] = true;
            if delete {
                continue;
            }
            let mut merged = std::mem::take(&mut server[pos]);
            apply_strategic(&mut merged, item, items)?;
            from_patch.push(merged);
        } else if !delete {
            let mut v = item.clone();
            strip_directives(&mut v);
            from_patch.push(v);
        }
    }
    let server_only: Vec<Value> = server
        .into_iter()
        .zip(touched)
        .filter(|(_, t)| !t)
        .map(|(v, _)| v)
        .collect();
    let index = |v: &Value| {
        key_of(v, mk).and_then(|k| server_keys.iter().position(|s| s.as_ref() == Some(k)))
    };
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let (mut i, mut j) = (0, 0);
    while i < from_patch.len() || j < server_only.len() {
        if i >= from_patch.len() {
            out.push(server_only[j].clone());
            j += 1;
        } else if j >= server_only.len() {
            out.push(from_patch[i].clone());
            i += 1;
        } else {
            match (index(&from_patch[i]), index(&server_only[j])) {
                (Some(l), Some(r)) if r < l => {
                    out.push(server_only[j].clone());
                    j += 1;
                }
                _ => {
                    out.push(from_patch[i].clone());
                    i += 1;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> Lists<'static> {
        Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::core::v1::Pod>)
    }

    fn deployments() -> Lists<'static> {
        Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::apps::v1::Deployment>)
    }

    #[test]
    fn lists_merge_as_the_type_declares_and_are_replaced_otherwise() {
        let mut pod = json!({"spec": {
            "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
        }});
        apply_strategic(
            &mut pod,
            &json!({"spec": {
                "topologySpreadConstraints": [{"topologyKey": "host", "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"}],
                "tolerations": [{"key": "b", "operator": "Exists"}],
            }}),
            pods(),
        )
        .unwrap();
        let keys: Vec<&str> = pod["spec"]["topologySpreadConstraints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["topologyKey"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["host", "zone"], "merged by topologyKey");
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}]),
            "no patch strategy: replaced"
        );
    }

    #[test]
    fn strategic_merge_puts_new_containers_first_and_merges_by_name() {
        let mut d = json!({"spec": {"containers": [{"name": "app", "image": "a:1"}]}});
        apply_strategic(
            &mut d,
            &json!({"spec": {"containers": [{"name": "sidecar", "image": "s"}]}}),
            pods(),
        )
        .unwrap();
        let names: Vec<&str> = d["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "app"]);
        apply_strategic(
            &mut d,
            &json!({"spec": {"containers": [{"name": "app", "image": "a:2"}]}}),
            pods(),
        )
        .unwrap();
        assert_eq!(
            d["spec"]["containers"][1],
            json!({"name": "app", "image": "a:2"})
        );
        apply_strategic(
            &mut d,
            &json!({"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}),
            pods(),
        )
        .unwrap();
        assert_eq!(d["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn json_patch_errors_are_400_or_422() {
        let mut d = json!({"a": 1});
        assert_eq!(
            apply_json_patch(&mut d, b"{not json").unwrap_err().code,
            400
        );
        assert_eq!(
            apply_json_patch(&mut d, br#"[{"op":"remove","path":"/b"}]"#)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            apply_json_patch(&mut d, br#"[{"op":"test","path":"/a","value":2}]"#)
                .unwrap_err()
                .code,
            422
        );
        apply_json_patch(&mut d, br#"[{"op":"replace","path":"/a","value":2}]"#).unwrap();
        assert_eq!(d, json!({"a": 2}));
    }

    #[test]
    fn strategic_directives_replace_retain_order_and_delete_from_lists() {
        let mut deployment = json!({"spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {"spec": {
                "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
            }},
        }, "metadata": {"finalizers": ["f1", "f2", "f3"]}});
        apply_strategic(
            &mut deployment,
            &json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["f2"]},
                "spec": {
                    "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                    "template": {"spec": {
                        "containers": [{"$patch": "replace"}, {"name": "c", "image": "z"}],
                    }},
                },
            }),
            deployments(),
        )
        .expect("a valid patch");
        assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "z"}])
        );
        assert_eq!(deployment["metadata"]["finalizers"], json!(["f1", "f3"]));

        let mut pod =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        apply_strategic(
            &mut pod,
            &json!({"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "new"}],
            }}),
            pods(),
        )
        .expect("a valid patch");
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "c"}, {"name": "a", "image": "new"}, {"name": "b"}])
        );
    }
}
