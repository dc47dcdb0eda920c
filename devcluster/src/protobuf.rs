//! Just enough of Kubernetes' protobuf encoding to read the bodies kubectl's imperative commands
//! send (`create namespace | configmap | secret | serviceaccount | role | rolebinding | token`,
//! `auth can-i`, `auth whoami`): kubectl uses protobuf for built-in types.

use base64::Engine;
use serde_json::{Map, Value};

/// Why a protobuf body cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtoError {
    /// Not a well-formed Kubernetes protobuf envelope or message.
    #[error("malformed protobuf body")]
    Malformed,
    /// A type this server cannot decode from protobuf.
    #[error("protobuf bodies of kind {0} are not supported, send JSON")]
    Unsupported(String),
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or(ProtoError::Malformed)?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if n > self.buf.len() {
            return Err(ProtoError::Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Skipped
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtoError::Malformed)?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Skipped
            }
            _ => return Err(ProtoError::Malformed),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ProtoError> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed)
}

/// Sets a string field, leaving it out when empty (protobuf always carries Go's empty strings,
/// JSON leaves them out).
fn set_text(m: &mut Map<String, Value>, field: &str, b: &[u8]) -> Result<(), ProtoError> {
    let t = text(b)?;
    if !t.is_empty() {
        m.insert(field.to_owned(), Value::from(t));
    }
    Ok(())
}

/// A map entry message (`1: key`, `2: value`); `binary` values become base64 as in JSON.
fn entry(b: &[u8], binary: bool) -> Result<(String, Value), ProtoError> {
    let (mut key, mut value) = (String::new(), Value::from(""));
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = text(k)?,
            (2, Field::Bytes(v)) if binary => {
                value = Value::from(base64::engine::general_purpose::STANDARD.encode(v));
            }
            (2, Field::Bytes(v)) => value = Value::from(text(v)?),
            _ => {}
        }
    }
    Ok((key, value))
}

fn put_entry(
    obj: &mut Map<String, Value>,
    field: &str,
    b: &[u8],
    binary: bool,
) -> Result<(), ProtoError> {
    let (k, v) = entry(b, binary)?;
    let map = obj
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = map.as_object_mut() {
        m.insert(k, v);
    }
    Ok(())
}

fn push(obj: &mut Map<String, Value>, field: &str, v: Value) {
    let list = obj.entry(field).or_insert_with(|| Value::Array(Vec::new()));
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}

fn owner_reference(b: &[u8]) -> Result<Value, ProtoError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => drop(m.insert("kind".into(), Value::from(text(v)?))),
            (3, Field::Bytes(v)) => drop(m.insert("name".into(), Value::from(text(v)?))),
            (4, Field::Bytes(v)) => drop(m.insert("uid".into(), Value::from(text(v)?))),
            (5, Field::Bytes(v)) => drop(m.insert("apiVersion".into(), Value::from(text(v)?))),
            (6, Field::Varint(v)) => drop(m.insert("controller".into(), Value::from(v != 0))),
            (7, Field::Varint(v)) => {
                drop(m.insert("blockOwnerDeletion".into(), Value::from(v != 0)))
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object_meta(b: &[u8]) -> Result<Value, ProtoError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => set_text(&mut m, "name", v)?,
            (2, Field::Bytes(v)) => set_text(&mut m, "generateName", v)?,
            (3, Field::Bytes(v)) => set_text(&mut m, "namespace", v)?,
            (6, Field::Bytes(v)) => set_text(&mut m, "resourceVersion", v)?,
            (11, Field::Bytes(v)) => put_entry(&mut m, "labels", v, false)?,
            (12, Field::Bytes(v)) => put_entry(&mut m, "annotations", v, false)?,
            (13, Field::Bytes(v)) => push(&mut m, "ownerReferences", owner_reference(v)?),
            (14, Field::Bytes(v)) => push(&mut m, "finalizers", Value::from(text(v)?)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn decode_kind(kind: &str, raw: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let mut obj = Map::new();
    for (n, f) in fields(raw)? {
        match (kind, n, f) {
            (_, 1, Field::Bytes(v)) => drop(obj.insert("metadata".into(), object_meta(v)?)),
            ("ConfigMap", 2, Field::Bytes(v)) => put_entry(&mut obj, "data", v, false)?,
            ("ConfigMap", 3, Field::Bytes(v)) => put_entry(&mut obj, "binaryData", v, true)?,
            ("ConfigMap", 4, Field::Varint(v)) | ("Secret", 5, Field::Varint(v)) => {
                drop(obj.insert("immutable".into(), Value::from(v != 0)));
            }
            ("Secret", 2, Field::Bytes(v)) => put_entry(&mut obj, "data", v, true)?,
            ("Secret", 3, Field::Bytes(v)) => set_text(&mut obj, "type", v)?,
            ("Secret", 4, Field::Bytes(v)) => put_entry(&mut obj, "stringData", v, false)?,
            ("Namespace", 2, Field::Bytes(v)) => {
                let mut spec = Map::new();
                for (sn, sf) in fields(v)? {
                    if let (1, Field::Bytes(fin)) = (sn, sf) {
                        push(&mut spec, "finalizers", Value::from(text(fin)?));
                    }
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
            ("ServiceAccount", 4, Field::Varint(v)) => {
                drop(obj.insert("automountServiceAccountToken".into(), Value::from(v != 0)));
            }
            _ => {}
        }
    }
    Ok(obj)
}

/// How one field of a message reads: its JSON name and shape.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Str,
    Strs,
    Int,
    Meta,
    Msg(Message),
    Msgs(Message),
    /// `map<string, string>`.
    StrMap,
    /// `map<string, ExtraValue>` (user extras: lists of strings).
    ExtraMap,
}

/// A message as `(field number, JSON name, shape)` triples.
type Message = &'static [(u64, &'static str, Shape)];

const POLICY_RULE: Message = &[
    (1, "verbs", Shape::Strs),
    (2, "apiGroups", Shape::Strs),
    (3, "resources", Shape::Strs),
    (4, "resourceNames", Shape::Strs),
    (5, "nonResourceURLs", Shape::Strs),
];
const SELECTOR_REQUIREMENT: Message = &[
    (1, "key", Shape::Str),
    (2, "operator", Shape::Str),
    (3, "values", Shape::Strs),
];
const LABEL_SELECTOR: Message = &[
    (1, "matchLabels", Shape::StrMap),
    (2, "matchExpressions", Shape::Msgs(SELECTOR_REQUIREMENT)),
];
const ROLE: Message = &[
    (1, "metadata", Shape::Meta),
    (2, "rules", Shape::Msgs(POLICY_RULE)),
];
const CLUSTER_ROLE: Message = &[
    (1, "metadata", Shape::Meta),
    (2, "rules", Shape::Msgs(POLICY_RULE)),
    (
        3,
        "aggregationRule",
        Shape::Msg(&[(1, "clusterRoleSelectors", Shape::Msgs(LABEL_SELECTOR))]),
    ),
];
const SUBJECT: Message = &[
    (1, "kind", Shape::Str),
    (2, "apiGroup", Shape::Str),
    (3, "name", Shape::Str),
    (4, "namespace", Shape::Str),
];
const ROLE_REF: Message = &[
    (1, "apiGroup", Shape::Str),
    (2, "kind", Shape::Str),
    (3, "name", Shape::Str),
];
const BINDING: Message = &[
    (1, "metadata", Shape::Meta),
    (2, "subjects", Shape::Msgs(SUBJECT)),
    (3, "roleRef", Shape::Msg(ROLE_REF)),
];
const TOKEN_REQUEST: Message = &[
    (1, "metadata", Shape::Meta),
    (
        2,
        "spec",
        Shape::Msg(&[
            (1, "audiences", Shape::Strs),
            (4, "expirationSeconds", Shape::Int),
            (
                3,
                "boundObjectRef",
                Shape::Msg(&[
                    (1, "kind", Shape::Str),
                    (2, "apiVersion", Shape::Str),
                    (3, "name", Shape::Str),
                    (4, "uid", Shape::Str),
                ]),
            ),
        ]),
    ),
];
const TOKEN_REVIEW: Message = &[
    (1, "metadata", Shape::Meta),
    (
        2,
        "spec",
        Shape::Msg(&[(1, "token", Shape::Str), (2, "audiences", Shape::Strs)]),
    ),
];
const RESOURCE_ATTRIBUTES: Message = &[
    (1, "namespace", Shape::Str),
    (2, "verb", Shape::Str),
    (3, "group", Shape::Str),
    (4, "version", Shape::Str),
    (5, "resource", Shape::Str),
    (6, "subresource", Shape::Str),
    (7, "name", Shape::Str),
];
const NON_RESOURCE_ATTRIBUTES: Message = &[(1, "path", Shape::Str), (2, "verb", Shape::Str)];
const SELF_ACCESS_REVIEW: Message = &[
    (1, "metadata", Shape::Meta),
    (
        2,
        "spec",
        Shape::Msg(&[
            (1, "resourceAttributes", Shape::Msg(RESOURCE_ATTRIBUTES)),
            (
                2,
                "nonResourceAttributes",
                Shape::Msg(NON_RESOURCE_ATTRIBUTES),
            ),
        ]),
    ),
];
const ACCESS_REVIEW: Message = &[
    (1, "metadata", Shape::Meta),
    (
        2,
        "spec",
        Shape::Msg(&[
            (1, "resourceAttributes", Shape::Msg(RESOURCE_ATTRIBUTES)),
            (
                2,
                "nonResourceAttributes",
                Shape::Msg(NON_RESOURCE_ATTRIBUTES),
            ),
            (3, "user", Shape::Str),
            (4, "groups", Shape::Strs),
            (5, "extra", Shape::ExtraMap),
            (6, "uid", Shape::Str),
        ]),
    ),
];
const RULES_REVIEW: Message = &[
    (1, "metadata", Shape::Meta),
    (2, "spec", Shape::Msg(&[(1, "namespace", Shape::Str)])),
];
const SELF_REVIEW: Message = &[(1, "metadata", Shape::Meta)];

/// The identity and RBAC kinds read through their message tables.
fn message_of(api_version: &str, kind: &str) -> Option<Message> {
    Some(match (api_version, kind) {
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("authentication.k8s.io/v1", "TokenReview") => TOKEN_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => {
            ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => RULES_REVIEW,
        _ => return None,
    })
}

/// Decodes a message by its table; unknown fields are skipped.
fn decode_message(raw: &[u8], spec: Message) -> Result<Map<String, Value>, ProtoError> {
    let mut obj = Map::new();
    for (n, f) in fields(raw)? {
        let Some((_, name, shape)) = spec.iter().find(|(num, _, _)| *num == n) else {
            continue;
        };
        let name = *name;
        match (*shape, f) {
            (Shape::Str, Field::Bytes(v)) => set_text(&mut obj, name, v)?,
            (Shape::Strs, Field::Bytes(v)) => push(&mut obj, name, Value::from(text(v)?)),
            (Shape::Int, Field::Varint(v)) => {
                // int64 travels as its two's complement in a varint.
                drop(obj.insert(name.into(), Value::from(v as i64)));
            }
            (Shape::Meta, Field::Bytes(v)) => drop(obj.insert(name.into(), object_meta(v)?)),
            (Shape::Msg(m), Field::Bytes(v)) => {
                drop(obj.insert(name.into(), Value::Object(decode_message(v, m)?)));
            }
            (Shape::Msgs(m), Field::Bytes(v)) => {
                push(&mut obj, name, Value::Object(decode_message(v, m)?));
            }
            (Shape::StrMap, Field::Bytes(v)) => put_entry(&mut obj, name, v, false)?,
            (Shape::ExtraMap, Field::Bytes(v)) => {
                let mut key = String::new();
                let mut items = Vec::new();
                for (en, ef) in fields(v)? {
                    match (en, ef) {
                        (1, Field::Bytes(k)) => key = text(k)?,
                        (2, Field::Bytes(list)) => {
                            for (_, item) in fields(list)? {
                                if let Field::Bytes(i) = item {
                                    items.push(Value::from(text(i)?));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                let map = obj.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, Value::Array(items));
                }
            }
            _ => return Err(ProtoError::Malformed),
        }
    }
    Ok(obj)
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into a JSON object with kind and apiVersion.
pub(crate) fn decode(body: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    let envelope = body.strip_prefix(b"k8s\0").ok_or(ProtoError::Malformed)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(envelope)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match (tn, tf) {
                        (1, Field::Bytes(v)) => api_version = text(v)?,
                        (2, Field::Bytes(v)) => kind = text(v)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(v)) => raw = v,
            _ => {}
        }
    }
    let mut obj = if let Some(spec) = message_of(&api_version, &kind) {
        decode_message(raw, spec)?
    } else if matches!(
        kind.as_str(),
        "ConfigMap" | "Secret" | "Namespace" | "ServiceAccount"
    ) && api_version == "v1"
    {
        decode_kind(&kind, raw)?
    } else {
        return Err(ProtoError::Unsupported(kind));
    };
    obj.insert("kind".into(), Value::from(kind));
    obj.insert("apiVersion".into(), Value::from(api_version));
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ld(field: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let meta = [
            ld(1, b"cm"),
            ld(11, &[ld(1, b"app"), ld(2, b"web")].concat()),
        ]
        .concat();
        let raw = [ld(1, &meta), ld(2, &[ld(1, b"k"), ld(2, b"v")].concat())].concat();
        let type_meta = [ld(1, b"v1"), ld(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, &raw)].concat();
        let obj = decode(&body).unwrap();
        assert_eq!(
            Value::Object(obj),
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        let pod_type = [ld(1, b"v1"), ld(2, b"Pod")].concat();
        let pod = [b"k8s\0".to_vec(), ld(1, &pod_type)].concat();
        assert!(matches!(decode(&pod), Err(ProtoError::Unsupported(k)) if k == "Pod"));
    }
}
