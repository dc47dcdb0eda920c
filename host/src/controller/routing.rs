//! Routing: from an informer event to the primary keys to reconcile.
//!
//! `primary` events queue the object itself (a deletion keeps its last
//! state as a tombstone); `owned` events queue the controller owner when it
//! is of the primary kind; `mapped` events queue the changed object in the
//! controller's map queue, where a worker asks the guest's `map` for the
//! primaries to queue (see [`super::worker`]).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::stats::ControllerStats;
use super::{Generation, Shared};
use crate::cluster::{InformerEvent, StoredObject, split_api_version};
use crate::wasm::Relation;

/// Routes the events of one informer of watch `index` until the stream
/// ends. The subscription gets every event (it never lags, and routing
/// never waits), so no deletion is lost to a router that fell behind.
pub(crate) async fn route(
    shared: Arc<Shared>,
    generation: Arc<Generation>,
    index: usize,
    mut events: mpsc::UnboundedReceiver<InformerEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            InformerEvent::Applied(object) => {
                route_one(&shared, &generation, index, &object, false);
            }
            InformerEvent::Deleted(object) => {
                route_one(&shared, &generation, index, &object, true);
            }
        }
    }
}

fn route_one(
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
                // An owner reference names an owner in the object's own
                // namespace, or a cluster-scoped one.
                let namespace = if primary.namespaced {
                    object.namespace.to_string()
                } else {
                    String::new()
                };
                ControllerStats::bump(&shared.stats.queued);
                shared.queue.add((namespace, owner.name.to_string()));
            }
        }
        Relation::Mapped => {
            let key = MapKey {
                api_version: watched.watch.api_version.clone(),
                kind: watched.watch.kind.clone(),
                object: object.key(),
            };
            {
                let mut tombstones = shared
                    .map_tombstones
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if deleted {
                    tombstones.insert(key.clone(), Arc::clone(object));
                } else {
                    tombstones.remove(&key);
                }
            }
            shared.maps.add(key);
        }
    }
}

/// A changed object of a `mapped` watch, waiting for the guest's `map`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MapKey {
    /// The watch's `apiVersion`.
    pub(crate) api_version: String,
    /// The watch's kind.
    pub(crate) kind: String,
    /// The changed object.
    pub(crate) object: crate::cluster::ObjectKey,
}

impl std::fmt::Display for MapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (namespace, name) = &self.object;
        if namespace.is_empty() {
            write!(f, "{} {name}", self.kind)
        } else {
            write!(f, "{} {namespace}/{name}", self.kind)
        }
    }
}

/// The key of primary object `name` in `namespace`, as the queue holds it:
/// without a namespace when the primary kind is cluster-scoped.
pub(crate) fn primary_key(
    generation: &Generation,
    namespace: Option<String>,
    name: String,
) -> crate::cluster::ObjectKey {
    if generation.primary().resource.namespaced {
        (namespace.unwrap_or_default(), name)
    } else {
        (String::new(), name)
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
