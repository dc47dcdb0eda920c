//! The `scale` subresource: `autoscaling/v1` Scale views of objects with a replicas field.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::core::{Core, Target};
use crate::defaults::{at_json_path, set_json_path};
use crate::json::{encode_typed, meta};
use crate::patch::{self, PatchType};
use crate::registry::ScalePaths;
use crate::status::ApiError;
use crate::store::Stored;
use crate::write::{Ownership, WriteCtx, finish_update};

fn paths(t: &Target) -> Result<&ScalePaths, ApiError> {
    t.res.scale.as_ref().ok_or_else(ApiError::path_not_found)
}

/// A label selector object (`matchLabels`, `matchExpressions`) or string, as a selector string.
pub(crate) fn selector_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(sel) => {
            let mut parts: Vec<String> = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            for expr in sel
                .get("matchExpressions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = expr
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match expr
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => parts.push(format!("{key} in ({})", values.join(","))),
                    "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                    "Exists" => parts.push(key.to_owned()),
                    "DoesNotExist" => parts.push(format!("!{key}")),
                    _ => {}
                }
            }
            Some(parts.join(","))
        }
        _ => None,
    }
}

/// The Scale of a stored object.
fn scale_of(t: &Target, stored: &Stored) -> Result<Value, ApiError> {
    let p = paths(t)?;
    let obj = Value::Object(stored.decode());
    let m = meta(
        obj.as_object()
            .ok_or_else(|| ApiError::internal("stored object is not a map"))?,
    )
    .cloned()
    .unwrap_or_default();
    let mut metadata = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            metadata.insert(k.to_owned(), v.clone());
        }
    }
    let spec_replicas = at_json_path(&obj, &p.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = at_json_path(&obj, &p.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = if t.res.custom {
        p.label_selector
            .as_deref()
            .and_then(|path| at_json_path(&obj, path))
            .and_then(|v| v.as_str().map(str::to_owned))
    } else {
        selector_string(at_json_path(&obj, ".spec.selector"))
    };
    let mut status = Map::new();
    status.insert("replicas".into(), Value::from(status_replicas));
    if let Some(s) = selector {
        status.insert("selector".into(), Value::from(s));
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec_replicas},
        "status": status,
    }))
}

fn current(core: &Core, t: &Target) -> Result<Stored, ApiError> {
    paths(t)?;
    core.store
        .get(&t.res.storage, t.ns(), t.name())
        .cloned()
        .ok_or_else(|| t.not_found())
}

/// GET of `/scale`.
pub(crate) fn get(core: &Core, t: &Target) -> Result<(u16, Bytes), ApiError> {
    let stored = current(core, t)?;
    Ok((200, encode_typed(&scale_of(t, &stored)?)))
}

/// PUT of `/scale`.
pub(crate) fn update(
    core: &mut Core,
    t: &Target,
    body: &[u8],
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let stored = current(core, t)?;
    let scale: Value = if crate::protobuf::is_protobuf(body) {
        crate::protobuf::decode_request(body, "Scale").map(Value::Object)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?
    };
    write_scale(core, t, &stored, &scale, ctx)
}

/// PATCH of `/scale`.
pub(crate) fn patch(
    core: &mut Core,
    t: &Target,
    content_type: &str,
    body: &[u8],
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let stored = current(core, t)?;
    let mut scale = scale_of(t, &stored)?;
    match PatchType::from_content_type(content_type) {
        Some(PatchType::Json) => patch::apply_json_patch(&mut scale, body)?,
        Some(PatchType::Merge | PatchType::Strategic) => {
            patch::apply_merge_patch(&mut scale, &patch::parse_patch_object(body)?)
        }
        Some(PatchType::Apply) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("apply body is not UTF-8"))?;
            let applied: Value = serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            patch::apply_merge_patch(&mut scale, &applied);
        }
        None => return Err(ApiError::unsupported_media_type(t.res.custom)),
    }
    write_scale(core, t, &stored, &scale, ctx)
}

fn write_scale(
    core: &mut Core,
    t: &Target,
    stored: &Stored,
    scale: &Value,
    ctx: &WriteCtx,
) -> Result<(u16, Bytes), ApiError> {
    let p = paths(t)?.clone();
    if let Some(rv) = scale
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(Value::as_str)
        && !rv.is_empty()
        && rv != stored.rv.to_string()
    {
        return Err(ApiError::stale(&t.res.plural, &t.res.group, t.name()));
    }
    let Some(replicas) = scale
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
    else {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            t.name(),
            vec![crate::status::Cause::new(
                "FieldValueRequired",
                "Required value",
                "spec.replicas",
            )],
        ));
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            t.name(),
            vec![crate::status::Cause::new(
                "FieldValueInvalid",
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                "spec.replicas",
            )],
        ));
    }
    let mut obj = stored.decode();
    set_json_path(&mut obj, &p.spec_replicas, Value::from(replicas));
    finish_update(core, t, stored, obj, ctx, Ownership::Record)?;
    let after = current(core, t)?;
    Ok((200, encode_typed(&scale_of(t, &after)?)))
}
