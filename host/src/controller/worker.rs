//! Workers: take a key, reconcile the latest state through the guest, and
//! execute the outcome; then forget, back off, or requeue the key.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use tokio::sync::watch;

use super::stats::ControllerStats;
use super::{Generation, Shared};
use crate::actions::ObjectRef;
use crate::cluster::{ObjectKey, StoredObject};
use crate::wasm::{Change, SharedCache};

/// Works until the queue shuts down, or until fewer than `index + 1`
/// workers are wanted.
pub(crate) async fn work(shared: Arc<Shared>, index: usize, mut target: watch::Receiver<usize>) {
    loop {
        if index >= *target.borrow_and_update() {
            return;
        }
        // `get` is cancel safe: a key is taken only when it is returned.
        let key = tokio::select! {
            key = shared.queue.get() => match key {
                Some(key) => key,
                None => return,
            },
            changed = target.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let generation = shared.current();
        let span = tracing::info_span!(
            "reconcile",
            guest = %shared.name,
            digest = %&generation.guest.digest()[..12],
            resource = %generation.primary().resource.plural,
            namespace = %key.0,
            name = %key.1,
        );
        let fresh = shared
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone());
        if !fresh {
            ControllerStats::bump(&shared.stats.overlaps);
            tracing::error!(namespace = %key.0, name = %key.1, "a key was handed to two workers at once");
        }
        reconcile(&shared, &generation, &key).instrument(span).await;
        shared
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        shared.queue.done(&key);
    }
}

/// The latest state of a primary object: in a store, or its tombstone.
fn latest(
    shared: &Shared,
    generation: &Generation,
    key: &ObjectKey,
) -> Option<(Arc<StoredObject>, Change)> {
    let primary = generation.primary();
    let stored = primary
        .informers
        .iter()
        .find_map(|informer| informer.store().get(&key.0, &key.1));
    if let Some(object) = stored {
        return Some((object, Change::Applied));
    }
    shared
        .tombstones
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(key)
        .map(|object| (Arc::clone(object), Change::Deleted))
}

async fn reconcile(shared: &Arc<Shared>, generation: &Generation, key: &ObjectKey) {
    let Some((object, change)) = latest(shared, generation, key) else {
        shared.queue.forget(key);
        return;
    };
    ControllerStats::bump(&shared.stats.reconciles);
    let started = Instant::now();
    let attempt = shared.queue.num_requeues(key);
    let guest = generation.guest.clone();
    let cache = Arc::clone(&generation.cache) as SharedCache;
    let json = Arc::clone(&object);
    let deadline = guest.limits().deadline;
    let answer = shared
        .slots
        .run(&shared.flow, Some(deadline), move || {
            guest.reconcile(&json.json, change, attempt, cache)
        })
        .await;
    let outcome = match answer {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => {
            shared.stats.guest_error(error.kind());
            shared.stats.observe(started.elapsed());
            tracing::warn!(error.type = error.kind(), %error, "reconcile failed");
            shared.record_error(error.to_string());
            if error.is_permanent() {
                shared.queue.forget(key);
            } else {
                shared.queue.add_rate_limited(key.clone());
            }
            return;
        }
        Err(error) => {
            ControllerStats::bump(&shared.stats.guest_errors);
            tracing::error!(%error, "reconcile task failed");
            shared.record_error(format!("reconcile task failed: {error}"));
            shared.queue.add_rate_limited(key.clone());
            return;
        }
    };
    let primary = &generation.primary().resource;
    let primary_ref = ObjectRef {
        api_version: primary.api_version.clone(),
        kind: primary.kind.clone(),
        namespace: (!key.0.is_empty()).then(|| key.0.clone()),
        name: key.1.clone(),
    };
    let executed = shared
        .executor
        .execute(&generation.actor, &primary_ref, &outcome)
        .await;
    shared.stats.observe(started.elapsed());
    match executed {
        Ok(()) => {
            ControllerStats::bump(&shared.stats.succeeded);
            shared.stats.actions.fetch_add(
                outcome.actions.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let summary: Vec<String> = outcome
                .actions
                .iter()
                .map(crate::actions::Action::summary)
                .collect();
            tracing::info!(
                change = ?change,
                elapsed_ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
                "reconciled: {}",
                if summary.is_empty() { "nothing to do".to_owned() } else { summary.join("; ") }
            );
            shared.queue.forget(key);
            if change == Change::Deleted {
                shared
                    .tombstones
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(key);
            }
            if let Some(delay) = outcome.requeue_after {
                shared.queue.add_after(key.clone(), delay);
            }
        }
        Err(error) => {
            ControllerStats::bump(&shared.stats.action_errors);
            if matches!(error, crate::actions::ExecuteError::Denied { .. }) {
                ControllerStats::bump(&shared.stats.denied);
            }
            tracing::warn!(%error, "actions failed");
            shared.record_error(format!("{error:#}"));
            if error.is_permanent() {
                shared.queue.forget(key);
            } else if let Some(delay) = error.retry_after() {
                shared.queue.add_after(key.clone(), delay);
            } else {
                shared.queue.add_rate_limited(key.clone());
            }
        }
    }
}
