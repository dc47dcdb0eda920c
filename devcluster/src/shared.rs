//! What the server, the background tasks and the handle share.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::core::Core;
use crate::faults::{Counters, Faults};

/// State shared by the HTTP server, the collector, the simulator and the `DevCluster` handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Store, registry and pending collector work.
    pub core: Mutex<Core>,
    /// Turns credentials (client certificates, the admin token, ServiceAccount tokens) into users.
    pub authn: crate::auth::authn::Authenticator,
    /// Injected faults.
    pub faults: Faults,
    /// Request and watch counters.
    pub counters: Counters,
    /// Bumped to end every open watch.
    pub close_watches: watch::Sender<u64>,
    /// Wakes the collector when delayed work was queued.
    pub gc_wake: Notify,
    /// How often idle watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// Whether the workload simulator writes workload status.
    pub simulator: AtomicBool,
    /// Where every request is recorded, when an audit log was asked for.
    pub audit: Option<crate::audit::AuditLog>,
}

impl Shared {
    /// Ends every open watch now.
    pub(crate) fn close_watches(&self) {
        self.close_watches.send_modify(|v| *v += 1);
    }

    /// Forgets the watch history so resuming from any resourceVersion seen so far gets 410 Expired.
    pub(crate) fn expire_watch_history(&self) {
        self.core.lock().store.expire_history();
    }

    /// Changes how many changes the watch history keeps.
    pub(crate) fn set_watch_history(&self, changes: usize) {
        self.core.lock().store.set_history_cap(changes);
    }

    /// Runs the collector work that is due; wakes the collector task when later work is pending.
    pub(crate) fn collect_garbage(&self, core: &mut Core) {
        if core.gc.is_empty() {
            return;
        }
        if crate::gc::run_due(core, std::time::Instant::now()).is_some() {
            self.gc_wake.notify_one();
        }
    }
}
