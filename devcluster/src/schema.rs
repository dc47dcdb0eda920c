//! Structural schemas of custom resources: pruning of unknown fields and type checks.

use serde_json::{Map, Value};

use crate::status::Cause;

/// What checking an object against its schema found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Paths of fields the schema does not declare (they were removed).
    pub unknown: Vec<String>,
    /// Type and required-field violations.
    pub causes: Vec<Cause>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Prunes and checks `value` at `path` against `schema`.
fn walk(value: &mut Value, schema: &Value, path: &str, out: &mut Findings) {
    if value.is_null() && flag(schema, "nullable") {
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            let actual = type_name(value);
            out.causes.push(Cause::new(
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{actual}\": {path} in body must be of type integer or string: \"{actual}\""),
                path,
            ));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        let actual = type_name(value);
        out.causes.push(Cause::new(
            "FieldValueTypeInvalid",
            format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
            path,
        ));
        return;
    }
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    match value {
        Value::Object(obj) => {
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        out.causes.push(Cause::new(
                            "FieldValueRequired",
                            "Required value",
                            join(path, r),
                        ));
                    }
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = obj.keys().cloned().collect();
            for key in keys {
                let child_path = join(path, &key);
                let child_schema = properties
                    .and_then(|p| p.get(&key))
                    .or(additional.filter(|a| a.is_object()));
                match child_schema {
                    Some(s) => {
                        if let Some(child) = obj.get_mut(&key) {
                            walk(child, s, &child_path, out);
                        }
                    }
                    None if preserve || additional.is_some_and(|a| a.as_bool() == Some(true)) => {}
                    None => {
                        obj.remove(&key);
                        out.unknown.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Go's `%T` for a JSON value, as the apiserver prints it in accessor errors.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The scale subresource's check of a replicas path (`.spec.replicas`): an integer from 0 to 2^31-1.
pub(crate) fn check_replicas(obj: &Value, path: &str) -> Vec<Cause> {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let Some(v) = crate::json::get_path(obj, &parts) else {
        return Vec::new();
    };
    let dotted = format!(".{}", parts.join("."));
    match v.as_i64() {
        Some(n) if n < 0 => {
            vec![Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: {n}: should be a non-negative integer"),
                path,
            )]
        }
        Some(n) if n > i64::from(i32::MAX) => vec![Cause::new(
            "FieldValueInvalid",
            format!(
                "Invalid value: {n}: should be less than or equal to {}",
                i32::MAX
            ),
            path,
        )],
        Some(_) => Vec::new(),
        None => {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            vec![Cause::new(
                "FieldValueInvalid",
                format!(
                    "Invalid value: 0: {dotted} accessor error: {shown} is of the type {}, expected int64",
                    go_type(v)
                ),
                path,
            )]
        }
    }
}

/// Prunes unknown fields from a custom resource and checks it against its `openAPIV3Schema`;
/// `apiVersion`, `kind` and `metadata` are the server's and left alone.
pub(crate) fn check(obj: &mut Map<String, Value>, schema: &Value) -> Findings {
    let mut out = Findings::default();
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let properties = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.and_then(|p| p.get(&key)) {
            Some(s) => {
                if let Some(child) = obj.get_mut(&key) {
                    walk(child, s, &key, &mut out);
                }
            }
            None if preserve => {}
            None => {
                obj.remove(&key);
                out.unknown.push(key);
            }
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) && !matches!(r, "apiVersion" | "kind" | "metadata") {
                out.causes
                    .push(Cause::new("FieldValueRequired", "Required value", r));
            }
        }
    }
    out
}

/// `metadata` fields of every object.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Top-level fields of the built-in types, besides `apiVersion`, `kind` and `metadata`.
fn builtin_fields(storage: &str) -> Option<&'static [&'static str]> {
    Some(match storage {
        "/configmaps" => &["data", "binaryData", "immutable"],
        "/secrets" => &["data", "stringData", "type", "immutable"],
        "/serviceaccounts" => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "/events" => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        "coordination.k8s.io/leases" => &["spec"],
        "rbac.authorization.k8s.io/roles" => &["rules"],
        "rbac.authorization.k8s.io/clusterroles" => &["rules", "aggregationRule"],
        "rbac.authorization.k8s.io/rolebindings"
        | "rbac.authorization.k8s.io/clusterrolebindings" => &["subjects", "roleRef"],
        "/namespaces"
        | "/pods"
        | "/services"
        | "apps/deployments"
        | "apps/replicasets"
        | "apps/statefulsets"
        | "apps/daemonsets"
        | "apiextensions.k8s.io/customresourcedefinitions" => &["spec", "status"],
        _ => return None,
    })
}

/// Drops the top-level and `metadata` fields a built-in type does not have.
pub(crate) fn check_builtin(storage: &str, obj: &mut Map<String, Value>) -> Findings {
    let mut out = Findings::default();
    let Some(known) = builtin_fields(storage) else {
        return out;
    };
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
            && !known.contains(&key.as_str())
        {
            obj.remove(&key);
            out.unknown.push(key);
        }
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let keys: Vec<String> = meta.keys().cloned().collect();
        for key in keys {
            if !OBJECT_META.contains(&key.as_str()) {
                meta.remove(&key);
                out.unknown.push(format!("metadata.{key}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_unknown_fields_and_reports_type_errors() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
        }});
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"size": 2, "extra": 1, "labels": {"a": "b"}, "free": {"any": 1}}, "junk": true})
            .as_object()
            .cloned()
            .unwrap();
        let f = check(&mut obj, &schema);
        assert_eq!(f.unknown, ["junk", "spec.extra"]);
        assert!(f.causes.is_empty(), "{:?}", f.causes);
        assert_eq!(obj["spec"]["free"]["any"], 1);
        let mut bad = json!({"spec": {"size": "two"}})
            .as_object()
            .cloned()
            .unwrap();
        let f = check(&mut bad, &schema);
        assert_eq!(f.causes[0].reason, "FieldValueTypeInvalid");
        assert_eq!(
            f.causes[0].message,
            "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
        );
        let mut missing = json!({"spec": {}}).as_object().cloned().unwrap();
        assert_eq!(check(&mut missing, &schema).causes[0].field, "spec.size");
    }

    #[test]
    fn built_in_types_drop_unknown_top_level_and_metadata_fields() {
        let mut cm = json!({"kind": "ConfigMap", "metadata": {"name": "x", "lables": {}}, "data": {}, "datas": {}})
            .as_object()
            .cloned()
            .unwrap();
        let f = check_builtin("/configmaps", &mut cm);
        assert_eq!(f.unknown, ["datas", "metadata.lables"]);
        assert_eq!(
            Value::Object(cm),
            json!({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}})
        );
    }
}
