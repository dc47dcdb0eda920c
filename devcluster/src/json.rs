//! JSON encoding in the apiserver's field order, and small accessors for object metadata.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

/// Encodes a map with `metadata` first, `status` last and the other keys in between,
/// leaving out `kind` and `apiVersion` (they are prepended per served version).
pub(crate) fn encode_body(obj: &Map<String, Value>) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    out.put_u8(b'{');
    let mut first = true;
    let mut put = |out: &mut BytesMut, key: &str, value: &Value| {
        if !first {
            out.put_u8(b',');
        }
        first = false;
        write_json(out, &Value::from(key));
        out.put_u8(b':');
        write_json(out, value);
    };
    if let Some(m) = obj.get("metadata") {
        put(&mut out, "metadata", m);
    }
    let mut rest: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "kind" | "apiVersion" | "metadata" | "status"))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in rest {
        put(&mut out, k, v);
    }
    if let Some(s) = obj.get("status") {
        put(&mut out, "status", s);
    }
    out.put_u8(b'}');
    out.freeze()
}

fn write_json(out: &mut BytesMut, value: &Value) {
    // Serializing a `Value` into memory cannot fail.
    if let Ok(bytes) = serde_json::to_vec(value) {
        out.put_slice(&bytes);
    }
}

/// Prepends `kind` and `apiVersion` (each left out when empty) to an encoded body.
pub(crate) fn with_type(kind: &str, api_version: &str, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + kind.len() + api_version.len() + 32);
    out.put_u8(b'{');
    let mut first = true;
    for (key, value) in [("kind", kind), ("apiVersion", api_version)] {
        if value.is_empty() {
            continue;
        }
        if !first {
            out.put_u8(b',');
        }
        first = false;
        write_json(&mut out, &Value::from(key));
        out.put_u8(b':');
        write_json(&mut out, &Value::from(value));
    }
    if body.len() > 2 {
        if !first {
            out.put_u8(b',');
        }
        out.put_slice(&body[1..]);
    } else {
        out.put_u8(b'}');
    }
    out.freeze()
}

/// Encodes a value that carries its own `kind` and `apiVersion`, with those two first.
pub(crate) fn encode_typed(value: &Value) -> Bytes {
    match value.as_object() {
        Some(obj) => {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
            let api_version = obj
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            with_type(kind, api_version, &encode_body(obj))
        }
        None => Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    }
}

/// Keeps only the `metadata` of an encoded body.
pub(crate) fn metadata_only(body: &[u8]) -> Bytes {
    let obj = decode(body);
    let mut m = Map::new();
    if let Some(meta) = obj.get("metadata") {
        m.insert("metadata".into(), meta.clone());
    }
    encode_body(&m)
}

/// Parses an encoded body back into a map.
pub(crate) fn decode(body: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(body).unwrap_or_default()
}

/// `obj.metadata`, if it is an object.
pub(crate) fn meta(obj: &Map<String, Value>) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// `obj.metadata`, created empty when absent or not an object.
pub(crate) fn meta_mut(obj: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let entry = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// A string field of `obj.metadata`.
pub(crate) fn meta_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// A nested field by path.
pub(crate) fn get_path<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        cur = cur.as_object()?.get(*p)?;
    }
    Some(cur)
}

/// A nested field of an object by path: [`get_path`] for a map.
pub(crate) fn get_in<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (head, rest) = path.split_first()?;
    get_path(obj.get(*head)?, rest)
}

/// Sets a nested field by path, creating objects on the way.
pub(crate) fn set_path(obj: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        let entry = cur.entry(*p).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        cur = next;
    }
    cur.insert((*last).to_owned(), value);
}

/// Labels of an object as sorted pairs.
pub(crate) fn labels(obj: &Map<String, Value>) -> Vec<(String, String)> {
    meta(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The finalizers of an object.
pub(crate) fn finalizers(obj: &Map<String, Value>) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The current time in RFC 3339, seconds precision, as the apiserver writes timestamps.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_and_api_version_come_first_metadata_next_status_last() {
        let v = json!({"status": {"a": 1}, "data": {"x": "y"}, "metadata": {"name": "n"}, "apiVersion": "v1", "kind": "ConfigMap"});
        let out = encode_typed(&v);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"n"},"data":{"x":"y"},"status":{"a":1}}"#
        );
    }

    #[test]
    fn with_type_handles_empty_body() {
        assert_eq!(
            &with_type("A", "v1", b"{}")[..],
            br#"{"kind":"A","apiVersion":"v1"}"#
        );
    }
}
