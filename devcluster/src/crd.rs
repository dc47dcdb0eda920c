//! CustomResourceDefinitions: validation, status conditions, and serving their resources.

use serde_json::{Map, Value, json};

use crate::core::Core;
use crate::json::{get_path, meta, meta_str, now_rfc3339};
use crate::registry::{ResourceDef, from_crd};
use crate::status::ApiError;
use crate::store::Stored;

const CRD_STORAGE: &str = "apiextensions.k8s.io/customresourcedefinitions";

/// The finalizer a deleted CRD carries while its objects are removed.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn is_crd(res: &ResourceDef) -> bool {
    &*res.storage == CRD_STORAGE
}

/// Checks a CRD before it is created.
pub(crate) fn validate(obj: &Map<String, Value>) -> Result<(), ApiError> {
    from_crd(obj).map(|_| ()).map_err(|causes| {
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            meta_str(obj, "name").unwrap_or_default(),
            causes,
        )
    })
}

/// Whether the CRD of a custom resource exists and is not being deleted.
pub(crate) fn serving(core: &Core, res: &ResourceDef) -> bool {
    let name = format!("{}.{}", res.plural, res.group);
    core.store
        .get(CRD_STORAGE, "", &name)
        .is_some_and(|s| meta(&s.decode()).is_none_or(|m| !m.contains_key("deletionTimestamp")))
}

fn condition(ty: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": ty, "status": status, "lastTransitionTime": now, "reason": reason, "message": message})
}

/// Sets the status a CRD gets from the apiextensions controllers: names accepted, established.
pub(crate) fn on_write(res: &ResourceDef, obj: &mut Map<String, Value>) {
    if !is_crd(res) {
        return;
    }
    let v = Value::Object(obj.clone());
    let names = get_path(&v, &["spec", "names"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut accepted = names.clone();
    if let Some(a) = accepted.as_object_mut() {
        if !a.contains_key("singular")
            && let Some(kind) = a.get("kind").and_then(Value::as_str)
        {
            a.insert("singular".into(), Value::from(kind.to_lowercase()));
        }
        if !a.contains_key("listKind")
            && let Some(kind) = a.get("kind").and_then(Value::as_str)
        {
            a.insert("listKind".into(), Value::from(format!("{kind}List")));
        }
    }
    let storage: Vec<Value> = get_path(&v, &["spec", "versions"])
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|ver| ver.get("storage").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|ver| ver.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let deleting = meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
    let old_status = obj.get("status").cloned().unwrap_or_else(|| json!({}));
    let existing = |ty: &str| -> Option<Value> {
        old_status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
                    .cloned()
            })
    };
    let now = now_rfc3339();
    let keep_or = |ty: &str, status: &str, reason: &str, message: &str| -> Value {
        match existing(ty) {
            Some(c) if c.get("status").and_then(Value::as_str) == Some(status) => c,
            _ => condition(ty, status, reason, message, &now),
        }
    };
    let mut conditions = vec![
        keep_or("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        keep_or(
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
    ];
    if deleting {
        conditions.push(keep_or(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ));
    }
    let mut stored_versions: Vec<Value> = old_status
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in storage {
        if !stored_versions.contains(&s) {
            stored_versions.push(s);
        }
    }
    obj.insert(
        "status".into(),
        json!({"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored_versions}),
    );
}

/// After a CRD is written: serve its resource (unless it is being deleted).
pub(crate) fn after_write(core: &mut Core, res: &ResourceDef, stored: &Stored) {
    if !is_crd(res) {
        return;
    }
    let obj = stored.decode();
    if meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        return;
    }
    match from_crd(&obj) {
        Ok(def) => {
            tracing::debug!(group = %def.group, plural = %def.plural, "serving custom resource");
            core.registry.add_custom(def);
            crate::apiservices::sync(core);
        }
        Err(causes) => tracing::warn!(?causes, "stored CRD cannot be served"),
    }
}

/// After a CRD is removed: stop serving its resource and forget its objects.
pub(crate) fn after_remove(core: &mut Core, res: &ResourceDef, gone: &Map<String, Value>) {
    if !is_crd(res) {
        return;
    }
    let v = Value::Object(gone.clone());
    let group = get_path(&v, &["spec", "group"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plural = get_path(&v, &["spec", "names", "plural"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    core.registry.remove_custom(group, plural);
    core.store.drop_table(&format!("{group}/{plural}"));
    crate::apiservices::sync(core);
}

/// The storage key of the resource a CRD serves.
pub(crate) fn storage_of(crd: &Map<String, Value>) -> Option<String> {
    let v = Value::Object(crd.clone());
    let group = get_path(&v, &["spec", "group"]).and_then(Value::as_str)?;
    let plural = get_path(&v, &["spec", "names", "plural"]).and_then(Value::as_str)?;
    Some(format!("{group}/{plural}"))
}

/// The storage key of CustomResourceDefinitions.
pub(crate) fn crd_storage() -> &'static str {
    CRD_STORAGE
}
