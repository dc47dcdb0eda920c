//! Workers: take a key, reconcile the latest state through the guest, and
//! execute the outcome; then forget, back off, or requeue the key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument;

use tokio::sync::watch;

use super::finalizer::{self, FinalizerState, Step};
use super::routing::{self, MapKey};
use super::shadow::Question;
use super::stats::ControllerStats;
use super::{Generation, Shared};
use crate::actions::ObjectRef;
use crate::cluster::{ObjectKey, StoredObject, split_api_version};
use crate::identity::Attributes;
use crate::record::writer::Pending;
use crate::record::{CallKind, RecordingCache, map_result, reconcile_result};
use crate::wasm::{Change, Relation, SharedCache};

/// Works until the queue shuts down, or until fewer than `index + 1`
/// workers are wanted.
pub(crate) async fn work(shared: Arc<Shared>, index: usize, mut target: watch::Receiver<usize>) {
    // A queue that shut down (or drained) hands out nothing more; the
    // worker stops once both have, so that a drained map queue does not
    // end a drain of reconciles still queued.
    let mut reconciles_open = true;
    let mut maps_open = true;
    loop {
        if index >= *target.borrow_and_update() || !(reconciles_open || maps_open) {
            return;
        }
        // A standby, or a host that lost its ring's Lease, takes nothing.
        if !shared.fence.allows_now() {
            tokio::select! {
                () = shared.fence.opened() => {}
                changed = target.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            }
        }
        // `get` is cancel safe: a key is taken only when it is returned.
        // Reconciles and maps share the controller's workers, so its
        // concurrency bounds both.
        let job = tokio::select! {
            key = shared.queue.get(), if reconciles_open => match key {
                Some(key) => Job::Reconcile(key),
                None => {
                    reconciles_open = false;
                    continue;
                }
            },
            key = shared.maps.get(), if maps_open => match key {
                Some(key) => Job::Map(key),
                None => {
                    maps_open = false;
                    continue;
                }
            },
            changed = target.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        if !shared.fence.allows_now() {
            // The fence closed while this worker waited: the job goes back
            // for whichever host works next (this one, when it works again).
            match job {
                Job::Reconcile(key) => {
                    shared.queue.add(key.clone());
                    shared.queue.done(&key);
                }
                Job::Map(key) => {
                    shared.maps.add(key.clone());
                    shared.maps.done(&key);
                }
            }
            continue;
        }
        if let Job::Reconcile(key) = &job
            && !shared.fence.owns(&key.0, &key.1)
        {
            // Another member's key in a sharded ring: its owner reconciles
            // it, and should it become this host's, the hand-over queues
            // it again.
            shared.queue.forget(key);
            shared.forget_tombstone(key);
            shared.queue.done(key);
            continue;
        }
        let generation = shared.current();
        if let Job::Reconcile(key) = &job
            && !generation.covers(key)
        {
            // This host's share grew and an informer is still listing the
            // objects it gained: the key waits for them rather than be
            // reconciled on a partial view (children missing, say).
            shared.queue.add_after(key.clone(), SHARE_LISTING_WAIT);
            shared.queue.done(key);
            continue;
        }
        match job {
            Job::Reconcile(key) => reconcile_key(&shared, &generation, key).await,
            Job::Map(key) => {
                let span = tracing::info_span!(
                    "map",
                    guest = %shared.name,
                    digest = %&generation.guest.digest()[..12],
                    identity = %generation.actor.identity(),
                    kind = %key.kind,
                    namespace = %key.object.0,
                    name = %key.object.1,
                );
                map(&shared, &generation, &key).instrument(span).await;
                shared.maps.done(&key);
            }
        }
    }
}

/// A call being recorded or shadowed: its cache reads are remembered, and
/// its guest's clock is stopped at the instant it started, so that the
/// recording and the candidate see exactly what the live guest saw.
struct Observed {
    reads: Option<Arc<RecordingCache>>,
    now: Option<SystemTime>,
}

impl Observed {
    fn start(generation: &Generation) -> Self {
        if !generation.observe.any() {
            return Self {
                reads: None,
                now: None,
            };
        }
        Self {
            reads: Some(Arc::new(RecordingCache::new(
                Arc::clone(&generation.cache) as SharedCache
            ))),
            now: Some(SystemTime::now()),
        }
    }

    /// Whether the call is recorded or shadowed.
    fn is_active(&self) -> bool {
        self.reads.is_some()
    }

    /// The cache the live call reads.
    fn cache(&self, generation: &Generation) -> SharedCache {
        match &self.reads {
            Some(reads) => Arc::clone(reads) as SharedCache,
            None => Arc::clone(&generation.cache) as SharedCache,
        }
    }

    /// Hands the finished call to the recording and the shadow.
    fn finish(
        self,
        shared: &Shared,
        generation: &Generation,
        object: &Arc<StoredObject>,
        reconcile: Option<(Change, u32)>,
        result: serde_json::Value,
    ) {
        let (Some(reads), Some(at)) = (self.reads, self.now) else {
            return;
        };
        let mut reads = Some(reads.take());
        let observe = &generation.observe;
        if let Some(recorder) = &observe.record {
            recorder.record(Pending {
                at,
                digest: generation.guest.digest().to_owned(),
                call: if reconcile.is_some() {
                    CallKind::Reconcile
                } else {
                    CallKind::Map
                },
                object: Arc::clone(object),
                change: reconcile.map(|(change, _)| change),
                attempt: reconcile.map(|(_, attempt)| attempt),
                // The shadow needs them too.
                reads: if observe.shadow.is_some() {
                    reads.clone().unwrap_or_default()
                } else {
                    reads.take().unwrap_or_default()
                },
                result: result.clone(),
            });
        }
        if let Some(shadow) = &observe.shadow {
            shadow.ask(
                &shared.slots,
                &shared.flow,
                Question {
                    object: Arc::clone(object),
                    reconcile,
                    reads: reads.unwrap_or_default(),
                    live_cache: Arc::clone(&generation.cache) as SharedCache,
                    at,
                    live_result: result,
                    span: tracing::info_span!(
                        "shadow",
                        digest = %&shadow.guest().digest()[..12]
                    ),
                },
            );
        }
    }
}

/// How long a key of a share still being listed waits before it is tried
/// again.
const SHARE_LISTING_WAIT: Duration = Duration::from_millis(100);

/// What a worker took.
enum Job {
    Reconcile(ObjectKey),
    Map(MapKey),
}

async fn reconcile_key(shared: &Arc<Shared>, generation: &Generation, key: ObjectKey) {
    let span = tracing::info_span!(
        "reconcile",
        guest = %shared.name,
        digest = %&generation.guest.digest()[..12],
        identity = %generation.actor.identity(),
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
    reconcile(shared, generation, &key).instrument(span).await;
    shared
        .in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&key);
    shared.queue.done(&key);
}

/// The latest state of a changed object of a mapped watch: in a store, or
/// its tombstone when it was deleted.
fn latest_mapped(
    shared: &Shared,
    generation: &Generation,
    key: &MapKey,
) -> Option<(Arc<StoredObject>, bool)> {
    let watched = generation.watched.iter().find(|watched| {
        watched.watch.relation == Relation::Mapped
            && watched.watch.api_version == key.api_version
            && watched.watch.kind == key.kind
    })?;
    let stored = watched
        .informers
        .iter()
        .find_map(|informer| informer.store().get(&key.object.0, &key.object.1));
    if let Some(object) = stored {
        return Some((object, false));
    }
    shared
        .map_tombstones
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(key)
        .map(|object| (Arc::clone(object), true))
}

/// Asks the guest which primaries a changed object maps to, and queues
/// them. A failed `map` is counted and recorded like a failed reconcile
/// and retried with the key's backoff, so no primary it would have named
/// is silently skipped.
async fn map(shared: &Arc<Shared>, generation: &Generation, key: &MapKey) {
    let Some((object, from_tombstone)) = latest_mapped(shared, generation, key) else {
        // The version serving now does not map this kind any more.
        shared.maps.forget(key);
        return;
    };
    let guest = generation.guest.clone();
    let observed = Observed::start(generation);
    let cache = observed.cache(generation);
    let json = Arc::clone(&object);
    let deadline = guest.limits().deadline;
    let now = observed.now;
    let projection = guest.projection(&key.api_version, &key.kind).cloned();
    let mapped = shared
        .slots
        .run(&shared.flow, Some(deadline), move || {
            guest.map_at(&json.seen_through(projection.as_ref()), cache, now)
        })
        .await;
    if observed.is_active()
        && let Ok(result) = &mapped
    {
        observed.finish(shared, generation, &object, None, map_result(result));
    }
    let failure = match mapped {
        Ok(Ok(refs)) => {
            let primary = &generation.primary().resource;
            for reference in refs {
                if reference.kind == primary.kind
                    && split_api_version(&reference.api_version).0 == primary.group
                {
                    ControllerStats::bump(&shared.stats.queued);
                    shared.queue.add(routing::primary_key(
                        generation,
                        reference.namespace,
                        reference.name,
                    ));
                }
            }
            shared.maps.forget(key);
            if from_tombstone {
                shared
                    .map_tombstones
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(key);
            }
            return;
        }
        Ok(Err(error)) => {
            shared.stats.guest_error(error.kind());
            tracing::warn!(error.type = error.kind(), %error, "map failed");
            error.to_string()
        }
        Err(error) => {
            ControllerStats::bump(&shared.stats.guest_errors);
            tracing::error!(%error, "map task failed");
            format!("map task failed: {error}")
        }
    };
    ControllerStats::bump(&shared.stats.map_errors);
    shared.record_error(format!("map of {key} failed: {failure}"));
    shared.maps.add_rate_limited(key.clone());
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

/// What a finalizing controller does before calling its guest: `None` when
/// the reconcile ends here, else whether a successful answer must remove
/// the finalizer.
async fn finalize_step(
    shared: &Arc<Shared>,
    generation: &Generation,
    key: &ObjectKey,
    object: &Arc<StoredObject>,
    change: Change,
) -> Option<Option<FinalizerState>> {
    let Some(finalizer) = generation.finalizer.as_deref() else {
        return Some(None);
    };
    let state = FinalizerState::of(object);
    if change == Change::Deleted {
        // Deleted after the guest finalized it: its cleanup is done.
        let finalized = state.uid.as_ref().is_some_and(|uid| {
            shared
                .finalized
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(uid)
        });
        if finalized {
            shared.forget_tombstone(key);
            shared.queue.forget(key);
            return None;
        }
        return Some(None);
    }
    match Step::of(&state, finalizer) {
        Step::Reconcile => Some(None),
        Step::Finalize => Some(Some(state)),
        Step::Skip => {
            shared.queue.forget(key);
            None
        }
        Step::Add => {
            let written =
                write_finalizer(shared, generation, key, object, &state, finalizer, true).await?;
            match written {
                // The write's watch event queues the object again.
                Ok(()) => shared.queue.forget(key),
                Err(error) => {
                    ControllerStats::bump(&shared.stats.action_errors);
                    tracing::warn!(%error, finalizer, "could not add the finalizer");
                    shared.record_error(format!("adding the finalizer {finalizer}: {error}"));
                    shared.queue.add_rate_limited(key.clone());
                }
            }
            None
        }
    }
}

async fn reconcile(shared: &Arc<Shared>, generation: &Generation, key: &ObjectKey) {
    let Some((object, change)) = latest(shared, generation, key) else {
        shared.queue.forget(key);
        return;
    };
    if may_still_read(shared, generation, key).await != Reading::Allowed {
        shared.queue.add_rate_limited(key.clone());
        return;
    }
    let Some(finalizing) = finalize_step(shared, generation, key, &object, change).await else {
        return;
    };
    let started = Instant::now();
    // The fence was open when the key was taken; the steps since may have
    // waited, or the process been paused, past the end of the term. No
    // guest call begins after it (its writes would be refused anyway):
    // checked here, before waiting for a slot, and again on the slot's
    // thread, since the wait for a slot may outlast the term.
    if !shared.fence.allows(&key.0, &key.1) {
        shared.queue.add(key.clone());
        return;
    }
    let attempt = shared.queue.num_requeues(key);
    let guest = generation.guest.clone();
    let observed = Observed::start(generation);
    let cache = observed.cache(generation);
    let json = Arc::clone(&object);
    let deadline = guest.limits().deadline;
    let now = observed.now;
    let primary = &generation.primary().resource;
    let projection = guest
        .projection(&primary.api_version, &primary.kind)
        .cloned();
    let on_slot = Arc::clone(shared);
    let (namespace, name) = (key.0.clone(), key.1.clone());
    let answer = shared
        .slots
        .run(&shared.flow, Some(deadline), move || {
            if !on_slot.fence.allows(&namespace, &name) {
                return None;
            }
            ControllerStats::bump(&on_slot.stats.reconciles);
            // Narrowed once per object version, on a slot's thread.
            let seen = json.seen_through(projection.as_ref());
            Some(guest.reconcile_at(&seen, change, attempt, cache, now))
        })
        .await
        .transpose();
    let Some(answer) = answer else {
        shared.queue.add(key.clone());
        return;
    };
    // Only an observed call's answer is written out as JSON.
    if observed.is_active()
        && let Ok(result) = &answer
    {
        let result = reconcile_result(result);
        observed.finish(shared, generation, &object, Some((change, attempt)), result);
    }
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
            if let Some(state) = finalizing {
                release_after_finalizing(shared, generation, key, &object, &state).await;
                return;
            }
            shared.queue.forget(key);
            if change == Change::Deleted {
                shared.forget_tombstone(key);
            }
            if let Some(delay) = outcome.requeue_after {
                shared.queue.add_after(key.clone(), delay);
            }
        }
        Err(error @ crate::actions::ExecuteError::Fenced { .. }) => {
            // Not a failure: the object is another host's now, or will be
            // this host's again once it works; it stays queued meanwhile.
            tracing::info!(%error, "stopped at the fence");
            shared.queue.add_rate_limited(key.clone());
        }
        Err(error) => {
            ControllerStats::bump(&shared.stats.action_errors);
            if matches!(error, crate::actions::ExecuteError::Denied { .. }) {
                ControllerStats::bump(&shared.stats.denied);
            }
            tracing::warn!(%error, "actions failed");
            shared.record_error(format!("{error:#}"));
            if !error.is_retried() {
                shared.queue.forget(key);
            } else if let Some(delay) = error.retry_after() {
                shared.queue.add_after(key.clone(), delay);
            } else {
                shared.queue.add_rate_limited(key.clone());
            }
        }
    }
}

/// Whether the controller's ServiceAccount may still read its primary
/// object (checked at start for its watches; RBAC may have changed since):
/// the informers read as the host, so without this a ServiceAccount whose
/// Role was taken away would still be handed the objects. A refused or
/// unknown read is tried again with the key's backoff, so a Role given back
/// lets the object through without a change to it (each try is a cached
/// review).
async fn may_still_read(shared: &Arc<Shared>, generation: &Generation, key: &ObjectKey) -> Reading {
    let Some(account) = &generation.actor.service_account else {
        return Reading::Allowed;
    };
    let resource = &generation.primary().resource;
    let (group, _) = crate::cluster::split_api_version(&resource.api_version);
    let namespace = (!key.0.is_empty()).then_some(key.0.as_str());
    let asked = Attributes::new("get", group, &resource.plural, namespace).name(Some(&key.1));
    let (reading, refusal) = match shared
        .executor
        .identities()
        .reviews()
        .allows(account, &asked)
        .await
    {
        Ok(true) => return Reading::Allowed,
        Ok(false) => (
            Reading::Refused,
            format!("ServiceAccount {account} may no longer {asked}; the object is not reconciled"),
        ),
        Err(error) => (
            Reading::Unknown,
            format!("{error}; the object is reconciled once it can be checked"),
        ),
    };
    if reading == Reading::Refused {
        ControllerStats::bump(&shared.stats.denied);
    }
    tracing::warn!(%refusal, "reconcile refused");
    shared.record_error(refusal);
    reading
}

/// Whether a controller's ServiceAccount may read an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Allowed,
    Refused,
    /// The access review failed.
    Unknown,
}

/// Adds (`present`) or removes the finalizer within this host's term:
/// `None`, with the key queued again, when the fence forbids the write
/// before it is sent or before it is answered (no write outlives the term
/// it began in).
async fn write_finalizer(
    shared: &Shared,
    generation: &Generation,
    key: &ObjectKey,
    object: &StoredObject,
    state: &FinalizerState,
    finalizer: &str,
    present: bool,
) -> Option<Result<(), kube::Error>> {
    let written = if shared.fence.allows(&key.0, &key.1) {
        let client = shared.executor.client_for(&generation.actor);
        let write = finalizer::write(
            &client,
            &generation.actor,
            &generation.primary().resource,
            object,
            state,
            finalizer,
            present,
        );
        shared.fence.within(&key.0, &key.1, write).await
    } else {
        None
    };
    if written.is_none() {
        tracing::info!(
            finalizer,
            present,
            "the finalizer's write was stopped at the fence"
        );
        shared.queue.add_rate_limited(key.clone());
    }
    written
}

/// Removes the finalizer once the guest's answer to a deletion succeeded;
/// the object is then deleted, and its `deleted` event not delivered.
async fn release_after_finalizing(
    shared: &Arc<Shared>,
    generation: &Generation,
    key: &ObjectKey,
    object: &Arc<StoredObject>,
    state: &FinalizerState,
) {
    let Some(finalizer) = generation.finalizer.as_deref() else {
        return;
    };
    let Some(released) =
        write_finalizer(shared, generation, key, object, state, finalizer, false).await
    else {
        return;
    };
    match released {
        Ok(()) => {
            if let Some(uid) = &state.uid {
                shared.remember_finalized(uid.clone());
            }
            shared.queue.forget(key);
        }
        Err(error) => {
            // The guest is asked again: its cleanup must be idempotent, as
            // every reconcile must.
            ControllerStats::bump(&shared.stats.action_errors);
            tracing::warn!(%error, finalizer, "could not remove the finalizer");
            shared.record_error(format!("removing the finalizer {finalizer}: {error}"));
            shared.queue.add_rate_limited(key.clone());
        }
    }
}
