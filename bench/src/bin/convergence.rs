//! End-to-end convergence on the embedded cluster: N annotated Deployments
//! (default 10,000) are created at once under a running replica-floor, and
//! each contender is timed until it has scaled all of them:
//!
//! - `paddock`: the replica-floor guest in Paddock's runtime;
//! - `paddock-sa`: the same, acting as a ServiceAccount bound to `edit`
//!   (impersonated actions, access reviews before each reconcile and
//!   action), beside `paddock` for the cost of identity;
//! - `native`: the same logic as a kube-runtime `Controller`;
//! - `webhook`: that controller asking a local HTTP JSON webhook.
//!
//! Every contender has 4 workers and its own fresh cluster, in the same
//! process; rounds alternate the contenders, each round starting one
//! contender later than the last. Reported: time from the first
//! create to the last scale, reconciles per second, and create-to-scale
//! latency (p50, p99) seen through a watch, each the median over the
//! rounds. The ratios between contenders are paired: each round gives its
//! own ratio, from two runs of that round, under much the same load on
//! the host, and the ratio reported is the median of those (the ratio of
//! the medians is printed beside it). A slow spell on the host moves one
//! round's ratio, not the statistic.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets N,
//! `PADDOCK_BENCH_ROUNDS` the rounds (default 8: each of the four
//! contenders twice in every position), `PADDOCK_BENCH_AUDIT`
//! a directory where each contender's cluster writes its audit log
//! (`<contender>.log`, the last round's), to compare the requests they make,
//! and `PADDOCK_BENCH_CONTENDERS` (`paddock,native`, say) runs only those,
//! to profile one apart. Writes `target/bench/convergence.json` when every
//! contender ran.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use paddock::controller::{ControllerConfig, ControllerStats, Runtime};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::wasm::{EngineOptions, Guest, LoadOptions, WasmEngine};
use paddock_bench::native::{self, Counters, Decider};
use paddock_bench::{median, process, webhook};

/// How long one contender may take to converge.
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Paddock,
    PaddockServiceAccount,
    Native,
    Webhook,
}

impl Contender {
    const ALL: [Self; 4] = [
        Self::Paddock,
        Self::PaddockServiceAccount,
        Self::Native,
        Self::Webhook,
    ];

    /// The contenders `PADDOCK_BENCH_CONTENDERS` names (all by default).
    fn chosen() -> anyhow::Result<Vec<Self>> {
        let Ok(names) = std::env::var("PADDOCK_BENCH_CONTENDERS") else {
            return Ok(Self::ALL.to_vec());
        };
        names
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                Self::ALL
                    .into_iter()
                    .find(|contender| contender.name() == name)
                    .with_context(|| {
                        format!(
                            "PADDOCK_BENCH_CONTENDERS: no contender {name:?}; \
                             name some of paddock, paddock-sa, native, webhook"
                        )
                    })
            })
            .collect()
    }

    fn name(self) -> &'static str {
        match self {
            Self::Paddock => "paddock",
            Self::PaddockServiceAccount => "paddock-sa",
            Self::Native => "native",
            Self::Webhook => "webhook",
        }
    }
}

/// One contender's round.
#[derive(Debug, Clone, Copy)]
struct Sample {
    converged: Duration,
    /// CPU time of the whole process (cluster, controller and the bench's
    /// own client) while it converged.
    cpu_seconds: f64,
    reconciles: u64,
    p50: Duration,
    p99: Duration,
}

fn deployment(name: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "team": "bench"},
                     "annotations": {"paddock.dev/min-replicas": "2"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0.0",
                                        "ports": [{"containerPort": 8080}]}]}}}
    }))?)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

/// A running contender and how to read its reconcile count.
enum Running {
    Paddock(Box<paddock::controller::RunningController>),
    Native {
        task: tokio::task::JoinHandle<()>,
        counters: Arc<Counters>,
        _webhook: Option<tokio::task::JoinHandle<()>>,
    },
}

impl Running {
    fn reconciles(&self) -> u64 {
        match self {
            Self::Paddock(controller) => ControllerStats::get(&controller.stats().reconciles),
            Self::Native { counters, .. } => counters.reconciles.load(Ordering::Relaxed),
        }
    }

    fn stop(self) {
        if let Self::Native { task, .. } = self {
            task.abort();
        }
    }
}

async fn start(
    contender: Contender,
    client: &kube::Client,
    guest: &Guest,
) -> anyhow::Result<Running> {
    let rule =
        |groups: &[&str], resources: &[&str], verbs: &[&str]| Rule::new(groups, resources, verbs);
    Ok(match contender {
        Contender::Paddock | Contender::PaddockServiceAccount => {
            let acting = contender == Contender::PaddockServiceAccount;
            if acting {
                bind_floor_account(client).await?;
            }
            Running::Paddock(Box::new(
                Runtime::new(client.clone())
                    .start(ControllerConfig {
                        guest: guest.clone(),
                        grant: Grant::new(vec![
                            rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
                            rule(&["apps"], &["deployments/scale"], &["patch"]),
                            rule(&[""], &["events"], &["create", "patch"]),
                        ]),
                        namespaces: if acting {
                            vec!["default".to_owned()]
                        } else {
                            Vec::new()
                        },
                        concurrency: 4,
                        queue: QueueConfig::default(),
                        resync: None,
                        tenant: None,
                        service_account: acting
                            .then(|| paddock::identity::ServiceAccount::new("default", "floor")),
                        observe: Default::default(),
                    })
                    .await?,
            ))
        }
        Contender::Native | Contender::Webhook => {
            let (decider, hook) = if contender == Contender::Webhook {
                let (addr, task) = webhook::serve(native::webhook_answer).await?;
                (Decider::Webhook(webhook::Client::new(addr)), Some(task))
            } else {
                (Decider::Native, None)
            };
            let counters = Arc::new(Counters::default());
            Running::Native {
                task: tokio::spawn(native::run(
                    client.clone(),
                    decider,
                    4,
                    Arc::clone(&counters),
                )),
                counters,
                _webhook: hook,
            }
        }
    })
}

/// The ServiceAccount `default/floor`, bound to `edit` in `default`.
async fn bind_floor_account(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "floor"}}))?,
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "floor-edit"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "ServiceAccount", "namespace": "default", "name": "floor"}],
            }))?,
        )
        .await?;
    Ok(())
}

/// Scale times seen by a watch, by name.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_scales(
    deployments: Api<Deployment>,
    from: String,
    seen: Seen,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(stream) = deployments
            .watch(&WatchParams::default().timeout(290), &from)
            .await
        else {
            return;
        };
        let mut stream = stream.boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            if let WatchEvent::Modified(deployment) | WatchEvent::Added(deployment) = event
                && deployment.spec.as_ref().and_then(|spec| spec.replicas) == Some(2)
                && let Some(name) = deployment.metadata.name
                && let Ok(mut seen) = seen.lock()
            {
                seen.entry(name).or_insert_with(Instant::now);
            }
        }
    })
}

async fn wait_for(seen: &Seen, names: &[&str], what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let done = seen
            .lock()
            .map(|seen| {
                names
                    .iter()
                    .filter(|name| seen.contains_key(**name))
                    .count()
            })
            .unwrap_or(0);
        if done == names.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: only {done} of {} scaled within {TIMEOUT:?}",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn round(contender: Contender, objects: usize, guest: &Guest) -> anyhow::Result<Sample> {
    let mut options = devcluster::Options::new();
    if let Some(dir) = std::env::var_os("PADDOCK_BENCH_AUDIT") {
        let log = Path::new(&dir).join(format!("{}.log", contender.name()));
        // One round's requests: an earlier round's log is replaced.
        std::fs::remove_file(&log).ok();
        options = options.audit_log(log);
    }
    let cluster = devcluster::DevCluster::start(options).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let client = paddock::cluster::client(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let seen: Seen = Arc::default();
    let from = deployments
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_else(|| "0".into());
    let watcher = watch_scales(deployments.clone(), from, Arc::clone(&seen));
    let running = start(contender, &client, guest).await?;
    // A probe shows the controller is watching before the burst.
    deployments
        .create(&PostParams::default(), &deployment("probe")?)
        .await?;
    wait_for(&seen, &["probe"], "the probe").await?;
    let before = running.reconciles();

    let names: Vec<String> = (0..objects)
        .map(|index| format!("bench-{index:05}"))
        .collect();
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let cpu_before = process::cpu_seconds("self")?;
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let deployments = deployments.clone();
            let created = Arc::clone(&created);
            async move {
                let object = deployment(&name)?;
                deployments.create(&PostParams::default(), &object).await?;
                if let Ok(mut created) = created.lock() {
                    created.insert(name, Instant::now());
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for(&seen, &refs, contender.name()).await?;
    let converged = started.elapsed();
    let cpu_seconds = process::cpu_seconds("self")? - cpu_before;
    let reconciles = running.reconciles() - before;
    watcher.abort();
    running.stop();

    // Every Deployment really is at its floor on the server.
    let scaled = deployments
        .list(&ListParams::default().labels("team=bench"))
        .await?
        .items
        .iter()
        .filter(|deployment| deployment.metadata.name.as_deref() != Some("probe"))
        .filter(|deployment| deployment.spec.as_ref().and_then(|spec| spec.replicas) == Some(2))
        .count();
    if scaled != objects {
        bail!(
            "{}: the server shows {scaled} of {objects} scaled",
            contender.name()
        );
    }
    let created = created
        .lock()
        .map(|created| created.clone())
        .unwrap_or_default();
    let seen = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = names
        .iter()
        .filter_map(|name| {
            Some(
                seen.get(name)?
                    .saturating_duration_since(*created.get(name)?),
            )
        })
        .collect();
    latencies.sort();
    cluster.shutdown().await;
    Ok(Sample {
        converged,
        cpu_seconds,
        reconciles,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    })
}

fn workspace() -> anyhow::Result<PathBuf> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("the bench crate lives in the workspace")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let objects = env("PADDOCK_BENCH_OBJECTS", 10_000);
    let rounds = env("PADDOCK_BENCH_ROUNDS", 8).max(1);
    let root = workspace()?;
    let guests = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/wasm32-wasip2/release"));
    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(root.join("target/paddock-cache"))),
    )?;
    let guest = engine.load(&guests.join("replica_floor.wasm"), LoadOptions::default())?;

    let contenders = Contender::chosen()?;
    let mut samples: HashMap<&str, Vec<Sample>> = HashMap::new();
    for round_index in 0..rounds {
        // Each round starts one contender later, so that every four rounds
        // each runs once in every position: the first of a round follows
        // the last one's teardown, and no contender always gets that slot.
        let mut order = contenders.clone();
        if !order.is_empty() {
            let len = order.len();
            order.rotate_left(round_index % len);
        }
        for contender in order {
            let sample = round(contender, objects, &guest).await?;
            eprintln!(
                "round {}: {:<8} {:>7.2} s  {:>6.2} CPU s  {:>6} reconciles  p50 {:>8.1} ms  p99 {:>8.1} ms",
                round_index + 1,
                contender.name(),
                sample.converged.as_secs_f64(),
                sample.cpu_seconds,
                sample.reconciles,
                sample.p50.as_secs_f64() * 1e3,
                sample.p99.as_secs_f64() * 1e3
            );
            samples.entry(contender.name()).or_default().push(sample);
        }
    }
    let summary = |name: &str| {
        let samples = &samples[name];
        let seconds = median(samples.iter().map(|s| s.converged.as_secs_f64()).collect());
        let cpu = median(samples.iter().map(|s| s.cpu_seconds).collect());
        let reconciles = median(samples.iter().map(|s| s.reconciles as f64).collect());
        let p50 = median(samples.iter().map(|s| s.p50.as_secs_f64() * 1e3).collect());
        let p99 = median(samples.iter().map(|s| s.p99.as_secs_f64() * 1e3).collect());
        (seconds, cpu, reconciles / seconds, p50, p99)
    };
    println!(
        "convergence: {objects} Deployments created at once under a running replica-floor (4 workers; median of {rounds} alternating rounds)"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>14} {:>12} {:>12}",
        "contender", "seconds", "CPU s", "reconciles/s", "p50 ms", "p99 ms"
    );
    let mut rows = Vec::new();
    for &contender in &contenders {
        let (seconds, cpu, rate, p50, p99) = summary(contender.name());
        println!(
            "{:<10} {seconds:>10.2} {cpu:>10.2} {rate:>14.0} {p50:>12.1} {p99:>12.1}",
            contender.name()
        );
        rows.push(serde_json::json!({
            "contender": contender.name(), "seconds": seconds, "cpuSeconds": cpu,
            "reconcilesPerSecond": rate,
            "p50Ms": p50, "p99Ms": p99,
        }));
    }
    let ratio = |over: Contender, under: Contender| Ratio::of(&samples, over, under);
    if contenders.len() < Contender::ALL.len() {
        if contenders.contains(&Contender::Paddock) && contenders.contains(&Contender::Native) {
            ratio(Contender::Paddock, Contender::Native).print();
        }
        // A partial run is not the benchmark's record.
        return Ok(());
    }
    let over_native = ratio(Contender::Paddock, Contender::Native);
    let webhook = ratio(Contender::Webhook, Contender::Paddock);
    let acting = ratio(Contender::PaddockServiceAccount, Contender::Paddock);
    for ratio in [&over_native, &webhook, &acting] {
        ratio.print();
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("convergence.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "benchmark": "convergence", "objects": objects, "rounds": rounds, "rows": rows,
            "paddockOverNative": over_native.paired, "webhookOverPaddock": webhook.paired,
            "serviceAccountOverPaddock": acting.paired,
            "ratios": [over_native.to_json(), webhook.to_json(), acting.to_json()],
        }))?,
    )?;
    Ok(())
}

/// One contender's time to converge over another's: the median of the
/// rounds' own ratios, with those ratios and the ratio of the medians.
struct Ratio {
    over: Contender,
    under: Contender,
    rounds: Vec<f64>,
    paired: f64,
    of_medians: f64,
}

impl Ratio {
    fn of(samples: &HashMap<&str, Vec<Sample>>, over: Contender, under: Contender) -> Self {
        let seconds = |contender: Contender| -> Vec<f64> {
            samples[contender.name()]
                .iter()
                .map(|sample| sample.converged.as_secs_f64())
                .collect()
        };
        let (above, below) = (seconds(over), seconds(under));
        let rounds: Vec<f64> = above.iter().zip(&below).map(|(a, b)| a / b).collect();
        Self {
            over,
            under,
            paired: median(rounds.clone()),
            of_medians: median(above) / median(below),
            rounds,
        }
    }

    fn print(&self) {
        let rounds: Vec<String> = self.rounds.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{} / {} = {:.2}   (time to converge; median of the rounds' ratios: {}; ratio of the medians {:.2})",
            self.over.name(),
            self.under.name(),
            self.paired,
            rounds.join(", "),
            self.of_medians
        );
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "over": self.over.name(), "under": self.under.name(),
            "pairedMedian": self.paired, "rounds": self.rounds,
            "ofMedians": self.of_medians,
        })
    }
}
