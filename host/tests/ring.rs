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

use common::{cache_dir, module};
use hosts::{embedded_cluster, free_port, http_get, wait_for, wait_within};

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
    port: u16,
    log: PathBuf,
}

impl Host {
    fn spawn(identity: &'static str, config: &Path, kubeconfig: &Path, dir: &Path) -> Self {
        let port = free_port();
        let log = dir.join(format!("{identity}.log"));
        let stderr = std::fs::File::create(&log).expect("create the log");
        let child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--ops-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(["--replication", "leader", "--ring", "test"])
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
            port,
            log,
        }
    }

    /// Its `/status`, or `None` while it does not answer.
    async fn status(&self) -> Option<Value> {
        let (code, body) = http_get(self.port, "/status").await?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Its ring status, and the reconciles its controller started.
    async fn ring(&self) -> Option<(Value, u64)> {
        let status = self.status().await?;
        let reconciles = status["controllers"][0]["running"]["reconciles"].as_u64()?;
        Some((status["ring"].clone(), reconciles))
    }

    async fn ready(&self) {
        let what = format!("{} to be ready", self.identity);
        wait_within(&what, Duration::from_secs(60), || async {
            http_get(self.port, "/readyz")
                .await
                .filter(|(code, _)| *code == 200)
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill {signal} {}", self.identity);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of {}'s log:\n{}",
                self.identity,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A Deployment asking `replica_floor` for at least `floor` replicas.
fn deployment(name: &str, floor: u32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"paddock.dev/min-replicas": floor.to_string()}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
    }))
    .expect("a Deployment")
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
    let config = dir.path().join("controllers.yaml");
    std::fs::write(
        &config,
        format!(
            "controllers:
- name: floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
  - {{apiGroups: [\"\"], resources: [events], verbs: [create, patch]}}
",
            module("replica_floor").display()
        ),
    )
    .expect("write the controllers file");
    let client = hosts::client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client, "default");

    let a = Host::spawn("a", &config, &kubeconfig, dir.path());
    let b = Host::spawn("b", &config, &kubeconfig, dir.path());
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

    // kill -9: the standby takes over once the Lease has expired on its
    // clock, and not before.
    leader.signal("-KILL");
    let killed = Instant::now();
    working(&standby, Duration::from_secs(60)).await;
    let fail_over = killed.elapsed();
    let earliest =
        Duration::from_secs(LEASE_SECONDS) - Duration::from_secs_f64(RETRY_PERIOD_SECONDS * 1.2);
    assert!(
        fail_over >= earliest,
        "the standby began {fail_over:?} after the kill, before the Lease could have expired ({earliest:?})"
    );
    eprintln!("fail-over after kill -9: {fail_over:?} (Lease duration {LEASE_SECONDS} s)");
    let lease = leases.get("test").await.expect("the leader Lease");
    let spec = lease.spec.expect("a Lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(standby.identity));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1, "{spec:?}");
    scaled(&deployments, "api", 3).await;
    drop(leader);

    // The killed host comes back as a standby; then the leader stalls past
    // its Lease and the other takes over.
    let returned = Host::spawn(
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
        let exit = stopping.child.wait();
        (stopping, exit)
    });
    let (stopping, exit) = exit.await.expect("join");
    assert!(
        exit.expect("paddock exits").success(),
        "a leader exits cleanly on SIGTERM"
    );
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
