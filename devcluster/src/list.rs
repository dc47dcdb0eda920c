//! Get and list: selectors, pagination with continue tokens, and the list envelope.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

use crate::core::{Core, Query, Target};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};

/// Parses `labelSelector` and `fieldSelector`; 400 when malformed.
pub(crate) fn selectors(t: &Target, q: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let raw = q.get("fieldSelector").unwrap_or_default();
    let raw = if crate::events::is_events_view(&t.res) {
        crate::events::fields_to_core(raw)
    } else {
        raw.to_owned()
    };
    let fields = FieldSelector::parse(&raw, &t.res.storage)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

/// GET of one object.
pub(crate) fn get(core: &Core, t: &Target) -> Result<(u16, Bytes), ApiError> {
    match core.store.get(&t.res.storage, t.ns(), t.name()) {
        Some(s) => Ok((200, t.render(s))),
        None => Err(t.not_found()),
    }
}

/// The list envelope around encoded items (items carry no kind/apiVersion).
pub(crate) fn render_list(
    t: &Target,
    items: &[Bytes],
    rv: u64,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Bytes {
    let mut meta = serde_json::Map::new();
    meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
    if let Some(c) = cont {
        meta.insert("continue".into(), Value::from(c));
    }
    if let Some(r) = remaining {
        meta.insert("remainingItemCount".into(), Value::from(r));
    }
    if t.table {
        return crate::table::render(t, items, meta);
    }
    let head = if t.metadata_only {
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
    } else {
        json!({"kind": format!("{}List", t.res.kind), "apiVersion": t.api_version(), "metadata": meta})
    };
    let items: Vec<Bytes> = items.iter().map(|b| t.item_body(b)).collect();
    let head = crate::json::encode_typed(&head);
    let total: usize = items.iter().map(Bytes::len).sum();
    let mut out = BytesMut::with_capacity(head.len() + total + items.len() + 16);
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(item);
    }
    out.put_slice(b"]}");
    out.freeze()
}

pub(crate) fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": [ns, name]});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

pub(crate) fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_array).ok_or_else(bad)?;
    match start.as_slice() {
        [Value::String(ns), Value::String(name)] => Ok((rv, ns.clone(), name.clone())),
        _ => Err(bad()),
    }
}

/// LIST of a collection.
pub(crate) fn list(core: &Core, t: &Target, q: &Query) -> Result<(u16, Bytes), ApiError> {
    let (labels, fields) = selectors(t, q)?;
    let rv_param = q.non_empty("resourceVersion");
    if let Some(m) = q.non_empty("resourceVersionMatch") {
        if rv_param.is_none() {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                vec![Cause::new(
                    "FieldValueForbidden",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                    "resourceVersionMatch",
                )],
            ));
        }
        if !matches!(m, "Exact" | "NotOlderThan") {
            return Err(ApiError::invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                vec![Cause::new(
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
                    ),
                    "resourceVersionMatch",
                )],
            ));
        }
        if m == "Exact" {
            let want: u64 = rv_param.and_then(|r| r.parse().ok()).unwrap_or(0);
            if want != core.store.rv() {
                return Err(ApiError::expired(want, core.store.compacted()));
            }
        }
    }
    let limit: usize = match q.non_empty("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?
            .max(0) as usize,
        None => 0,
    };
    let limit = if rv_param == Some("0") { 0 } else { limit };
    let (list_rv, start) = match q.non_empty("continue") {
        Some(token) => {
            let (rv, ns, name) = decode_continue(token)?;
            if rv < core.store.compacted() {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (rv, Some((ns, name)))
        }
        None => (core.store.rv(), None),
    };
    let selecting = !labels.is_empty() || !fields.is_empty();
    let mut items = Vec::new();
    let mut cont = None;
    let mut remaining = None;
    let mut matched = core
        .store
        .iter(&t.res.storage, t.namespace.as_deref())
        .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
        .filter(|(_, s)| labels.matches(&s.labels))
        .filter(|(_, s)| fields.is_empty() || fields.matches(&s.decode()));
    while let Some((key, stored)) = matched.next() {
        items.push(stored.body.clone());
        if limit > 0 && items.len() == limit {
            let rest = matched.by_ref().count();
            if rest > 0 {
                cont = Some(encode_continue(list_rv, &key.0, &key.1));
                if !selecting {
                    remaining = Some(rest);
                }
            }
            break;
        }
    }
    Ok((200, render_list(t, &items, list_rv, cont, remaining)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_400() {
        let token = encode_continue(42, "ns", "b");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, "ns".into(), "b".into())
        );
        assert_eq!(decode_continue("not-a-token").unwrap_err().code, 400);
    }
}
