//! Records Kubernetes Events on behalf of guests and of the host, deduplicated
//! like client-go's recorder: a repeat of the same event on the same object
//! bumps `count` and `lastTimestamp` instead of creating another object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::json;

use super::{EventType, ObjectRef};

/// The most distinct events remembered for deduplication; past that the
/// memory is cleared (a repeat then creates a new Event, as after a restart).
const REMEMBERED: usize = 4096;

type EventKey = (String, String, String, String, String, EventType);

/// Records events.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    seen: Arc<Mutex<HashMap<EventKey, (String, u64)>>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

fn events_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Event".into(),
        plural: "events".into(),
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl EventRecorder {
    /// A recorder using `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            seen: Arc::default(),
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

    /// Records an event: creates it, or counts a repeat.
    pub async fn try_record(
        &self,
        component: &str,
        regarding: &ObjectRef,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &namespace, &events_resource());
        let key: EventKey = (
            namespace.clone(),
            regarding.kind.clone(),
            regarding.name.clone(),
            reason.to_owned(),
            message.to_owned(),
            event_type,
        );
        let repeat = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some((name, count)) = repeat {
            let body = json!({"count": count + 1, "lastTimestamp": now()});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, count + 1);
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let stamp = now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let name = format!("{}.{nanos:x}", regarding.name);
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": regarding.api_version,
                "kind": regarding.kind,
                "name": regarding.name,
                "namespace": regarding.namespace,
            },
            "reason": reason,
            "message": message,
            "type": match event_type { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component},
            "reportingComponent": component,
        });
        let event: DynamicObject =
            serde_json::from_value(event).map_err(kube::Error::SerdeError)?;
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, name, 1);
        Ok(())
    }

    fn remember(&self, key: EventKey, name: String, count: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(key, (name, count));
    }
}
