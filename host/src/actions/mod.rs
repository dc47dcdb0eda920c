//! The actions a guest answers with, validated and in the host's own types.
//!
//! A guest's output is untrusted: every action is parsed and checked here
//! (JSON that parses, objects that name their `apiVersion`, `kind` and
//! `metadata.name`, patches of the right shape) before anything else sees
//! it. One malformed action fails the whole reconcile, so nothing is
//! half-applied.

mod events;
mod executor;
mod json;
mod validate;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use events::EventRecorder;
pub use executor::{ActionExecutor, Actor, ExecuteError, PADDOCK_GROUP, target_of};
pub use json::outcome_from_json;
pub use validate::{MalformedOutput, outcome_from_guest, refs_from_guest};

/// Names one Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// The namespace; `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// The reference to a JSON object, if it names its apiVersion, kind and
    /// name.
    pub fn of(object: &Value) -> Option<Self> {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        Some(Self {
            api_version: text("/apiVersion")?.to_owned(),
            kind: text("/kind")?.to_owned(),
            namespace: text("/metadata/namespace").map(str::to_owned),
            name: text("/metadata/name")?.to_owned(),
        })
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {}/{}", self.kind, namespace, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// How a patch body is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    /// JSON merge patch (RFC 7386).
    Merge,
    /// JSON patch (RFC 6902).
    Json,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply.
    Apply,
}

/// The type of a Kubernetes event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

/// One validated action, as the grant check and the executor see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    /// Create an object.
    Create {
        /// The object, with apiVersion, kind and a name or generateName.
        object: Value,
    },
    /// Replace an object.
    Update {
        /// The object, with apiVersion, kind and name.
        object: Value,
    },
    /// Replace an object's status through `/status`.
    UpdateStatus {
        /// The object, with apiVersion, kind, name and the new status.
        object: Value,
    },
    /// Patch an object.
    #[serde(rename_all = "camelCase")]
    Patch {
        /// The object to patch.
        target: ObjectRef,
        /// How the body is applied.
        kind: PatchKind,
        /// The patch document.
        body: Value,
        /// Server-side apply: take over fields other managers own.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// Delete an object.
    Delete {
        /// The object to delete.
        target: ObjectRef,
    },
    /// Set replicas through `/scale`.
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
        /// Normal or Warning.
        #[serde(rename = "type")]
        event_type: EventType,
        /// A short UpperCamelCase reason.
        reason: String,
        /// A human-readable message.
        message: String,
    },
}

impl Action {
    /// A one-line description for logs: `scale Deployment shop/web to 3`.
    pub fn summary(&self) -> String {
        match self {
            Self::Create { .. } | Self::Update { .. } | Self::UpdateStatus { .. } => {
                format!("{} {}", self.verb(), executor::target_of(self))
            }
            Self::Patch { target, kind, .. } => match kind {
                PatchKind::Apply => format!("apply {target}"),
                other => format!("patch ({}) {target}", format!("{other:?}").to_lowercase()),
            },
            Self::Delete { target } => format!("delete {target}"),
            Self::Scale { target, replicas } => format!("scale {target} to {replicas}"),
            Self::Event {
                regarding,
                event_type,
                reason,
                ..
            } => format!("event {event_type:?} {reason} on {regarding}"),
        }
    }

    /// The action's name as the contract spells it (`create`, `patch`, ...).
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Update { .. } => "update",
            Self::UpdateStatus { .. } => "update-status",
            Self::Patch { .. } => "patch",
            Self::Delete { .. } => "delete",
            Self::Scale { .. } => "scale",
            Self::Event { .. } => "record-event",
        }
    }
}

/// What a successful reconcile answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outcome {
    /// The actions, in order.
    pub actions: Vec<Action>,
    /// Reconcile again after this long.
    #[serde(
        default,
        rename = "requeueAfterMs",
        with = "millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub requeue_after: Option<Duration>,
}

mod millis {
    //! `Option<Duration>` as whole milliseconds.

    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => {
                s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
