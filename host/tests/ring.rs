//! Several `paddock run` processes on one cluster, sharing the work
//! through Leases: hand-over on `kill -9`, on a stall past the Lease
//! and on SIGTERM, and never two hosts working at once.

mod common;
mod hosts;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::Value;

use common::cache_dir;
use hosts::{
    bound_port, controllers_file, deployment, embedded_cluster, http_get, wait_for, wait_within,
};

/// The ring's timings in these tests: short, and with client-go's
/// proportions (a renew deadline under the Lease's duration, several
/// tries within it).
const LEASE_SECONDS: u64 = 4;
const RENEW_DEADLINE_SECONDS: &str = "3";
const RETRY_PERIOD_SECONDS: f64 = 0.5;

/// A `paddock run` process in the ring `test`; killed when dropped, its
/// log printed when the test failed.
struct Host {
    identity: &'static str,
    child: Child,
    /// Its operations port, once it has bound one (it picks a free one).
    port: Option<u16>,
    log: PathBuf,
}

impl Host {
    fn spawn(identity: &'static str, config: &Path, kubeconfig: &Path, dir: &Path) -> Self {
        Self::spawn_in("leader", identity, config, kubeconfig, dir)
    }

    /// A host in `mode`; each process logs to its own file.
    fn spawn_in(
        mode: &str,
        identity: &'static str,
        config: &Path,
        kubeconfig: &Path,
        dir: &Path,
    ) -> Self {
        let log = (0..)
            .map(|n| dir.join(format!("{identity}-{n}.log")))
            .find(|log| !log.exists())
            .expect("a free log name");
        let stderr = std::fs::File::create(&log).expect("create the log");
        let child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--ops-addr", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(["--replication", mode, "--ring", "test"])
            .args(["--identity", identity])
            .args(["--lease-duration-seconds", &LEASE_SECONDS.to_string()])
            .args(["--renew-deadline-seconds", RENEW_DEADLINE_SECONDS])
            .args(["--retry-period-seconds", &RETRY_PERIOD_SECONDS.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("paddock starts");
        Self {
            identity,
            child,
            port: None,
            log,
        }
    }

    /// Its operations port; known once [`Host::ready`] returned.
    fn port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| panic!("{} is not known to be ready", self.identity))
    }

    /// Its `/status`, or `None` while it does not answer.
    async fn status(&self) -> Option<Value> {
        let (code, body) = http_get(self.port(), "/status").await?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// The Deployments its informer of this host's share holds, from its
    /// metrics; `None` while it does not answer or has no such informer.
    async fn held(&self) -> Option<u64> {
        let (code, metrics) = http_get(self.port(), "/metrics").await?;
        (code == 200).then_some(())?;
        metrics
            .lines()
            .find(|line| {
                line.starts_with("paddock_informer_objects{")
                    && line.contains("resource=\"deployments\"")
                    && line.contains("slice=\"share\"")
            })?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }

    /// Its ring status, and the reconciles its controller started.
    async fn ring(&self) -> Option<(Value, u64)> {
        let status = self.status().await?;
        let reconciles = status["controllers"][0]["running"]["reconciles"].as_u64()?;
        Some((status["ring"].clone(), reconciles))
    }

    /// Waits until it logs the port it bound and its `/readyz` answers
    /// 200; fails at once if it exited, and otherwise says what it last
    /// answered.
    async fn ready(&mut self) {
        let limit = Duration::from_secs(90);
        let deadline = Instant::now() + limit;
        let mut answer = None;
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait on paddock") {
                panic!("{} exited while starting: {exit}", self.identity);
            }
            if self.port.is_none() {
                self.port = bound_port(&self.log);
            }
            if let Some(port) = self.port {
                match http_get(port, "/readyz").await {
                    Some((200, _)) => return,
                    other => answer = other.or(answer),
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {} to be ready ({limit:?}); /readyz last answered {answer:?}",
                self.identity
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} {}", self.identity);
    }
}

/// When a `paddock run` log recorded each line holding `message`.
fn logged_at(log: &Path, message: &str) -> Vec<jiff::Timestamp> {
    std::fs::read_to_string(log)
        .expect("read a host's log")
        .lines()
        .filter(|line| line.contains(message))
        .filter_map(|line| line.split_once(' ')?.0.parse().ok())
        .collect()
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = match std::fs::read(&self.log) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) => format!("({} cannot be read: {error})", self.log.display()),
            };
            // Its start-up, ring and error lines, then its last reconciles
            // (thousands of them would hide the rest).
            let last = |reconciles: bool, count: usize| {
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|line| line.contains(": reconciled: ") == reconciles)
                    .collect();
                lines[lines.len().saturating_sub(count)..].join("\n")
            };
            eprintln!(
                "--- {}'s log, without reconciles:\n{}\n--- its last reconciles:\n{}",
                self.identity,
                last(false, 40),
                last(true, 5)
            );
        }
    }
}

async fn scaled(deployments: &Api<Deployment>, name: &str, floor: u32) {
    deployments
        .create(&PostParams::default(), &deployment(name, floor))
        .await
        .expect("create the Deployment");
    wait_for(&format!("{name} to be scaled to {floor}"), || async {
        let replicas = deployments.get(name).await.ok()?.spec?.replicas;
        (replicas == Some(i32::try_from(floor).ok()?)).then_some(())
    })
    .await;
}

/// Waits until each of `members` holds, of the Deployments, exactly the
/// objects of its share, and between them every object: memory shrinks
/// with the share, and no object is held by no one.
async fn holding_only_their_shares(members: &[Host], who: &str) {
    let what = format!("{who} to hold only its share of the Deployments");
    let held = wait_for(&what, || async {
        let mut held = Vec::new();
        for host in members {
            let (ring, _) = host.ring().await?;
            let share = ring["shares"][host.identity].as_u64()?;
            let objects = host.held().await?;
            (objects == share).then_some(())?;
            held.push(objects);
        }
        (held.iter().sum::<u64>() == OBJECTS as u64).then_some(held)
    })
    .await;
    let most = held.iter().max().copied().unwrap_or_default();
    assert!(
        most < OBJECTS as u64 * 3 / 4,
        "no member holds nearly all: {held:?}"
    );
}

/// Waits until `host` works, and returns its reconcile count then.
async fn working(host: &Host, limit: Duration) -> u64 {
    let what = format!("{} to take the leader Lease and reconcile", host.identity);
    wait_within(&what, limit, || async {
        let (ring, reconciles) = host.ring().await?;
        (ring["active"] == true && reconciles > 0).then_some(reconciles)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_leader_mode_one_host_works_and_another_takes_over_when_it_dies_stalls_or_stops() {
    let (cluster, dir, kubeconfig) = embedded_cluster("kubeconfig").await;
    let config = controllers_file(dir.path());
    let client = hosts::client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client, "default");

    let mut a = Host::spawn("a", &config, &kubeconfig, dir.path());
    let mut b = Host::spawn("b", &config, &kubeconfig, dir.path());
    a.ready().await;
    b.ready().await;
    // Both see both members and agree on one leader.
    let leader = wait_for("both hosts to agree on one leader", || async {
        let (ring_a, _) = a.ring().await?;
        let (ring_b, _) = b.ring().await?;
        let leader = ring_a["leader"].as_str()?.to_owned();
        let members = |ring: &Value| ring["members"].as_array().map(Vec::len);
        let one_active = (ring_a["active"] == true) != (ring_b["active"] == true);
        (ring_b["leader"] == leader.as_str()
            && members(&ring_a) == Some(2)
            && members(&ring_b) == Some(2)
            && one_active)
            .then_some(leader)
    })
    .await;
    let (leader, standby) = if leader == "a" { (a, b) } else { (b, a) };

    scaled(&deployments, "web", 4).await;
    let (_, standby_reconciles) = standby.ring().await.expect("the standby answers");
    assert_eq!(standby_reconciles, 0, "a standby reconciles nothing");
    let status = standby.status().await.expect("the standby answers");
    assert_eq!(
        status["controllers"][0]["phase"], "running",
        "a standby is warm: its guest loaded and its informers synced: {status}"
    );
    // `paddock status` says so, with the leader and the members.
    let printed = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["status", "--addr", &format!("127.0.0.1:{}", standby.port())])
        .output()
        .expect("paddock status runs");
    let table = String::from_utf8_lossy(&printed.stdout);
    let expected = format!(
        "ring test (leader mode, Leases in default): this host {} is standing by; leader {}",
        standby.identity, leader.identity
    );
    assert!(table.contains(&expected), "{expected:?} in:\n{table}");
    assert!(table.contains("members (2): a, b"), "{table}");

    // kill -9: the standby takes over once the Lease has expired on its
    // clock (a Lease duration after the last renewal it saw), and not
    // before.
    leader.signal("-KILL");
    let killed = Instant::now();
    let renewed = leases
        .get("test")
        .await
        .expect("the leader Lease")
        .spec
        .and_then(|spec| spec.renew_time)
        .expect("a renewed Lease")
        .0;
    working(&standby, Duration::from_secs(60)).await;
    let fail_over = killed.elapsed();
    let took = logged_at(&standby.log, "took the leader Lease; working")
        .into_iter()
        .max()
        .expect("the standby logs taking the Lease");
    let after_renewal = took.duration_since(renewed);
    assert!(
        after_renewal >= jiff::SignedDuration::from_secs(LEASE_SECONDS.try_into().expect("small")),
        "the standby began {after_renewal:?} after the last renewal, before the Lease expired"
    );
    eprintln!(
        "fail-over after kill -9: {fail_over:?}; {after_renewal:?} after the last renewal (Lease duration {LEASE_SECONDS} s)"
    );
    let lease = leases.get("test").await.expect("the leader Lease");
    let spec = lease.spec.expect("a Lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(standby.identity));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1, "{spec:?}");
    scaled(&deployments, "api", 3).await;
    drop(leader);

    // The killed host comes back as a standby; then the leader stalls past
    // its Lease and the other takes over.
    let mut returned = Host::spawn(
        if standby.identity == "a" { "b" } else { "a" },
        &config,
        &kubeconfig,
        dir.path(),
    );
    returned.ready().await;
    wait_for("the returned host to stand by under the leader", || async {
        let (ring, reconciles) = returned.ring().await?;
        (ring["leader"] == standby.identity && ring["active"] == false && reconciles == 0)
            .then_some(())
    })
    .await;
    let (_, stalled_reconciles) = standby.ring().await.expect("the leader answers");
    standby.signal("-STOP");
    working(&returned, Duration::from_secs(60)).await;
    standby.signal("-CONT");
    // A change after the stalled host resumed: the new leader acts on it,
    // the stalled one does nothing, having lost its Lease.
    scaled(&deployments, "db", 2).await;
    let (ring, reconciles) = wait_for("the stalled host to answer again", || async {
        let (ring, reconciles) = standby.ring().await?;
        (ring["leader"] == returned.identity).then_some((ring, reconciles))
    })
    .await;
    assert_eq!(
        reconciles, stalled_reconciles,
        "a host that stalled past its Lease reconciles nothing after it resumes: {ring}"
    );
    assert_eq!(ring["active"], false, "{ring}");
    assert!(ring["lost"].as_u64() >= Some(1), "{ring}");

    // SIGTERM: the leader finishes, gives its Lease up and leaves the ring;
    // the other takes over without waiting for the Lease to expire.
    let stopping = returned;
    stopping.signal("-TERM");
    let stopped_at = Instant::now();
    let mut stopping = stopping;
    let exit = tokio::task::spawn_blocking(move || {
        let exit = common::exits(&mut stopping.child, "the signalled host");
        (stopping, exit)
    });
    let (stopping, exit) = exit.await.expect("join");
    assert!(exit.success(), "a leader exits cleanly on SIGTERM");
    working(&standby, Duration::from_secs(60)).await;
    let hand_over = stopped_at.elapsed();
    eprintln!("hand-over after SIGTERM: {hand_over:?}");
    assert!(
        hand_over < fail_over,
        "a Lease given up is taken at the next try ({hand_over:?}), not after it expires ({fail_over:?})"
    );
    let left = leases
        .get_opt(&format!("test-member-{}", stopping.identity))
        .await
        .expect("read the member Lease");
    assert!(left.is_none(), "a host that stops deletes its member Lease");
    drop(stopping);
    drop(standby);
    cluster.shutdown().await;
}

/// The objects of the sharded test, and the floor of object `i` in round
/// `round`.
const OBJECTS: usize = 3000;

fn floor_of(i: usize, round: usize) -> u32 {
    u32::try_from(2 + i % 3 + round).expect("a small floor")
}

/// Sets every object's floor for `round` (creating them in round 0), 16
/// requests at a time.
async fn set_floors(deployments: &Api<Deployment>, round: usize) {
    use futures::StreamExt;
    futures::stream::iter(0..OBJECTS)
        .map(|i| async move {
            let name = format!("d{i}");
            let floor = floor_of(i, round);
            if round == 0 {
                deployments
                    .create(&PostParams::default(), &deployment(&name, floor))
                    .await
                    .map(drop)
            } else {
                let patch = serde_json::json!({"metadata": {"annotations": {"paddock.dev/min-replicas": floor.to_string()}}});
                deployments
                    .patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(16)
        .for_each(|written| async move {
            written.expect("write a Deployment");
        })
        .await;
}

/// Waits until every object has at least its floor for `round`.
async fn converged(deployments: &Api<Deployment>, round: usize, what: &str) {
    wait_within(what, Duration::from_secs(180), || async {
        let list = deployments.list(&Default::default()).await.ok()?;
        let behind = list
            .items
            .iter()
            .filter(|deployment| {
                let name = deployment.metadata.name.as_deref().unwrap_or_default();
                let i: usize = name.trim_start_matches('d').parse().unwrap_or(usize::MAX);
                let replicas = deployment.spec.as_ref().and_then(|spec| spec.replicas);
                i < OBJECTS && replicas < Some(i32::try_from(floor_of(i, round)).unwrap_or(0))
            })
            .count();
        (list.items.len() == OBJECTS && behind == 0).then_some(())
    })
    .await;
}

/// One reconcile a host logged: which object, which process, when it
/// started and ended (µs since the epoch).
#[derive(Debug, Clone)]
struct Logged {
    object: String,
    log: PathBuf,
    start: i64,
    end: i64,
    /// The line it was read from.
    line: String,
}

/// The reconciles each log records, from the line every successful
/// reconcile ends with (its time, its span's object, its `elapsed_ms`).
fn reconciles_in(logs: &[PathBuf]) -> Vec<Logged> {
    let mut found = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log).expect("read a log");
        for line in text.lines().filter(|line| line.contains(": reconciled: ")) {
            let Some((time, _)) = line.split_once(' ') else {
                continue;
            };
            let field = |name: &str| {
                line.split_once(&format!("{name}=")).map(|(_, rest)| {
                    rest.split([' ', '}'])
                        .next()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned()
                })
            };
            let (Ok(end), Some(name), Some(elapsed)) = (
                time.parse::<jiff::Timestamp>(),
                field("name"),
                field("elapsed_ms").and_then(|ms| ms.parse::<f64>().ok()),
            ) else {
                panic!("an unreadable reconcile line in {}: {line}", log.display());
            };
            let end = end.as_microsecond();
            found.push(Logged {
                object: name,
                log: log.clone(),
                start: end - (elapsed * 1000.0).ceil() as i64,
                end,
                line: line.to_owned(),
            });
        }
    }
    found
}

/// The logs of every process that ran, as `(host, log)`.
fn logs_in(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the test folder")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sharded_mode_every_object_converges_once_and_no_two_hosts_reconcile_one_at_once() {
    let (cluster, dir, kubeconfig) = embedded_cluster("kubeconfig").await;
    let config = controllers_file(dir.path());
    let client = hosts::client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    set_floors(&deployments, 0).await;

    let spawn = |identity| Host::spawn_in("sharded", identity, &config, &kubeconfig, dir.path());
    let mut members = vec![spawn("a"), spawn("b"), spawn("c")];
    for host in &mut members {
        host.ready().await;
    }
    converged(
        &deployments,
        0,
        "3,000 objects to converge on three members",
    )
    .await;
    // Every member sees the three, and they split the objects between
    // them: each key has one owner, and the shares add up.
    let shares = wait_for("three members, each working on its share", || async {
        let mut shares = Vec::new();
        for host in &members {
            let (ring, _) = host.ring().await?;
            let share = ring["shares"][host.identity].as_u64()?;
            (ring["active"] == true && ring["members"].as_array()?.len() == 3).then_some(())?;
            shares.push(share);
        }
        Some(shares)
    })
    .await;
    assert_eq!(shares.iter().sum::<u64>(), OBJECTS as u64, "{shares:?}");
    for share in &shares {
        assert!((700..1300).contains(share), "an even spread: {shares:?}");
    }
    for host in &members {
        let (_, reconciles) = host.ring().await.expect("a member answers");
        assert!(reconciles > 0, "{} reconciled its share", host.identity);
    }
    holding_only_their_shares(&members, "each of three members").await;

    // kill -9 of a member while it works on new floors: the others take
    // its share once its Lease has expired, and everything converges.
    let (_, before) = members[2].ring().await.expect("c answers");
    let writing = tokio::spawn({
        let deployments = deployments.clone();
        async move { set_floors(&deployments, 1).await }
    });
    wait_for("c to work on the new floors", || async {
        let (_, now) = members[2].ring().await?;
        (now > before).then_some(())
    })
    .await;
    members.pop().expect("c").signal("-KILL");
    writing.await.expect("the floors are written");
    converged(
        &deployments,
        1,
        "every object to converge after kill -9 of a member",
    )
    .await;
    wait_for("the two survivors to see each other only", || async {
        for host in &members {
            let (ring, _) = host.ring().await?;
            (ring["members"].as_array()?.len() == 2 && ring["handovers"].as_u64()? >= 1)
                .then_some(())?;
        }
        Some(())
    })
    .await;
    // The killed member's objects are held again, by their new owners.
    holding_only_their_shares(&members, "each of the two survivors").await;

    // The killed member returns; then a rolling restart of all three while
    // the floors change again.
    members.push(spawn("c"));
    members[2].ready().await;
    set_floors(&deployments, 2).await;
    for slot in 0..3 {
        let mut stopping = members.remove(slot);
        let identity = stopping.identity;
        stopping.signal("-TERM");
        let (stopping, exit) = tokio::task::spawn_blocking(move || {
            let exit = common::exits(&mut stopping.child, "the signalled host");
            (stopping, exit)
        })
        .await
        .expect("join");
        assert!(exit.success(), "{identity} exits cleanly on SIGTERM");
        drop(stopping);
        members.insert(slot, spawn(identity));
        members[slot].ready().await;
    }
    converged(
        &deployments,
        2,
        "every object to converge through a rolling restart",
    )
    .await;

    // Two members stalled past their Lease: `a`, which works, and a new
    // member `d`, stopped while it still waits to join. After they resume,
    // neither does anything until it has joined again and waited a Lease
    // duration for every member to see it.
    wait_for("the three members to work", || async {
        for host in &members {
            (host.ring().await?.0["active"] == true).then_some(())?;
        }
        Some(())
    })
    .await;
    members.push(spawn("d"));
    members[3].ready().await;
    let ring = wait_for("d to wait to join", || async {
        let (ring, _) = members[3].ring().await?;
        (ring["joining"] == true).then_some(ring)
    })
    .await;
    assert_eq!(ring["active"], false, "d still waits: {ring}");
    wait_for("the others to see d", || async {
        for host in &members[1..3] {
            (host.ring().await?.0["members"].as_array()?.len() == 4).then_some(())?;
        }
        Some(())
    })
    .await;
    let stalled = [&members[0], &members[3]];
    for host in stalled {
        host.signal("-STOP");
    }
    let stopped_at = jiff::Timestamp::now().as_microsecond();
    wait_for("the others to see the stalled members gone", || async {
        for host in &members[1..3] {
            let (ring, _) = host.ring().await?;
            (ring["members"].as_array()?.len() == 2).then_some(())?;
        }
        Some(())
    })
    .await;
    set_floors(&deployments, 3).await;
    let resumed_at = jiff::Timestamp::now().as_microsecond();
    for host in stalled {
        host.signal("-CONT");
    }
    converged(
        &deployments,
        3,
        "every object to converge while two members stalled",
    )
    .await;
    for (host, lost) in [(stalled[0], 1), (stalled[1], 0)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let ring = loop {
            let ring = host.ring().await.map(|(ring, _)| ring);
            if let Some(ring) = ring.as_ref().filter(|ring| {
                ring["active"] == true && ring["lost"].as_u64().is_some_and(|n| n >= lost)
            }) {
                break ring.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {} to join again (20 s); its ring: {ring:?}",
                host.identity
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let rejoined_at = logged_at(&host.log, "joined the ring; working")
            .into_iter()
            .map(|time| time.as_microsecond())
            .filter(|time| *time >= resumed_at)
            .min()
            .unwrap_or_else(|| panic!("{} logs its joining: {ring}", host.identity));
        let waited = Duration::from_micros(u64::try_from(rejoined_at - resumed_at).unwrap_or(0));
        assert!(
            waited >= Duration::from_secs(LEASE_SECONDS),
            "{} began working {waited:?} after it resumed, less than a Lease duration",
            host.identity
        );
        let early: Vec<Logged> = reconciles_in(std::slice::from_ref(&host.log))
            .into_iter()
            .filter(|logged| logged.start >= resumed_at && logged.start < rejoined_at)
            .collect();
        assert!(
            early.is_empty(),
            "{} worked before it joined again: {early:?}",
            host.identity
        );
    }

    // Across every process that ran: no object was reconciled by two at
    // overlapping times.
    let stalled_logs = [stalled[0].log.clone(), stalled[1].log.clone()];
    drop(members);
    // A reconcile the stop froze ends, for this check, when the process
    // stopped: each of its writes passed the fence before the stop (after
    // it, the fence is closed until the member rejoins, checked above).
    let reconciles: Vec<Logged> = reconciles_in(&logs_in(dir.path()))
        .into_iter()
        .map(|mut logged| {
            if stalled_logs.contains(&logged.log)
                && logged.start < stopped_at
                && logged.end > resumed_at
            {
                logged.end = stopped_at;
            }
            logged
        })
        .collect();
    assert!(
        reconciles.len() >= 4 * OBJECTS,
        "{} reconciles logged",
        reconciles.len()
    );
    let mut by_object: std::collections::BTreeMap<&str, Vec<&Logged>> = Default::default();
    for logged in &reconciles {
        by_object.entry(&logged.object).or_default().push(logged);
    }
    for (object, logged) in by_object {
        for (i, first) in logged.iter().enumerate() {
            for second in &logged[i + 1..] {
                let apart = first.end <= second.start || second.end <= first.start;
                assert!(
                    first.log == second.log || apart,
                    "{object} was reconciled at once by two hosts: {first:?} and {second:?}, as\n{}: {}\n{}: {}",
                    first.log.display(),
                    first.line,
                    second.log.display(),
                    second.line
                );
            }
        }
    }
    cluster.shutdown().await;
}
