//! Routing: from an informer event to the primary keys to reconcile.
//!
//! `primary` events queue the object itself (a deletion keeps its last
//! state as a tombstone); `owned` events queue the controller owner when it
//! is of the primary kind; `mapped` events ask the guest's `map`.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::stats::ControllerStats;
use super::{Generation, Shared};
use crate::cluster::{InformerEvent, SharedInformer, StoredObject, split_api_version};
use crate::wasm::Relation;

/// Routes the events of one informer of watch `index` until the stream ends.
pub(crate) async fn route(
    shared: Arc<Shared>,
    generation: Arc<Generation>,
    index: usize,
    informer: Arc<SharedInformer>,
    mut events: broadcast::Receiver<InformerEvent>,
) {
    loop {
        match events.recv().await {
            Ok(InformerEvent::Applied(object)) => {
                route_one(&shared, &generation, index, &object, false).await
            }
            Ok(InformerEvent::Deleted(object)) => {
                route_one(&shared, &generation, index, &object, true).await
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Level-triggered: re-route what the store holds now.
                tracing::warn!(guest = %shared.name, missed, "fell behind an informer; re-queueing its objects");
                for object in informer.store().list(None, None) {
                    route_one(&shared, &generation, index, &object, false).await;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn route_one(
    shared: &Arc<Shared>,
    generation: &Generation,
    index: usize,
    object: &Arc<StoredObject>,
    deleted: bool,
) {
    let watched = &generation.watched[index];
    if let Some(selector) = &watched.selector
        && !selector.matches(|key| object.label(key))
    {
        return;
    }
    match watched.watch.relation {
        Relation::Primary => {
            let key = object.key();
            if deleted {
                shared
                    .tombstones
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key.clone(), Arc::clone(object));
            }
            ControllerStats::bump(&shared.stats.queued);
            shared.queue.add(key);
        }
        Relation::Owned => {
            let primary = &generation.primary().resource;
            if let Some(owner) = &object.controller
                && *owner.kind == primary.kind
                && split_api_version(&owner.api_version).0 == primary.group
            {
                ControllerStats::bump(&shared.stats.queued);
                shared
                    .queue
                    .add((object.namespace.to_string(), owner.name.to_string()));
            }
        }
        Relation::Mapped => {
            let guest = generation.guest.clone();
            let cache = Arc::clone(&generation.cache) as crate::wasm::SharedCache;
            let json = object.json.to_string();
            let deadline = guest.limits().deadline;
            let mapped = shared
                .slots
                .run(&shared.flow, Some(deadline), move || {
                    guest.map(&json, cache)
                })
                .await;
            let primary = &generation.primary().resource;
            match mapped {
                Ok(Ok(refs)) => {
                    for reference in refs {
                        if reference.kind == primary.kind
                            && split_api_version(&reference.api_version).0 == primary.group
                        {
                            ControllerStats::bump(&shared.stats.queued);
                            shared
                                .queue
                                .add((reference.namespace.unwrap_or_default(), reference.name));
                        }
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(guest = %shared.name, %error, "map failed");
                }
                Err(error) => {
                    tracing::error!(guest = %shared.name, %error, "map task failed")
                }
            }
        }
    }
}

/// Queues every primary object the stores hold (at start, and after a
/// reload).
pub(crate) fn queue_all_primaries(shared: &Shared, generation: &Generation) {
    let primary = generation.primary();
    for informer in &primary.informers {
        for object in informer.store().list(None, primary.selector.as_ref()) {
            shared.queue.add(object.key());
        }
    }
}
