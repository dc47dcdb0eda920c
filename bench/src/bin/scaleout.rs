//! Several hosts on one cluster. On this 2-core machine more members bring
//! no speed-up (they share the cores), so what is reported is how the work
//! and the memory spread:
//!
//! - scale-out: N Deployments (default 10,000) created at once under 1, 2
//!   and 3 `paddock run --replication sharded` members (a fresh embedded
//!   cluster each, every member working before the first create): the time
//!   to scale them all, and per member its share of the objects, the
//!   reconciles it ran, the Deployments its informers hold (objects and
//!   bytes), its CPU time and its resident memory; the 3-member run again
//!   with `--hold-all-objects`, to compare holding only the share with
//!   holding everything;
//! - hand-over: in each 3-member run, SIGTERM to one member, then the time
//!   until the two others see only each other, and until they hold the
//!   leaver's objects between them (a member holding only its share lists
//!   again for them);
//! - fail-over: two hosts in leader mode over 1,000 Deployments with
//!   client-go's timings (15/10/2 s); the time from `kill -9` of the leader
//!   to the standby's first reconcile, against the target of the Lease's
//!   duration plus one second;
//! - membership at rest: a host alone, in leader mode and in sharded mode,
//!   idle over 1,000 Deployments for 20 s: CPU time and the Lease requests
//!   the embedded cluster's audit log records.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets N. Writes
//! `target/bench/scaleout.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use paddock_bench::process::{self, binary, free_port, settled_rss, wait_ready, workspace};
use serde_json::{Value, json};

const MIB: f64 = 1024.0 * 1024.0;

/// One `paddock run` process.
struct Member {
    child: Child,
    port: u16,
}

impl Drop for Member {
    fn drop(&mut self) {
        process::stop(&mut self.child);
    }
}

impl Member {
    fn start(
        replication: &str,
        identity: &str,
        config: &Path,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(binary("paddock")?)
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--ops-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(workspace().join("target/paddock-cache"))
            .args(["--replication", replication, "--identity", identity])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting paddock")?;
        Ok(Self { child, port })
    }

    async fn status(&self) -> Option<Value> {
        let body = process::http_body(self.port, "/status").await?;
        serde_json::from_str(&body).ok()
    }

    /// (working, reconciles, members seen, its share).
    async fn ring(&self) -> Option<(bool, u64, usize, u64)> {
        let status = self.status().await?;
        let ring = &status["ring"];
        let identity = ring["identity"].as_str()?;
        Some((
            ring["active"] == true,
            status["controllers"][0]["running"]["reconciles"].as_u64()?,
            ring["members"].as_array()?.len(),
            ring["shares"][identity].as_u64().unwrap_or(0),
        ))
    }

    /// The Deployments its informers hold: objects and heap bytes, from
    /// its metrics.
    async fn held(&self) -> Option<(u64, u64)> {
        let metrics = process::http_body(self.port, "/metrics").await?;
        let sum = |metric: &str| -> u64 {
            metrics
                .lines()
                .filter(|line| {
                    line.starts_with(&format!("{metric}{{"))
                        && line.contains("resource=\"deployments\"")
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        };
        Some((
            sum("paddock_informer_objects"),
            sum("paddock_informer_store_bytes"),
        ))
    }

    /// User and system CPU time so far, in seconds.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        process::cpu_seconds(self.child.id())
    }
}

/// Waits for `check`, polling every 50 ms, at most `limit`.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        if started.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

fn deployment(i: usize) -> anyhow::Result<Deployment> {
    let name = format!("d{i}");
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"paddock.dev/min-replicas": "2"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
    }))?)
}

/// Creates `count` Deployments, 16 requests at a time.
async fn create(deployments: &Api<Deployment>, count: usize) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|i| async move {
            deployments
                .create(&PostParams::default(), &deployment(i)?)
                .await?;
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Whether every Deployment has been scaled to 2.
async fn all_scaled(deployments: &Api<Deployment>, count: usize) -> bool {
    let Ok(list) = deployments.list(&Default::default()).await else {
        return false;
    };
    list.items.len() == count
        && list
            .items
            .iter()
            .all(|deployment| deployment.spec.as_ref().and_then(|spec| spec.replicas) == Some(2))
}

/// A fresh embedded cluster (with an audit log when asked), its
/// kubeconfig, and a client of its default namespace's Deployments.
async fn cluster(
    dir: &Path,
    name: &str,
    audit: Option<&Path>,
) -> anyhow::Result<(devcluster::DevCluster, PathBuf, Api<Deployment>)> {
    let mut options = devcluster::Options::new();
    if let Some(audit) = audit {
        options = options.audit_log(audit);
    }
    let cluster = devcluster::DevCluster::start(options).await?;
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    cluster.write_kubeconfig(&kubeconfig)?;
    let client = process::client(&kubeconfig).await?;
    Ok((cluster, kubeconfig, Api::namespaced(client, "default")))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("PADDOCK_BENCH_OBJECTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000);
    let (root, guests) = paddock_bench::workspace_dirs();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("controllers.yaml");
    std::fs::write(
        &config,
        paddock_bench::floor_controllers(1, &guests.join("replica_floor.wasm")),
    )?;
    let patience = Duration::from_secs(300);

    // Scale-out, and hand-over with three members.
    let mut scale_out = Vec::new();
    for (count, hold_all) in [(1usize, false), (2, false), (3, false), (3, true)] {
        let extra: &[&str] = if hold_all {
            &["--hold-all-objects"]
        } else {
            &[]
        };
        let label = if hold_all { "hold-all" } else { "share" };
        let (cluster, kubeconfig, deployments) =
            cluster(dir.path(), &format!("scale-{count}-{label}"), None).await?;
        let members: Vec<Member> = (0..count)
            .map(|i| Member::start("sharded", &format!("m{i}"), &config, &kubeconfig, extra))
            .collect::<anyhow::Result<_>>()?;
        for member in &members {
            wait_ready(member.port, Instant::now(), Duration::from_secs(120)).await?;
        }
        until("every member working", patience, || async {
            for member in &members {
                match member.ring().await {
                    Some((true, _, seen, _)) if seen == count => {}
                    _ => return false,
                }
            }
            true
        })
        .await?;
        let cpu_before = members
            .iter()
            .map(Member::cpu_seconds)
            .collect::<anyhow::Result<Vec<f64>>>()?;
        let started = Instant::now();
        create(&deployments, objects).await?;
        until("every Deployment scaled", patience, || {
            all_scaled(&deployments, objects)
        })
        .await?;
        let converged = started.elapsed();
        let mut per_member = Vec::new();
        for (member, cpu_before) in members.iter().zip(&cpu_before) {
            let (_, reconciles, _, share) = member.ring().await.context("a member's /status")?;
            let (held, store_bytes) = member.held().await.context("a member's /metrics")?;
            let rss = settled_rss(member.child.id(), Duration::from_secs(10)).await?;
            per_member.push(json!({
                "share": share,
                "reconciles": reconciles,
                "heldObjects": held,
                "storeBytes": store_bytes,
                "cpuSeconds": member.cpu_seconds()? - cpu_before,
                "rssBytes": rss,
            }));
        }
        eprintln!(
            "{count} member(s), {label}: {:.2} s; {}",
            converged.as_secs_f64(),
            serde_json::to_string(&per_member)?
        );
        let mut row = json!({
            "members": count,
            "holdAll": hold_all,
            "seconds": converged.as_secs_f64(),
            "perMember": per_member,
        });
        if count == 3 {
            let mut members = members;
            let leaver = members.pop().context("a third member")?;
            let stopped = Instant::now();
            let status = Command::new("kill")
                .args(["-TERM", &leaver.child.id().to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "kill -TERM failed");
            until(
                "the two others to see only each other",
                patience,
                || async {
                    for member in &members {
                        match member.ring().await {
                            Some((true, _, 2, _)) => {}
                            _ => return false,
                        }
                    }
                    true
                },
            )
            .await?;
            let seen = stopped.elapsed();
            until("the two others to hold every object", patience, || async {
                let mut held = Vec::new();
                for member in &members {
                    match member.held().await {
                        Some((objects, _)) => held.push(objects),
                        None => return false,
                    }
                }
                if hold_all {
                    held.iter().all(|held| *held == objects as u64)
                } else {
                    held.iter().sum::<u64>() == objects as u64
                }
            })
            .await?;
            let every_object = stopped.elapsed();
            drop(leaver);
            eprintln!(
                "hand-over, {label}: members seen after {:.2} s, every object held after {:.2} s",
                seen.as_secs_f64(),
                every_object.as_secs_f64()
            );
            row["handOver"] = json!({
                "membersSeenSeconds": seen.as_secs_f64(),
                "everyObjectHeldSeconds": every_object.as_secs_f64(),
            });
            drop(members);
        } else {
            drop(members);
        }
        scale_out.push(row);
        cluster.shutdown().await;
    }

    // Fail-over in leader mode, client-go's timings.
    let (cluster_handle, kubeconfig, deployments) = cluster(dir.path(), "failover", None).await?;
    create(&deployments, 1000).await?;
    let hosts = [
        Member::start("leader", "first", &config, &kubeconfig, &[])?,
        Member::start("leader", "second", &config, &kubeconfig, &[])?,
    ];
    for host in &hosts {
        wait_ready(host.port, Instant::now(), Duration::from_secs(120)).await?;
    }
    until("the first leader to converge", patience, || {
        all_scaled(&deployments, 1000)
    })
    .await?;
    let mut leader = None;
    for (index, host) in hosts.iter().enumerate() {
        if host.ring().await.is_some_and(|(working, ..)| working) {
            leader = Some(index);
        }
    }
    let leader = leader.context("a leader")?;
    let [first, second] = hosts;
    let (mut killed, standby) = if leader == 0 {
        (first, second)
    } else {
        (second, first)
    };
    killed.child.kill()?;
    let fail_over = until("the standby's first reconcile", patience, || async {
        standby
            .ring()
            .await
            .is_some_and(|(working, reconciles, ..)| working && reconciles > 0)
    })
    .await?;
    let _ = killed.child.wait();
    eprintln!("fail-over after kill -9: {:.2} s", fail_over.as_secs_f64());
    drop(standby);
    cluster_handle.shutdown().await;

    // Membership at rest.
    let mut at_rest = Vec::new();
    for replication in ["none", "leader", "sharded"] {
        let audit = dir.path().join(format!("audit-{replication}.jsonl"));
        let (cluster_handle, kubeconfig, deployments) =
            cluster(dir.path(), &format!("rest-{replication}"), Some(&audit)).await?;
        create(&deployments, 1000).await?;
        let host = Member::start(replication, "alone", &config, &kubeconfig, &[])?;
        wait_ready(host.port, Instant::now(), Duration::from_secs(120)).await?;
        until("the host to converge", patience, || {
            all_scaled(&deployments, 1000)
        })
        .await?;
        // Quiet: no reconcile for a second.
        let mut last = None;
        loop {
            let now = host
                .status()
                .await
                .and_then(|status| status["controllers"][0]["running"]["reconciles"].as_u64());
            if now.is_some() && now == last {
                break;
            }
            last = now;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let leases_before = lease_requests(&audit)?;
        let cpu_before = host.cpu_seconds()?;
        let window = Duration::from_secs(20);
        tokio::time::sleep(window).await;
        let cpu = host.cpu_seconds()? - cpu_before;
        let leases = lease_requests(&audit)? - leases_before;
        eprintln!(
            "{replication}: {:.1} ms CPU per second, {:.2} Lease requests per second",
            cpu * 1000.0 / window.as_secs_f64(),
            leases as f64 / window.as_secs_f64()
        );
        at_rest.push(json!({
            "replication": replication,
            "cpuMsPerSecond": cpu * 1000.0 / window.as_secs_f64(),
            "leaseRequestsPerSecond": leases as f64 / window.as_secs_f64(),
        }));
        drop(host);
        cluster_handle.shutdown().await;
    }

    println!("scale-out over {objects} Deployments (sharded mode; 2 cores: shares, not speed-up)");
    println!(
        "{:<10} {:<9} {:>8} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}",
        "members",
        "holds",
        "seconds",
        "share",
        "reconciles",
        "objects held",
        "store MiB",
        "CPU s",
        "resident MiB"
    );
    for row in &scale_out {
        let column = |field: &str, scale: f64, decimals: usize| -> String {
            row["perMember"]
                .as_array()
                .map(|members| {
                    members
                        .iter()
                        .map(|member| {
                            format!(
                                "{:.decimals$}",
                                member[field].as_f64().unwrap_or(0.0) / scale
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_default()
        };
        println!(
            "{:<10} {:<9} {:>8.2} {:>22} {:>22} {:>22} {:>22} {:>22} {:>22}",
            row["members"],
            if row["holdAll"] == true {
                "all"
            } else {
                "share"
            },
            row["seconds"].as_f64().unwrap_or(0.0),
            column("share", 1.0, 0),
            column("reconciles", 1.0, 0),
            column("heldObjects", 1.0, 0),
            column("storeBytes", MIB, 1),
            column("cpuSeconds", 1.0, 1),
            column("rssBytes", MIB, 0),
        );
    }
    for row in &scale_out {
        if let Some(hand_over) = row.get("handOver") {
            println!(
                "hand-over, 3 members holding {}: SIGTERM to one; the others see only each other after {:.2} s and hold its objects after {:.2} s",
                if row["holdAll"] == true {
                    "all"
                } else {
                    "their share"
                },
                hand_over["membersSeenSeconds"].as_f64().unwrap_or(0.0),
                hand_over["everyObjectHeldSeconds"].as_f64().unwrap_or(0.0),
            );
        }
    }
    println!(
        "fail-over (leader mode, Lease 15 s): {:.2} s from kill -9 to the standby's first reconcile (target 16 s)",
        fail_over.as_secs_f64()
    );
    for row in &at_rest {
        println!(
            "at rest, --replication {:<8} {:>7.2} ms CPU / s {:>6.2} Lease requests / s",
            row["replication"].as_str().unwrap_or_default(),
            row["cpuMsPerSecond"].as_f64().unwrap_or(0.0),
            row["leaseRequestsPerSecond"].as_f64().unwrap_or(0.0),
        );
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("scaleout.json"),
        serde_json::to_string_pretty(&json!({
            "benchmark": "scaleout",
            "objects": objects,
            "scaleOut": scale_out,
            "failOverSeconds": fail_over.as_secs_f64(),
            "leaseDurationSeconds": 15,
            "atRest": at_rest,
        }))?,
    )?;
    Ok(())
}

/// The Lease requests an audit log holds so far.
fn lease_requests(audit: &Path) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(audit).with_context(|| format!("reading {}", audit.display()))?;
    Ok(text
        .lines()
        .filter(|line| line.contains("\"resource\":\"leases\""))
        .count())
}
