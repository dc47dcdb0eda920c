//! Records Kubernetes Events on behalf of guests and of the host:
//! `events.k8s.io/v1` Events with `reportingController` and
//! `reportingInstance` set and the regarding object's `uid` filled in
//! (`kubectl describe` finds events by uid).
//!
//! A repeat of the same event (same reporting controller, object, type,
//! reason and note) within six minutes is counted in the first one's
//! `series` with a patch, as client-go's events broadcaster and
//! kube-runtime's `Recorder` do. Unlike those two, the note is part of what
//! makes a repeat: a guest's message carries what it did ("scaled to 5"),
//! and a new message must be seen, as the core/v1 recorder showed it. Each
//! reporting controller (`paddock-<name>`) keeps its own memory of what it
//! recorded: one guest's events never count as another's repeats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};

use super::{EventType, ObjectRef};
use crate::cluster::{Discovery, InformerRegistry};

/// The most events remembered for counting repeats; past that the memory
/// is cleared (a repeat then creates a new Event, as after a restart).
const REMEMBERED: usize = 4096;

/// How long a repeat is counted in the first event's series (client-go's
/// window for a series).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// The longest `note` the API server accepts on an `events.k8s.io/v1` Event.
const NOTE_LIMIT: usize = 1024;

/// The longest `reason` the API server accepts.
const REASON_LIMIT: usize = 128;

/// What makes two events the same: the reporting controller, the regarded
/// object (with its uid), the type, the reason and the note.
type EventKey = (String, ObjectRef, Option<String>, EventType, String, String);

/// An event recorded, and how often.
#[derive(Debug, Clone)]
struct Recorded {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

/// Records events.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    discovery: Discovery,
    registry: InformerRegistry,
    /// This host's name, the `reportingInstance` of its events.
    instance: Arc<str>,
    recorded: Arc<Mutex<HashMap<EventKey, Recorded>>>,
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
            recorded: Arc::default(),
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
        let client = self.client.clone();
        self.try_record_as(&client, component, regarding, event_type, reason, message)
            .await
    }

    /// [`EventRecorder::try_record`] through `client`: a guest's own
    /// events, under its identity.
    ///
    /// # Errors
    ///
    /// The API server's answer when it refuses the create or the patch.
    pub async fn try_record_as(
        &self,
        client: &Client,
        component: &str,
        regarding: &ObjectRef,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let uid = self.uid_of(client, regarding).await;
        let reason = truncate(reason, REASON_LIMIT);
        let note = truncate(message, NOTE_LIMIT);
        let key: EventKey = (
            component.to_owned(),
            regarding.clone(),
            uid.clone(),
            event_type,
            reason.to_owned(),
            note.to_owned(),
        );
        let now = Timestamp::now();
        let repeat = self
            .memory()
            .get(&key)
            .filter(|recorded| recorded.last + SERIES_WINDOW > now)
            .cloned();
        if let Some(recorded) = repeat {
            let count = recorded.count + 1;
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(now),
            };
            let patch = serde_json::json!({"series": series});
            let request = events_at(&recorded.namespace).patch(
                &recorded.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            );
            match send_unread(client, request).await {
                Ok(_) => {
                    self.remember(
                        key,
                        Recorded {
                            count,
                            last: now,
                            ..recorded
                        },
                    );
                    return Ok(());
                }
                // The event expired or was deleted: record it anew.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!("{}.{:x}", regarding.name, now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Reconcile".into()),
            reason: Some(reason.to_owned()),
            note: Some(note.to_owned()),
            type_: Some(
                match event_type {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            regarding: Some(ObjectReference {
                api_version: Some(regarding.api_version.clone()),
                kind: Some(regarding.kind.clone()),
                namespace: regarding.namespace.clone(),
                name: Some(regarding.name.clone()),
                uid,
                ..ObjectReference::default()
            }),
            reporting_controller: Some(component.to_owned()),
            reporting_instance: Some(self.instance.to_string()),
            ..Event::default()
        };
        let body = serde_json::to_vec(&event).map_err(kube::Error::SerdeError)?;
        let request = events_at(&namespace).create(&PostParams::default(), body);
        send_unread(client, request).await?;
        self.remember(
            key,
            Recorded {
                namespace,
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<EventKey, Recorded>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, key: EventKey, recorded: Recorded) {
        let mut memory = self.memory();
        if memory.len() >= REMEMBERED {
            let now = Timestamp::now();
            memory.retain(|_, kept| kept.last + SERIES_WINDOW > now);
            if memory.len() >= REMEMBERED {
                memory.clear();
            }
        }
        memory.insert(key, recorded);
    }

    /// The uid of the regarded object: from an informer's store when one
    /// holds it (the primary object of a reconcile always is), else asked
    /// of the API server; `None` when it cannot be found.
    async fn uid_of(&self, client: &Client, regarding: &ObjectRef) -> Option<String> {
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
                Api::namespaced_with(client.clone(), namespace, &resource.api_resource())
            }
            _ => Api::all_with(client.clone(), &resource.api_resource()),
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

/// Requests on the Events of `namespace`.
fn events_at(namespace: &str) -> kube::core::Request {
    use kube::Resource;
    kube::core::Request::new(Event::url_path(&(), Some(namespace)))
}

/// Sends a write whose answer the recorder does not need: an error status
/// is an error as from [`Api`], and a success is not read into an
/// [`Event`] (a quarter of the recorder's CPU, profiled on a controller
/// recording an event per reconcile).
async fn send_unread(
    client: &Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<(), kube::Error> {
    client
        .request_text(request.map_err(kube::Error::BuildRequest)?)
        .await
        .map(drop)
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
