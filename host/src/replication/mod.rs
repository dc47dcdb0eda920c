//! Several hosts, one cluster: the ring of hosts and who of them works.
//!
//! Every host of a ring holds a member Lease (`<ring>-member-<identity>`,
//! labelled `paddock.dev/ring`) that it renews, so each sees the live
//! members. In leader mode one of them also holds the ring's leader Lease
//! (named as the ring) and works; the others are warm standbys: their
//! guests are loaded and their informers synced, only their workers wait
//! at the [`Fence`]. The argument that no two hosts ever work at once is in
//! `docs/operating.md` ("Several hosts").

mod fence;
pub mod lease;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use fence::Fence;
pub use lease::{Attempt, LeaseLock, Member, MemberLease, Roster};

/// How the hosts of a ring share the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One host works; the others stand by, warm.
    Leader,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Leader => f.write_str("leader"),
        }
    }
}

/// One host's place in a ring.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// The ring's name: the leader Lease's name and the member label.
    pub ring: String,
    /// This host's identity, unique in the ring.
    pub identity: String,
    /// The namespace of the ring's Leases.
    pub namespace: String,
    /// How the work is shared.
    pub mode: Mode,
    /// How long a Lease lasts without renewal (client-go: 15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it stops working
    /// (client-go: 10 s). Shorter than the Lease's duration: the
    /// difference is the margin for requests in flight and clock rates.
    pub renew_deadline: Duration,
    /// How often a host tries to take or renew (client-go: 2 s).
    pub retry_period: Duration,
}

/// A ring configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingConfigError {
    /// The timings cannot keep two hosts apart.
    #[error("{0}")]
    Timings(String),
    /// The ring's name cannot name a Lease.
    #[error(
        "--ring {0:?} cannot name a Lease: use lowercase letters, digits and '-' (at most 40 characters)"
    )]
    Name(String),
    /// An empty identity.
    #[error("--identity must not be empty")]
    Identity,
}

impl RingConfig {
    /// client-go's leader-election defaults.
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    /// client-go's default renew deadline.
    pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
    /// client-go's default retry period.
    pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

    /// Checks the timings and names, as client-go does for its own.
    pub fn validate(&self) -> Result<(), RingConfigError> {
        let name_ok = !self.ring.is_empty()
            && self.ring.len() <= 40
            && self
                .ring
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.ring.starts_with('-')
            && !self.ring.ends_with('-');
        if !name_ok {
            return Err(RingConfigError::Name(self.ring.clone()));
        }
        if self.identity.trim().is_empty() {
            return Err(RingConfigError::Identity);
        }
        if self.lease_duration.subsec_nanos() != 0 || self.lease_duration.is_zero() {
            return Err(RingConfigError::Timings(
                "--lease-duration-seconds must be a whole number of seconds, at least 1".into(),
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(RingConfigError::Timings(format!(
                "--renew-deadline-seconds ({:?}) must be shorter than --lease-duration-seconds ({:?}): the holder must stop working before others may take its Lease",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f64(1.2) >= self.renew_deadline {
            return Err(RingConfigError::Timings(format!(
                "--retry-period-seconds ({:?}) must be above zero and, with 20% jitter, shorter than --renew-deadline-seconds ({:?}): the holder needs more than one try to renew",
                self.retry_period, self.renew_deadline
            )));
        }
        Ok(())
    }

    /// The name of the leader Lease.
    pub fn leader_lease(&self) -> &str {
        &self.ring
    }
}

/// The identity a host takes when none is given: its hostname (a pod's
/// name in Kubernetes) and a random suffix, so that two processes on one
/// machine differ.
pub fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_owned())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "paddock".to_owned());
    // std seeds every `RandomState` at random.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{host}_{:08x}", hasher.finish() as u32)
}

/// The namespace a host's Leases live in when none is given: its pod's
/// namespace, else `default`.
pub fn default_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|namespace| namespace.trim().to_owned())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// How a host stands in its ring, for `/status` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingStatus {
    /// The ring.
    pub ring: String,
    /// The namespace of its Leases.
    pub namespace: String,
    /// This host.
    pub identity: String,
    /// How the work is shared.
    pub mode: Mode,
    /// Whether this host works now.
    pub active: bool,
    /// Who holds the leader Lease, as this host saw last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The live members, by identity.
    pub members: Vec<Member>,
    /// How often this host began working (took the leader Lease).
    pub acquired: u64,
    /// How often it stopped working without giving the Lease up (its
    /// renewals failed past the renew deadline, or another host held the
    /// Lease when it tried to renew).
    pub lost: u64,
    /// The latest failed Lease request, if the latest one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A host's membership of a ring: its Leases, renewed by a task, and the
/// fence that lets its workers work.
#[derive(Debug)]
pub struct Ring {
    config: RingConfig,
    status: Arc<Mutex<RingStatus>>,
    fence: Fence,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<(LeaseLock, MemberLease)>>,
}

/// A cheap handle on a ring's status.
#[derive(Debug, Clone)]
pub struct RingHandle {
    status: Arc<Mutex<RingStatus>>,
    fence: Fence,
}

impl RingHandle {
    /// How the host stands now.
    pub fn status(&self) -> RingStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        status.active = self.fence.allows_now();
        status
    }
}

impl Ring {
    /// Joins the ring: renews this host's member Lease and tries for the
    /// leader Lease every retry period. `fence` opens while this host
    /// holds the leader Lease; `on_acquired` runs each time it takes it
    /// (to queue every object again: the previous holder's work may not
    /// be this host's queue).
    pub fn join(
        client: Client,
        config: RingConfig,
        fence: Fence,
        on_acquired: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let status = Arc::new(Mutex::new(RingStatus {
            ring: config.ring.clone(),
            namespace: config.namespace.clone(),
            identity: config.identity.clone(),
            mode: config.mode,
            active: false,
            leader: None,
            members: Vec::new(),
            acquired: 0,
            lost: 0,
            error: None,
        }));
        let (stop, stopped) = watch::channel(false);
        let elector = Elector {
            leader: LeaseLock::new(
                api.clone(),
                config.leader_lease(),
                &config.identity,
                config.lease_duration,
            ),
            member: MemberLease::new(
                api.clone(),
                &config.ring,
                &config.identity,
                config.lease_duration,
            ),
            roster: Roster::default(),
            api,
            config: config.clone(),
            status: Arc::clone(&status),
            fence: fence.clone(),
            on_acquired: Box::new(on_acquired),
            renewed: None,
        };
        let task = tokio::spawn(elector.run(stopped));
        Self {
            config,
            status,
            fence,
            stop,
            task: Some(task),
        }
    }

    /// A handle on the ring's status.
    pub fn handle(&self) -> RingHandle {
        RingHandle {
            status: Arc::clone(&self.status),
            fence: self.fence.clone(),
        }
    }

    /// Leaves the ring: stops renewing, closes the fence, gives the leader
    /// Lease up if this host holds it and deletes its member Lease, so that
    /// another host takes over at its next try. Call it once this host's
    /// controllers have stopped.
    pub async fn leave(mut self) {
        let _ = self.stop.send(true);
        self.fence.close();
        let Some(task) = self.task.take() else {
            return;
        };
        let Ok((mut leader, member)) = task.await else {
            return;
        };
        if let Err(error) = leader.release().await {
            tracing::warn!(ring = %self.config.ring, %error, "could not give the leader Lease up; it expires by itself");
        }
        if let Err(error) = member.delete().await {
            tracing::warn!(ring = %self.config.ring, %error, "could not delete the member Lease; it expires by itself");
        }
        tracing::info!(ring = %self.config.ring, identity = %self.config.identity, "left the ring");
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.fence.close();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The task that keeps a host's Leases.
struct Elector {
    api: Api<Lease>,
    leader: LeaseLock,
    member: MemberLease,
    roster: Roster,
    config: RingConfig,
    status: Arc<Mutex<RingStatus>>,
    fence: Fence,
    on_acquired: Box<dyn Fn() + Send + Sync>,
    /// When the request of the latest successful renewal was sent.
    renewed: Option<Instant>,
}

impl Elector {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> (LeaseLock, MemberLease) {
        loop {
            self.round().await;
            // client-go waits the retry period with up to 20% jitter.
            let jitter = self.config.retry_period.mul_f64(0.2 * random_fraction());
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period + jitter) => {}
                _ = stopped.changed() => break,
            }
            if *stopped.borrow() {
                break;
            }
        }
        (self.leader, self.member)
    }

    /// One try: renew the member Lease, take or renew the leader Lease,
    /// read the members.
    async fn round(&mut self) {
        let mut error = None;
        let sent = Instant::now();
        // A request may not outlive the term it would extend.
        let budget = match self.renewed {
            Some(renewed) => (renewed + self.config.renew_deadline)
                .saturating_duration_since(sent)
                .max(self.config.retry_period),
            None => self.config.renew_deadline,
        };
        match tokio::time::timeout(budget, self.leader.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Held { acquired })) => {
                self.renewed = Some(sent);
                self.fence.open_until(sent + self.config.renew_deadline);
                if acquired || !self.was_active() {
                    self.set(|status| status.acquired += 1);
                    tracing::info!(ring = %self.config.ring, identity = %self.config.identity, "took the leader Lease; working");
                    (self.on_acquired)();
                }
                self.set(|status| status.active = true);
            }
            Ok(Ok(Attempt::HeldBy(_) | Attempt::Conflict)) => self.stop_working(),
            Ok(Err(failed)) => {
                error = Some(format!("leader Lease: {failed}"));
                self.expire_if_due();
            }
            Err(_) => {
                error = Some(format!("leader Lease: no answer within {budget:?}"));
                self.expire_if_due();
            }
        }
        let leader = self.leader.holder().map(str::to_owned);
        if let Err(failed) = self.member.renew().await {
            error.get_or_insert(format!("member Lease: {failed}"));
        }
        match self.roster.refresh(&self.api, &self.config.ring).await {
            Ok(members) => self.set(|status| status.members = members),
            Err(failed) => {
                error.get_or_insert(format!("listing the members: {failed}"));
            }
        }
        if let Some(error) = &error {
            tracing::warn!(ring = %self.config.ring, %error, "a Lease request failed");
        }
        self.set(|status| {
            status.leader = leader;
            status.error = error;
        });
    }

    fn was_active(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .active
    }

    /// Another host holds the Lease: stop if this host was working.
    fn stop_working(&mut self) {
        self.fence.close();
        self.renewed = None;
        if self.was_active() {
            tracing::warn!(ring = %self.config.ring, "another host holds the leader Lease; stopped working");
            self.set(|status| {
                status.active = false;
                status.lost += 1;
            });
        }
    }

    /// A renewal failed: past the renew deadline, stop working (the fence
    /// has closed by itself already).
    fn expire_if_due(&mut self) {
        if self.was_active() && !self.fence.allows_now() {
            self.fence.close();
            self.renewed = None;
            tracing::warn!(ring = %self.config.ring, deadline = ?self.config.renew_deadline, "could not renew the leader Lease in time; stopped working");
            self.set(|status| {
                status.active = false;
                status.lost += 1;
            });
        }
    }

    fn set(&self, change: impl FnOnce(&mut RingStatus)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A number in [0, 1), different each call.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RingConfig {
        RingConfig {
            ring: "paddock".into(),
            identity: "a".into(),
            namespace: "default".into(),
            mode: Mode::Leader,
            lease_duration: RingConfig::LEASE_DURATION,
            renew_deadline: RingConfig::RENEW_DEADLINE,
            retry_period: RingConfig::RETRY_PERIOD,
        }
    }

    #[test]
    fn client_go_defaults_pass_and_unsafe_timings_are_refused() {
        assert_eq!(config().validate(), Ok(()));
        let mut late = config();
        late.renew_deadline = late.lease_duration;
        let error = late.validate().unwrap_err().to_string();
        assert!(error.contains("--renew-deadline-seconds"), "{error}");
        let mut slow = config();
        slow.retry_period = Duration::from_secs(9);
        assert!(
            slow.validate()
                .unwrap_err()
                .to_string()
                .contains("--retry-period-seconds")
        );
        let mut named = config();
        named.ring = "Paddock_A".into();
        assert!(matches!(named.validate(), Err(RingConfigError::Name(_))));
    }

    #[test]
    fn random_fractions_differ_and_stay_below_one() {
        let draws: Vec<f64> = (0..16).map(|_| random_fraction()).collect();
        assert!(draws.iter().all(|draw| (0.0..1.0).contains(draw)));
        assert!(draws.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
