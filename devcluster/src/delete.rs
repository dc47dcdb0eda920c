//! Delete and deletecollection: preconditions, finalizers, propagation policies.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::core::{Core, GcTask, Propagation, Query, Target};
use crate::crd;
use crate::json::{encode_body, finalizers, meta, meta_mut, now_rfc3339, with_type};
use crate::status::{ApiError, Cause, delete_success};

/// The options of one delete, from the body (`DeleteOptions`) and the query.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOpts {
    pub policy: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOpts {
    /// Reads `DeleteOptions` from a request body (may be empty) and query parameters.
    pub(crate) fn parse(body: &[u8], q: &Query) -> Result<Self, ApiError> {
        let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else if crate::protobuf::is_protobuf(body) {
            crate::protobuf::decode_request(body, "DeleteOptions").map(Value::Object)?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| q.non_empty(k).map(str::to_owned))
        };
        let policy = match s("propagationPolicy").as_deref() {
            None => None,
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some("Orphan") => Some(Propagation::Orphan),
            Some(other) => {
                return Err(ApiError::invalid(
                    "DeleteOptions",
                    "meta.k8s.io",
                    "",
                    vec![Cause::new(
                        "FieldValueNotSupported",
                        format!(
                            "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                        ),
                        "propagationPolicy",
                    )],
                ));
            }
        };
        let orphan = v
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| q.get("orphanDependents").map(|o| o == "true"));
        let policy = match (policy, orphan) {
            (Some(p), _) => Some(p),
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (None, None) => None,
        };
        let pre = v.get("preconditions");
        let dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
            || q.get("dryRun") == Some("All");
        Ok(Self {
            policy,
            uid: pre
                .and_then(|p| p.get("uid"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            resource_version: pre
                .and_then(|p| p.get("resourceVersion"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            dry_run,
        })
    }
}

/// DELETE of one object.
pub(crate) fn delete(
    core: &mut Core,
    t: &Target,
    opts: &DeleteOpts,
) -> Result<(u16, Bytes), ApiError> {
    let name = t.name().to_owned();
    let Some(stored) = core.store.get(&t.res.storage, t.ns(), &name).cloned() else {
        return Err(t.not_found());
    };
    if &*t.res.storage == "/namespaces"
        && matches!(name.as_str(), "default" | "kube-system" | "kube-public")
    {
        let mut details = Map::new();
        details.insert("name".into(), Value::from(name.clone()));
        details.insert("kind".into(), Value::from("namespaces"));
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
        )
        .with_details(details));
    }
    let mut obj = stored.decode();
    let uid = meta(&obj)
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(want) = &opts.uid
        && *want != uid
    {
        return Err(ApiError::conflict(
            &t.res.kind,
            &t.res.group,
            &name,
            &format!(
                "the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
            ),
        ));
    }
    if let Some(want) = &opts.resource_version
        && *want != stored.rv.to_string()
    {
        return Err(ApiError::conflict(
            &t.res.kind,
            &t.res.group,
            &name,
            &format!(
                "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({}). The object might have been modified",
                stored.rv
            ),
        ));
    }
    let render = |o: &Map<String, Value>| with_type(&t.res.kind, &t.api_version(), &encode_body(o));
    let already = meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
    let is_namespace = &*t.res.storage == "/namespaces";
    let is_crd = &*t.res.storage == crd::crd_storage();
    let policy = opts.policy.unwrap_or(Propagation::Background);
    let mut fins = finalizers(&obj);
    match policy {
        Propagation::Foreground if !is_namespace => push_unique(&mut fins, "foregroundDeletion"),
        Propagation::Orphan if !is_namespace => push_unique(&mut fins, "orphan"),
        _ => {}
    }
    if is_crd {
        push_unique(&mut fins, crd::CLEANUP_FINALIZER);
    }
    if already && (fins == finalizers(&obj) || opts.dry_run) {
        return Ok((200, render(&obj)));
    }
    if fins.is_empty() && !is_namespace {
        if opts.dry_run {
            return Ok((
                200,
                crate::json::encode_typed(&delete_success(
                    &t.res.plural,
                    &t.res.group,
                    &name,
                    &uid,
                )),
            ));
        }
        if let Some(gone) = core.store.remove(&t.res.storage, t.ns(), &name) {
            core.removed(&gone);
        }
        let status = delete_success(&t.res.plural, &t.res.group, &name, &uid);
        return Ok((200, crate::json::encode_typed(&status)));
    }
    {
        let m = meta_mut(&mut obj);
        if !already {
            m.insert("deletionTimestamp".into(), Value::from(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), Value::from(0));
        }
        if fins.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), Value::from(fins.clone()));
        }
    }
    if is_namespace {
        crate::json::set_path(&mut obj, &["status", "phase"], Value::from("Terminating"));
    }
    crd::on_write(&t.res, &mut obj);
    if opts.dry_run {
        return Ok((200, render(&obj)));
    }
    let stored = core.store.put(&t.res.storage, obj.clone());
    if is_namespace {
        core.schedule_after(
            core.namespace_delay,
            GcTask::Namespace { name: name.clone() },
        );
    } else if is_crd {
        core.schedule(GcTask::Crd { name: name.clone() });
    } else {
        match policy {
            Propagation::Foreground | Propagation::Orphan => {
                core.schedule(GcTask::Dependents {
                    owner_uid: uid,
                    policy,
                });
            }
            Propagation::Background => {}
        }
    }
    Ok((200, t.render(&stored)))
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|f| f == item) {
        list.push(item.to_owned());
    }
}

/// DELETE of a collection: deletes every object the selectors match, answers with the list.
pub(crate) fn delete_collection(
    core: &mut Core,
    t: &Target,
    q: &Query,
    opts: &DeleteOpts,
) -> Result<(u16, Bytes), ApiError> {
    let (labels, fields) = crate::list::selectors(t, q)?;
    let names: Vec<(String, String)> = core
        .store
        .iter(&t.res.storage, t.namespace.as_deref())
        .filter(|(_, s)| labels.matches(&s.labels))
        .filter(|(_, s)| fields.is_empty() || fields.matches(&s.decode()))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        let target = Target {
            namespace: Some(ns.clone()).filter(|n| !n.is_empty()),
            name: Some(name),
            ..t.clone()
        };
        let before = core
            .store
            .get(&t.res.storage, &ns, target.name())
            .map(|s| s.body.clone());
        delete(core, &target, opts)?;
        if let Some(body) = before {
            items.push(body);
        }
    }
    let rv = core.store.rv();
    Ok((200, crate::list::render_list(t, &items, rv, None, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_come_from_body_or_query() {
        let q = Query::default();
        let o = DeleteOpts::parse(
            br#"{"propagationPolicy":"Foreground","preconditions":{"uid":"u"}}"#,
            &q,
        )
        .unwrap();
        assert_eq!(o.policy, Some(Propagation::Foreground));
        assert_eq!(o.uid.as_deref(), Some("u"));
        let mut q = Query::default();
        q.0.insert("propagationPolicy".into(), "Orphan".into());
        assert_eq!(
            DeleteOpts::parse(b"", &q).unwrap().policy,
            Some(Propagation::Orphan)
        );
        q.0.insert("propagationPolicy".into(), "Sometimes".into());
        assert_eq!(DeleteOpts::parse(b"", &q).unwrap_err().code, 422);
    }
}
