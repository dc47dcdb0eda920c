//! Several hosts, one cluster: the ring of hosts and who of them works.
//!
//! Every host of a ring holds a member Lease (`<ring>-member-<identity>`,
//! labelled `paddock.dev/ring`) that it renews, so each sees the live
//! members. In leader mode one of them also holds the ring's leader Lease
//! (named as the ring) and works; the others are warm standbys: their
//! guests are loaded and their informers synced, only their workers wait
//! at the [`Fence`]. In sharded mode every member works on its share of
//! the keys, spread over the members it sees by rendezvous hashing
//! ([`Shard`]). The argument that no two hosts ever work on one key at
//! once is in `docs/operating.md` ("Several hosts").

mod fence;
pub mod lease;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use fence::{Fence, Shard};
pub use lease::{Attempt, LeaseLock, Member, MemberLease, Roster};

/// How the hosts of a ring share the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One host works; the others stand by, warm.
    Leader,
    /// Every member works on its share of the keys.
    Sharded,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Leader => f.write_str("leader"),
            Self::Sharded => f.write_str("sharded"),
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
    /// Sharded mode: how often its share changed while it worked (a
    /// member joined or left).
    #[serde(default)]
    pub handovers: u64,
    /// Sharded mode: whether it waits, after joining, for every member to
    /// see it before it takes keys.
    #[serde(default)]
    pub joining: bool,
    /// Sharded mode: the primary objects of this host's controllers each
    /// member owns, as this host sees the members.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shares: BTreeMap<String, u64>,
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
    task: Option<JoinHandle<(Option<LeaseLock>, MemberLease)>>,
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

    /// The fence this host's workers obey (and the members it spreads
    /// keys over).
    pub fn fence(&self) -> &Fence {
        &self.fence
    }
}

impl Ring {
    /// Joins the ring: renews this host's member Lease and reads the
    /// members every retry period, and tries for the leader Lease (leader
    /// mode) or works on its share (sharded mode). `fence` opens while this
    /// host may work, on the keys it may work on; `on_work` runs each time
    /// it begins working or its share changes (to queue every object
    /// again: what another host was doing is not in this host's queue).
    pub fn join(
        client: Client,
        config: RingConfig,
        fence: Fence,
        on_work: impl Fn() + Send + Sync + 'static,
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
            handovers: 0,
            joining: false,
            shares: BTreeMap::new(),
            error: None,
        }));
        let (stop, stopped) = watch::channel(false);
        let elector = Elector {
            leader: (config.mode == Mode::Leader).then(|| {
                LeaseLock::new(
                    api.clone(),
                    config.leader_lease(),
                    &config.identity,
                    config.lease_duration,
                )
            }),
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
            on_work: Box::new(on_work),
            active: false,
            joined: None,
            renewed_at: None,
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
        let Ok((leader, member)) = task.await else {
            return;
        };
        if let Some(mut leader) = leader
            && let Err(error) = leader.release().await
        {
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
    /// The leader Lease, in leader mode.
    leader: Option<LeaseLock>,
    member: MemberLease,
    roster: Roster,
    config: RingConfig,
    status: Arc<Mutex<RingStatus>>,
    fence: Fence,
    on_work: Box<dyn Fn() + Send + Sync>,
    /// Whether this host works (its term may have run out since).
    active: bool,
    /// Since when this host's member Lease has been renewed without a
    /// lapse (sharded mode: it takes keys only a Lease duration later).
    joined: Option<Instant>,
    /// When the latest renewal of the member Lease that succeeded was
    /// sent.
    renewed_at: Option<Instant>,
}

impl Elector {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> (Option<LeaseLock>, MemberLease) {
        let mut leader_records = self.leader_records();
        'rounds: loop {
            let started = Instant::now();
            self.round().await;
            // client-go waits the retry period with up to 20% jitter.
            let jitter = self.config.retry_period.mul_f64(0.2 * random_fraction());
            let retry = tokio::time::Instant::now() + self.config.retry_period + jitter;
            loop {
                // A standby tries at once when the leader Lease is seen
                // free, or expires on this host's clock: the watch shows
                // each renewal as it is written, so fail-over takes the
                // Lease's duration after the last renewal, not up to two
                // retry periods more.
                let chance = self
                    .leader
                    .as_ref()
                    .and_then(LeaseLock::next_chance)
                    .filter(|chance| *chance > started)
                    .map(tokio::time::Instant::from_std);
                let wake = chance.map_or(retry, |chance| chance.min(retry));
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => continue 'rounds,
                    record = leader_records.next() => match (record, self.leader.as_mut()) {
                        (Some(record), Some(leader)) => leader.saw(&record),
                        // The watch ended: the retry period alone paces.
                        _ => leader_records = futures::stream::pending().boxed(),
                    },
                    _ = stopped.changed() => break 'rounds,
                }
                if *stopped.borrow() {
                    break 'rounds;
                }
            }
        }
        (self.leader, self.member)
    }

    /// The records of the leader Lease as they are written (leader mode;
    /// never anything in sharded mode). A failed watch starts again after
    /// a backoff; its errors only delay the news, the tries still run.
    fn leader_records(&self) -> futures::stream::BoxStream<'static, Lease> {
        let Some(leader) = &self.leader else {
            return futures::stream::pending().boxed();
        };
        let config = watcher::Config::default().fields(&format!("metadata.name={}", leader.name()));
        watcher::watcher(self.api.clone(), config)
            .default_backoff()
            .filter_map(|event| async move {
                match event {
                    Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                        Some(lease)
                    }
                    Ok(_) => None,
                    Err(error) => {
                        tracing::debug!(%error, "watching the leader Lease");
                        None
                    }
                }
            })
            .boxed()
    }

    /// One try: take or renew the leader Lease (leader mode), renew the
    /// member Lease, read the members, and work on the share they give
    /// this host (sharded mode).
    async fn round(&mut self) {
        let sent = Instant::now();
        if self.active && !self.fence.allows_now() {
            // The term ran out between two rounds: this process was
            // paused, or its renewals failed.
            self.lose("the term ran out before a renewal; stopped working");
        }
        // A request may not outlive the term it would extend.
        let budget = self
            .fence
            .open_until_instant()
            .filter(|_| self.active)
            .map_or(self.config.renew_deadline, |until| {
                until
                    .saturating_duration_since(sent)
                    .max(self.config.retry_period)
            });
        let mut error = None;
        if self.config.mode == Mode::Leader {
            // First: the leader's term hangs on it.
            error = self.lead(sent, budget).await;
        }
        let renewed = match tokio::time::timeout(budget, self.member.renew()).await {
            Ok(Ok(())) => true,
            Ok(Err(failed)) => {
                error.get_or_insert(format!("member Lease: {failed}"));
                false
            }
            Err(_) => {
                error.get_or_insert(format!("member Lease: no answer within {budget:?}"));
                false
            }
        };
        if renewed {
            // Another member drops this one once it has seen no renewal for
            // a Lease duration. After a gap that long (this process was
            // paused, or its requests failed) it may have been dropped: in
            // sharded mode it joins again from the start, whether it worked
            // (its term ran out before the gap did, so it stopped already)
            // or was still waiting to.
            let lapsed = self
                .renewed_at
                .is_some_and(|last| last.elapsed() >= self.config.lease_duration);
            if lapsed && self.active && self.config.mode == Mode::Sharded {
                self.lose("the member Lease lapsed; stopped working");
            }
            if lapsed || self.joined.is_none() {
                self.joined = Some(Instant::now());
            }
            self.renewed_at = Some(sent);
        }
        let listed =
            tokio::time::timeout(budget, self.roster.refresh(&self.api, &self.config.ring)).await;
        let members = match listed {
            Ok(Ok(members)) => Some(members),
            Ok(Err(failed)) => {
                error.get_or_insert(format!("listing the members: {failed}"));
                None
            }
            Err(_) => {
                error.get_or_insert(format!("listing the members: no answer within {budget:?}"));
                None
            }
        };
        if self.config.mode == Mode::Sharded {
            self.share(sent, members.as_deref().filter(|_| renewed));
        }
        if let Some(error) = &error {
            tracing::warn!(ring = %self.config.ring, %error, "a Lease request failed");
        }
        let leader = self
            .leader
            .as_ref()
            .and_then(LeaseLock::holder)
            .map(str::to_owned);
        let joining = self.config.mode == Mode::Sharded && !self.active;
        self.set(|status| {
            if let Some(members) = members {
                status.members = members;
            }
            status.leader = leader;
            status.joining = joining;
            status.error = error;
        });
    }

    /// Leader mode: take or renew the leader Lease; the error, if the
    /// request failed.
    async fn lead(&mut self, sent: Instant, budget: Duration) -> Option<String> {
        let leader = self.leader.as_mut()?;
        match tokio::time::timeout(budget, leader.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Held { acquired })) => {
                let until = sent + self.config.renew_deadline;
                if acquired || !self.active {
                    self.begin("took the leader Lease; working", until);
                } else {
                    self.fence.open_until(until);
                }
                None
            }
            Ok(Ok(Attempt::HeldBy(_) | Attempt::Conflict)) => {
                if self.active {
                    self.lose("another host holds the leader Lease; stopped working");
                }
                self.fence.close();
                None
            }
            Ok(Err(failed)) => Some(format!("leader Lease: {failed}")),
            Err(_) => Some(format!("leader Lease: no answer within {budget:?}")),
        }
    }

    /// Sharded mode: with the members just read (`None` when the renewal
    /// or the list failed), work on this host's share until the renew
    /// deadline. A host that joins (or rejoins after a lapse) waits a
    /// Lease duration first: by then every other member works from a list
    /// that holds it, and has stopped on the keys that moved to it.
    fn share(&mut self, sent: Instant, members: Option<&[Member]>) {
        let Some(members) = members else {
            return;
        };
        let shard = Shard::new(
            &self.config.identity,
            members.iter().map(|member| member.identity.clone()),
        );
        if !self.active {
            // The share is known before it is worked on: the informers
            // that hold only this host's share follow it meanwhile, so
            // that they hold it when the fence opens.
            self.fence.set_shard(Some(shard));
            let waited = self
                .joined
                .map_or(Duration::ZERO, |joined| joined.elapsed());
            if waited < self.config.lease_duration {
                return;
            }
            self.begin(
                "joined the ring; working on this host's share",
                sent + self.config.renew_deadline,
            );
            return;
        }
        let changed = self
            .fence
            .shard()
            .is_none_or(|current| !current.members().eq(shard.members()));
        self.fence.set_shard(Some(shard));
        self.fence.open_until(sent + self.config.renew_deadline);
        if changed {
            tracing::info!(ring = %self.config.ring, members = members.len(), "the members changed; working on the new share");
            self.set(|status| status.handovers += 1);
            (self.on_work)();
        }
    }

    /// This host begins working until `until`: count it, say so, open the
    /// fence and queue every object again. It says so before the fence
    /// opens, so that no reconcile is logged before the line that says
    /// this host works (a worker waiting at the fence starts at once).
    fn begin(&mut self, message: &str, until: Instant) {
        self.active = true;
        self.set(|status| status.acquired += 1);
        tracing::info!(ring = %self.config.ring, identity = %self.config.identity, "{message}");
        self.fence.open_until(until);
        (self.on_work)();
    }

    /// This host stops working without having given its Lease up.
    fn lose(&mut self, message: &str) {
        self.fence.close();
        self.active = false;
        self.joined = None;
        tracing::warn!(ring = %self.config.ring, identity = %self.config.identity, "{message}");
        self.set(|status| status.lost += 1);
    }

    fn set(&self, change: impl FnOnce(&mut RingStatus)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// The share a host would have among the ring's members as their Leases
/// stand now (itself included): what the informers that hold only this
/// host's share start from, before it joins. `None` when the Leases cannot
/// be listed (the informers then hold every object until it joins).
pub async fn first_shard(client: Client, config: &RingConfig) -> Option<Shard> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    match Roster::default().refresh(&api, &config.ring).await {
        Ok(members) => Some(Shard::new(
            &config.identity,
            members.into_iter().map(|member| member.identity),
        )),
        Err(error) => {
            tracing::warn!(ring = %config.ring, %error, "cannot list the ring's members; holding every object until this host joins");
            None
        }
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
