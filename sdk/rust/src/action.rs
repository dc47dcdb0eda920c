//! Builders for the actions a reconcile answers with.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{Object, ObjectRef};

/// How a [`Action::Patch`] body is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902): the body is an array of operations.
    Json,
    /// Kubernetes strategic merge patch (built-in kinds only).
    Strategic,
    /// Server-side apply with the field manager `paddock-<name>`.
    Apply,
}

/// Something the controller wants done. The host checks it against the
/// guest's grant, then performs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create an object.
    Create(Value),
    /// Replace an object (PUT).
    Update(Value),
    /// Replace an object's status through `/status`.
    UpdateStatus(Value),
    /// Patch an object.
    Patch {
        /// The object to patch.
        target: ObjectRef,
        /// How the body is applied.
        kind: PatchKind,
        /// The patch document.
        body: Value,
        /// Server-side apply only: take over fields other managers own.
        force: bool,
    },
    /// Delete an object.
    Delete(ObjectRef),
    /// Set `replicas` through the `/scale` subresource.
    Scale {
        /// The object to scale.
        target: ObjectRef,
        /// The desired replicas.
        replicas: u32,
    },
    /// Record an event.
    Event {
        /// The object the event is about.
        regarding: ObjectRef,
        /// A `Warning` rather than a `Normal` event.
        warning: bool,
        /// A short UpperCamelCase reason.
        reason: String,
        /// A human-readable message.
        message: String,
    },
}

impl Action {
    /// Create `object` (any serializable object: a `json!` value, an
    /// [`Object`], or a `k8s_openapi` type).
    pub fn create(object: impl Serialize) -> Self {
        Self::Create(to_value(object))
    }

    /// Replace `object`; keep its `metadata.resourceVersion` for optimistic
    /// concurrency.
    pub fn update(object: impl Serialize) -> Self {
        Self::Update(to_value(object))
    }

    /// Replace the status of `object` (which carries `apiVersion`, `kind`,
    /// `metadata` and the new `status`).
    pub fn update_status(object: impl Serialize) -> Self {
        Self::UpdateStatus(to_value(object))
    }

    /// Server-side apply `object`: the whole intent of this controller for
    /// it. Fields other managers own are taken over (`force`), which is what
    /// a controller that owns the object wants.
    pub fn apply(object: impl Serialize) -> Self {
        let body = to_value(object);
        Self::Patch {
            target: reference_of(&body),
            kind: PatchKind::Apply,
            body,
            force: true,
        }
    }

    /// Server-side apply `child` as an object owned by `owner`: sets the
    /// controller owner reference and, when the child names none, the
    /// owner's namespace. The child is garbage-collected with its owner and
    /// its changes reconcile the owner (watch it as [`Watch::owned`](crate::Watch::owned)).
    pub fn apply_owned(owner: &Object, child: impl Serialize) -> Self {
        Self::apply(owned_by(owner, to_value(child)))
    }

    /// Create `child` as an object owned by `owner` (see [`Action::apply_owned`]).
    pub fn create_owned(owner: &Object, child: impl Serialize) -> Self {
        Self::Create(owned_by(owner, to_value(child)))
    }

    /// A JSON merge patch of `target`.
    pub fn merge_patch(target: ObjectRef, body: Value) -> Self {
        Self::patch(target, PatchKind::Merge, body)
    }

    /// A JSON patch (a list of operations) of `target`.
    pub fn json_patch(target: ObjectRef, operations: Value) -> Self {
        Self::patch(target, PatchKind::Json, operations)
    }

    /// A strategic merge patch of `target` (built-in kinds only).
    pub fn strategic_patch(target: ObjectRef, body: Value) -> Self {
        Self::patch(target, PatchKind::Strategic, body)
    }

    fn patch(target: ObjectRef, kind: PatchKind, body: Value) -> Self {
        Self::Patch {
            target,
            kind,
            body,
            force: false,
        }
    }

    /// Delete `target`.
    pub fn delete(target: ObjectRef) -> Self {
        Self::Delete(target)
    }

    /// Set the replicas of `target` through its `/scale` subresource.
    pub fn scale(target: ObjectRef, replicas: u32) -> Self {
        Self::Scale { target, replicas }
    }

    /// Record a `Normal` event about `regarding`.
    pub fn event(regarding: ObjectRef, reason: &str, message: impl Into<String>) -> Self {
        Self::Event {
            regarding,
            warning: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// Record a `Warning` event about `regarding`.
    pub fn warning(regarding: ObjectRef, reason: &str, message: impl Into<String>) -> Self {
        Self::Event {
            regarding,
            warning: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Serializes an object; objects are plain data, so this cannot fail for
/// `json!` values, [`Object`]s or `k8s_openapi` types. A type whose
/// serialization fails becomes `null`, which the host rejects as malformed
/// with the action's index.
fn to_value(object: impl Serialize) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

fn reference_of(body: &Value) -> ObjectRef {
    Object::new(body.clone()).object_ref()
}

fn owned_by(owner: &Object, mut child: Value) -> Value {
    if let Some(map) = child.as_object_mut() {
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(metadata) = metadata {
            if let Some(namespace) = owner.namespace() {
                metadata
                    .entry("namespace")
                    .or_insert_with(|| Value::from(namespace));
            }
            metadata.insert(
                "ownerReferences".to_owned(),
                json!([owner.controller_reference()]),
            );
        }
    }
    child
}

/// What a successful reconcile answers: actions and an optional requeue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Actions to perform in order.
    pub actions: Vec<Action>,
    /// Reconcile again after this long even if nothing changes.
    pub requeue_after: Option<Duration>,
}

impl Outcome {
    /// Nothing to do.
    pub fn done() -> Self {
        Self::default()
    }

    /// Adds one action.
    #[must_use]
    pub fn with(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    /// Adds one action in place.
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Reconcile again after `delay`.
    #[must_use]
    pub fn requeue_after(mut self, delay: Duration) -> Self {
        self.requeue_after = Some(delay);
        self
    }
}

impl FromIterator<Action> for Outcome {
    fn from_iter<I: IntoIterator<Item = Action>>(actions: I) -> Self {
        Self {
            actions: actions.into_iter().collect(),
            requeue_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Object {
        Object::new(json!({
            "apiVersion": "examples.paddock.dev/v1",
            "kind": "App",
            "metadata": {"name": "shop", "namespace": "prod", "uid": "u-9"}
        }))
    }

    #[test]
    fn apply_targets_the_object_and_forces() {
        let action = Action::apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n"}
        }));
        let Action::Patch {
            target,
            kind,
            force,
            ..
        } = action
        else {
            panic!("apply is a patch");
        };
        assert_eq!(target, ObjectRef::namespaced("v1", "ConfigMap", "n", "c"));
        assert_eq!(kind, PatchKind::Apply);
        assert!(force);
    }

    #[test]
    fn apply_owned_sets_owner_and_namespace() {
        let action = Action::apply_owned(
            &app(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop"}}),
        );
        let Action::Patch { target, body, .. } = action else {
            panic!("apply is a patch");
        };
        assert_eq!(target.namespace.as_deref(), Some("prod"));
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-9");
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
    }

    #[test]
    fn apply_owned_keeps_an_explicit_namespace() {
        let action = Action::apply_owned(
            &app(),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "shop", "namespace": "elsewhere"}}),
        );
        let Action::Patch { target, .. } = action else {
            panic!("apply is a patch");
        };
        assert_eq!(target.namespace.as_deref(), Some("elsewhere"));
    }

    #[test]
    fn outcome_collects_actions_and_requeue() {
        let outcome = Outcome::done()
            .with(Action::scale(app().object_ref(), 2))
            .requeue_after(Duration::from_secs(30));
        assert_eq!(outcome.actions.len(), 1);
        assert_eq!(outcome.requeue_after, Some(Duration::from_secs(30)));
    }
}
