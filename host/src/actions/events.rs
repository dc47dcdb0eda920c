//! Records Kubernetes Events on behalf of guests and of the host, through
//! kube-runtime's `Recorder`: `events.k8s.io/v1` Events with
//! `reportingController` and `reportingInstance` set and the regarding
//! object's `uid` filled in (`kubectl describe` finds events by uid), and a
//! repeat of the same event counted in the first one's `series` (a `patch`)
//! instead of creating another object.
//!
//! Each reporting controller (`paddock-<name>`) has a recorder, and so a
//! deduplication memory, of its own: one guest's events never count as
//! repeats of another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};

use super::{EventType, ObjectRef};
use crate::cluster::{Discovery, InformerRegistry};

/// The most reporting controllers remembered; past that the recorders are
/// dropped (a repeat then creates a new Event, as after a restart).
const REMEMBERED: usize = 1024;

/// The longest `note` the API server accepts on an `events.k8s.io/v1` Event.
const NOTE_LIMIT: usize = 1024;

/// The longest `reason` the API server accepts.
const REASON_LIMIT: usize = 128;

/// Records events.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    discovery: Discovery,
    registry: InformerRegistry,
    /// This host's name, the `reportingInstance` of its events.
    instance: Arc<str>,
    recorders: Arc<Mutex<HashMap<String, Recorder>>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder using `client`, finding the uid of regarded objects in
    /// the informers' stores of `registry` first, else through `discovery`
    /// and a `get`.
    pub fn new(client: Client, discovery: Discovery, registry: InformerRegistry) -> Self {
        let instance = hostname::get()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "paddock".into());
        Self {
            client,
            discovery,
            registry,
            instance: instance.into(),
            recorders: Arc::default(),
        }
    }

    /// Records an event, logging (not returning) a failure: for the host's
    /// own reports.
    pub async fn record(
        &self,
        component: &str,
        regarding: &ObjectRef,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Err(error) = self
            .try_record(component, regarding, event_type, reason, message)
            .await
        {
            tracing::warn!(%regarding, reason, %error, "could not record an event");
        }
    }

    /// Records an event as reporting controller `component`: creates it,
    /// or counts a repeat in its series.
    ///
    /// # Errors
    ///
    /// The API server's answer when it refuses the create or the patch.
    pub async fn try_record(
        &self,
        component: &str,
        regarding: &ObjectRef,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let reference = ObjectReference {
            api_version: Some(regarding.api_version.clone()),
            kind: Some(regarding.kind.clone()),
            namespace: regarding.namespace.clone(),
            name: Some(regarding.name.clone()),
            uid: self.uid_of(regarding).await,
            ..ObjectReference::default()
        };
        let event = Event {
            type_: match event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: truncate(reason, REASON_LIMIT).to_owned(),
            note: Some(truncate(message, NOTE_LIMIT).to_owned()),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.recorder(component).publish(&event, &reference).await
    }

    /// The recorder of one reporting controller.
    fn recorder(&self, component: &str) -> Recorder {
        let mut recorders = self
            .recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(recorder) = recorders.get(component) {
            return recorder.clone();
        }
        if recorders.len() >= REMEMBERED {
            recorders.clear();
        }
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: component.to_owned(),
                instance: Some(self.instance.to_string()),
            },
        );
        recorders.insert(component.to_owned(), recorder.clone());
        recorder
    }

    /// The uid of the regarded object: from an informer's store when one
    /// holds it (the primary object of a reconcile always is), else asked
    /// of the API server; `None` when it cannot be found.
    async fn uid_of(&self, regarding: &ObjectRef) -> Option<String> {
        let namespace = regarding.namespace.as_deref().unwrap_or_default();
        let cached = self
            .registry
            .find(
                &regarding.api_version,
                &regarding.kind,
                regarding.namespace.as_deref(),
            )
            .iter()
            .find_map(|informer| informer.store().get(namespace, &regarding.name));
        if let Some(object) = cached {
            return object.uid();
        }
        let resource = self
            .discovery
            .resolve(&regarding.api_version, &regarding.kind)
            .await
            .ok()?;
        let api: Api<DynamicObject> = match &regarding.namespace {
            Some(namespace) if resource.namespaced => {
                Api::namespaced_with(self.client.clone(), namespace, &resource.api_resource())
            }
            _ => Api::all_with(self.client.clone(), &resource.api_resource()),
        };
        api.get_metadata_opt(&regarding.name)
            .await
            .ok()
            .flatten()
            .and_then(|object| object.metadata.uid)
    }
}

/// `text` cut to at most `limit` bytes, at a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate(&"x".repeat(2000), 1024).len(), 1024);
    }
}
