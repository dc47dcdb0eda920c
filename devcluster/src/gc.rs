//! The garbage collector and the namespace and CRD finalizers, run over queued `GcTask`s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::core::{Core, GcTask, Propagation, Target};
use crate::crd;
use crate::delete::{self, DeleteOpts};
use crate::json::{finalizers, meta, meta_mut, meta_str};
use crate::store::ObjRef;

/// How often a CRD whose objects are still held by finalizers is checked again.
const CRD_RECHECK: Duration = Duration::from_millis(200);

/// Runs every task due by `now`, including those they queue; returns when the next pending task is due.
pub(crate) fn run_due(core: &mut Core, now: Instant) -> Option<Instant> {
    let mut budget = 100_000usize;
    while let Some(pos) = core.gc.iter().position(|(due, _)| *due <= now) {
        let Some((_, task)) = core.gc.remove(pos) else {
            break;
        };
        run(core, task);
        budget -= 1;
        if budget == 0 {
            tracing::warn!("garbage collector stopped after too many tasks in one pass");
            break;
        }
    }
    core.gc.iter().map(|(due, _)| *due).min()
}

fn target_for(core: &Core, r: &ObjRef) -> Option<Target> {
    let res = core
        .registry
        .all()
        .iter()
        .find(|d| d.storage == r.0)?
        .clone();
    Some(Target {
        version: res.preferred().to_owned(),
        namespace: Some(r.1.0.clone()).filter(|n| !n.is_empty()),
        name: Some(r.1.1.clone()),
        subresource: None,
        metadata_only: false,
        table: false,
        res,
    })
}

fn delete_ref(core: &mut Core, r: &ObjRef, policy: Propagation) {
    if let Some(t) = target_for(core, r) {
        let opts = DeleteOpts {
            policy: Some(policy),
            ..DeleteOpts::default()
        };
        if let Err(e) = delete::delete(core, &t, &opts) {
            tracing::debug!(error = %e, name = %r.1.1, "garbage collector delete failed");
        }
    }
}

fn refs_of(obj: &Map<String, Value>) -> Vec<Value> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn write(core: &mut Core, storage: &Arc<str>, obj: Map<String, Value>) {
    let deleting = meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
    if deleting && finalizers(&obj).is_empty() {
        let ns = meta_str(&obj, "namespace").unwrap_or_default().to_owned();
        let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
        core.store.put(storage, obj);
        if let Some(gone) = core.store.remove(storage, &ns, &name) {
            core.removed(&gone);
            if let Some(res) = core
                .registry
                .all()
                .iter()
                .find(|d| d.storage == *storage)
                .cloned()
            {
                crd::after_remove(core, &res, &gone);
            }
        }
    } else {
        core.store.put(storage, obj);
    }
}

fn remove_finalizer(core: &mut Core, r: &ObjRef, finalizer: &str) {
    let Some(stored) = core.store.get(&r.0, &r.1.0, &r.1.1) else {
        return;
    };
    let mut obj = stored.decode();
    let fins: Vec<String> = finalizers(&obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let m = meta_mut(&mut obj);
    if fins.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), Value::from(fins));
    }
    write(core, &r.0, obj);
}

fn run(core: &mut Core, task: GcTask) {
    match task {
        GcTask::Dependents { owner_uid, policy } => dependents(core, &owner_uid, policy),
        GcTask::Owner { uid } => owner(core, &uid),
        GcTask::Namespace { name } => namespace(core, &name),
        GcTask::Crd { name } => crd_cleanup(core, &name),
        GcTask::Dangling {
            storage,
            namespace,
            name,
        } => dangling(core, &(storage, (namespace, name))),
    }
}

/// An owner reference is dangling when no object with its uid exists.
fn dangling(core: &mut Core, r: &ObjRef) {
    let Some(stored) = core.store.get(&r.0, &r.1.0, &r.1.1) else {
        return;
    };
    let mut obj = stored.decode();
    if meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        return;
    }
    let refs = refs_of(&obj);
    let alive: Vec<Value> = refs
        .iter()
        .filter(|rf| {
            rf.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| core.store.by_uid(u).is_some())
        })
        .cloned()
        .collect();
    if alive.len() == refs.len() {
        return;
    }
    if alive.is_empty() {
        tracing::debug!(name = %r.1.1, "deleting an object whose owners are all gone");
        delete_ref(core, r, Propagation::Background);
    } else {
        meta_mut(&mut obj).insert("ownerReferences".into(), Value::Array(alive));
        write(core, &r.0, obj);
    }
}

fn dependents(core: &mut Core, owner_uid: &str, policy: Propagation) {
    for dep in core.store.dependents_of(owner_uid) {
        let Some(stored) = core.store.get(&dep.0, &dep.1.0, &dep.1.1) else {
            continue;
        };
        let mut obj = stored.decode();
        let refs = refs_of(&obj);
        let others_alive = refs.iter().any(|r| {
            r.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| u != owner_uid && core.store.by_uid(u).is_some())
        });
        if policy == Propagation::Orphan || others_alive {
            let kept: Vec<Value> = refs
                .into_iter()
                .filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid))
                .collect();
            let m = meta_mut(&mut obj);
            if kept.is_empty() {
                m.remove("ownerReferences");
            } else {
                m.insert("ownerReferences".into(), Value::Array(kept));
            }
            write(core, &dep.0, obj);
        } else {
            let p = if policy == Propagation::Foreground {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            delete_ref(core, &dep, p);
        }
    }
    core.schedule(GcTask::Owner {
        uid: owner_uid.to_owned(),
    });
}

fn owner(core: &mut Core, uid: &str) {
    let Some(r) = core.store.by_uid(uid).cloned() else {
        return;
    };
    let Some(stored) = core.store.get(&r.0, &r.1.0, &r.1.1) else {
        return;
    };
    let obj = stored.decode();
    if !meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        return;
    }
    let fins = finalizers(&obj);
    let blocking = core.store.dependents_of(uid).into_iter().any(|dep| {
        core.store.get(&dep.0, &dep.1.0, &dep.1.1).is_some_and(|s| {
            refs_of(&s.decode()).iter().any(|rf| {
                rf.get("uid").and_then(Value::as_str) == Some(uid)
                    && rf
                        .get("blockOwnerDeletion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
            })
        })
    });
    if fins.iter().any(|f| f == "foregroundDeletion") && !blocking {
        remove_finalizer(core, &r, "foregroundDeletion");
    } else if fins.iter().any(|f| f == "orphan") && core.store.dependents_of(uid).is_empty() {
        remove_finalizer(core, &r, "orphan");
    }
}

fn namespace(core: &mut Core, name: &str) {
    let Some(ns) = core.namespace(name) else {
        return;
    };
    if !meta(&ns).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        return;
    }
    let mut remaining = 0usize;
    let mut by_resource: Vec<String> = Vec::new();
    let mut by_finalizer: std::collections::BTreeMap<String, usize> = Default::default();
    for storage in core.store.storages() {
        if &*storage == "/namespaces" {
            continue;
        }
        let keys: Vec<ObjRef> = core
            .store
            .iter(&storage, Some(name))
            .map(|(k, _)| (storage.clone(), k.clone()))
            .collect();
        for r in keys {
            let deleting = core.store.get(&r.0, &r.1.0, &r.1.1).is_some_and(|s| {
                meta(&s.decode()).is_some_and(|m| m.contains_key("deletionTimestamp"))
            });
            if !deleting {
                delete_ref(core, &r, Propagation::Background);
            }
        }
        let left = core.store.iter(&storage, Some(name)).count();
        if left > 0 {
            let (group, resource) = storage.split_once('/').unwrap_or(("", &storage));
            by_resource.push(format!("{resource}.{group} has {left} resource instances"));
            for (_, stored) in core.store.iter(&storage, Some(name)) {
                for finalizer in finalizers(&stored.decode()) {
                    *by_finalizer.entry(finalizer).or_default() += 1;
                }
            }
        }
        remaining += left;
    }
    set_deletion_conditions(core, ns.clone(), &by_resource, &by_finalizer);
    if remaining > 0 {
        return;
    }
    let Some(mut obj) = core.namespace(name) else {
        return;
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("finalizers");
    }
    write(core, &Arc::from("/namespaces"), obj);
}

/// The conditions kube-controller-manager's namespace deleter keeps on a
/// Terminating namespace: what content and which finalizers remain.
fn set_deletion_conditions(
    core: &mut Core,
    mut ns: Map<String, Value>,
    by_resource: &[String],
    by_finalizer: &std::collections::BTreeMap<String, usize>,
) {
    let mut resources = by_resource.to_vec();
    resources.sort();
    let finalizers: Vec<String> = by_finalizer
        .iter()
        .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
        .collect();
    let wanted = [
        ("NamespaceDeletionDiscoveryFailure", None),
        ("NamespaceDeletionGroupVersionParsingFailure", None),
        ("NamespaceDeletionContentFailure", None),
        (
            "NamespaceContentRemaining",
            (!resources.is_empty()).then(|| {
                (
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", resources.join(", ")),
                )
            }),
        ),
        (
            "NamespaceFinalizersRemaining",
            (!finalizers.is_empty()).then(|| {
                (
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        finalizers.join(", ")
                    ),
                )
            }),
        ),
    ];
    let ok = |kind: &str| -> (&'static str, &'static str) {
        match kind {
            "NamespaceDeletionDiscoveryFailure" => (
                "ResourcesDiscovered",
                "All resources successfully discovered",
            ),
            "NamespaceDeletionGroupVersionParsingFailure" => (
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed",
            ),
            "NamespaceDeletionContentFailure" => (
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            ),
            "NamespaceContentRemaining" => ("ContentRemoved", "All content successfully removed"),
            _ => (
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished",
            ),
        }
    };
    let old: Vec<Value> = ns
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = crate::json::now_rfc3339();
    let conditions: Vec<Value> = wanted
        .into_iter()
        .map(|(kind, problem)| {
            let (status, reason, message) = match problem {
                Some((reason, message)) => ("True", reason.to_owned(), message),
                None => {
                    let (reason, message) = ok(kind);
                    ("False", reason.to_owned(), message.to_owned())
                }
            };
            let previous = old
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind));
            let unchanged = previous.is_some_and(|c| {
                c.get("status").and_then(Value::as_str) == Some(status)
                    && c.get("reason").and_then(Value::as_str) == Some(reason.as_str())
                    && c.get("message").and_then(Value::as_str) == Some(message.as_str())
            });
            let since = match previous {
                Some(c) if unchanged => c.get("lastTransitionTime").cloned().unwrap_or_default(),
                _ => Value::from(now.clone()),
            };
            serde_json::json!({
                "type": kind,
                "status": status,
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            })
        })
        .collect();
    if conditions == old {
        return;
    }
    if let Some(status) = ns.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    // A plain write: the namespace itself goes only once its content is gone.
    core.store.put(&Arc::from("/namespaces"), ns);
}

fn crd_cleanup(core: &mut Core, name: &str) {
    let Some(stored) = core.store.get(crd::crd_storage(), "", name) else {
        return;
    };
    let obj = stored.decode();
    let Some(storage) = crd::storage_of(&obj) else {
        return;
    };
    let storage: Arc<str> = Arc::from(storage);
    let keys: Vec<ObjRef> = core
        .store
        .iter(&storage, None)
        .map(|(k, _)| (storage.clone(), k.clone()))
        .collect();
    for r in keys {
        delete_ref(core, &r, Propagation::Background);
    }
    if core.store.count(&storage) > 0 {
        core.schedule_after(
            CRD_RECHECK,
            GcTask::Crd {
                name: name.to_owned(),
            },
        );
        return;
    }
    let r: ObjRef = (
        Arc::from(crd::crd_storage()),
        (String::new(), name.to_owned()),
    );
    remove_finalizer(core, &r, crd::CLEANUP_FINALIZER);
}
