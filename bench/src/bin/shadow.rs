//! What a shadow run and a recording cost the live controller. N annotated
//! Deployments (default 2,000) are created at once under replica-floor on
//! a fresh embedded cluster, in each of these modes, rounds alternating:
//!
//! - `alone`: the live controller only;
//! - `record`: every call recorded (`--record`);
//! - `agreeing`: a shadow candidate that answers alike (replica-floor
//!   itself);
//! - `trapping`: a candidate that traps on every call (floor-next told
//!   to);
//! - `spinning`: a candidate that runs to its 250 ms deadline on every call.
//!
//! Reported per mode (median of the rounds): the time from the first create
//! to the controller idle with every Deployment scaled, the live
//! reconcile's mean latency (guest call and actions, as the latency
//! histogram measures it), and what the candidate compared and skipped;
//! each as a ratio to `alone`.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets N,
//! `PADDOCK_BENCH_ROUNDS` the rounds (default 2). Writes
//! `target/bench/shadow.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use paddock::controller::{ControllerConfig, ControllerStats, Observe, Runtime, Shadow};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::record::{RecordOptions, Recordings, Redaction};
use paddock::wasm::{EngineOptions, Guest, LoadOptions, WasmEngine};
use paddock_bench::median;

/// How long a candidate may go on answering after the live controller
/// converged before its counts are read.
const SETTLE: Duration = Duration::from_secs(10);

/// How long one round may take to converge.
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Alone,
    Record,
    Agreeing,
    Trapping,
    Spinning,
}

impl Mode {
    const ALL: [Self; 5] = [
        Self::Alone,
        Self::Record,
        Self::Agreeing,
        Self::Trapping,
        Self::Spinning,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Alone => "alone",
            Self::Record => "record",
            Self::Agreeing => "agreeing",
            Self::Trapping => "trapping",
            Self::Spinning => "spinning",
        }
    }

    /// What the Deployments tell floor-next to do.
    fn failure(self) -> Option<&'static str> {
        match self {
            Self::Trapping => Some("trap"),
            Self::Spinning => Some("spin"),
            _ => None,
        }
    }
}

/// One round of one mode.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    converged: f64,
    latency_micros: f64,
    reconciles: u64,
    compared: u64,
    skipped: u64,
}

fn deployment(name: &str, mode: Mode) -> anyhow::Result<Deployment> {
    let mut annotations = serde_json::json!({"paddock.dev/min-replicas": "2"});
    if let Some(failure) = mode.failure() {
        annotations["floor-next.paddock.dev/fail"] = failure.into();
    }
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0.0"}]}}}
    }))?)
}

struct Guests {
    live: Guest,
    next: Guest,
}

fn observe(mode: Mode, guests: &Guests, dir: &std::path::Path) -> anyhow::Result<Observe> {
    let shadow = |guest: &Guest| Some(Arc::new(Shadow::new(guest.clone()).with_concurrency(4)));
    Ok(match mode {
        Mode::Alone => Observe::default(),
        Mode::Record => {
            let recordings = Recordings::new(RecordOptions {
                dir: dir.to_owned(),
                max_bytes: 1024 * 1024 * 1024,
                redaction: Redaction::default(),
                controllers: Vec::new(),
            });
            Observe {
                record: Some(recordings.recorder("floor")?),
                shadow: None,
            }
        }
        Mode::Agreeing => Observe {
            record: None,
            shadow: shadow(&guests.live),
        },
        Mode::Trapping | Mode::Spinning => Observe {
            record: None,
            shadow: shadow(&guests.next),
        },
    })
}

async fn round(mode: Mode, objects: usize, guests: &Guests) -> anyhow::Result<Sample> {
    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let client = paddock::cluster::client(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?;
    let dir = tempfile::tempdir()?;
    let observe = observe(mode, guests, dir.path())?;
    let shadow = observe.shadow.clone();
    let controller = Runtime::new(client.clone())
        .start(ControllerConfig {
            guest: guests.live.clone(),
            grant: Grant::new(vec![
                Rule::new(&["apps"], &["deployments"], &["get", "list", "watch"]),
                Rule::new(&["apps"], &["deployments/scale"], &["patch"]),
                Rule::new(&[""], &["events"], &["create", "patch"]),
            ]),
            namespaces: Vec::new(),
            concurrency: 4,
            queue: QueueConfig::default(),
            resync: None,
            tenant: None,
            service_account: None,
            observe,
        })
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|index| {
            let deployments = deployments.clone();
            async move {
                let object = deployment(&format!("bench-{index:05}"), mode)?;
                deployments.create(&PostParams::default(), &object).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    loop {
        if started.elapsed() > TIMEOUT {
            bail!("{}: not converged within {TIMEOUT:?}", mode.name());
        }
        if controller.is_idle() {
            let scaled = deployments
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) == Some(2))
                .count();
            if scaled == objects {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let converged = started.elapsed().as_secs_f64();
    // What the candidate compared by then, and by a few seconds later.
    if let Some(shadow) = &shadow {
        shadow.settled(SETTLE).await;
    }
    let stats = controller.stats();
    let calls: u64 = stats
        .latency_buckets
        .iter()
        .map(|bucket| bucket.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let sum = ControllerStats::get(&stats.latency_sum_micros);
    let report = shadow.map(|shadow| shadow.report()).unwrap_or_default();
    let sample = Sample {
        converged,
        #[allow(clippy::cast_precision_loss)]
        latency_micros: sum as f64 / calls.max(1) as f64,
        reconciles: ControllerStats::get(&stats.reconciles),
        compared: report.compared,
        skipped: report.skipped,
    };
    drop(controller);
    cluster.shutdown().await;
    Ok(sample)
}

fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("PADDOCK_BENCH_OBJECTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000);
    let rounds: usize = std::env::var("PADDOCK_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2);
    let root = paddock_bench::process::workspace();
    let guests_dir = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/wasm32-wasip2/release"));
    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(root.join("target/paddock-cache"))),
    )?;
    let guests = Guests {
        live: engine.load(
            &guests_dir.join("replica_floor.wasm"),
            LoadOptions::default().name("floor"),
        )?,
        next: engine.load(
            &guests_dir.join("floor_next.wasm"),
            LoadOptions::default().name("floor.shadow"),
        )?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut samples: Vec<(Mode, Vec<Sample>)> =
        Mode::ALL.iter().map(|mode| (*mode, Vec::new())).collect();
    for _ in 0..rounds {
        for (mode, taken) in &mut samples {
            let sample = runtime.block_on(round(*mode, objects, &guests))?;
            eprintln!("{}: {sample:?}", mode.name());
            taken.push(sample);
        }
    }
    let medians: Vec<(Mode, Sample)> = samples
        .iter()
        .map(|(mode, taken)| {
            let of = |field: fn(&Sample) -> f64| median(taken.iter().map(field).collect());
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let sample = Sample {
                converged: of(|s| s.converged),
                latency_micros: of(|s| s.latency_micros),
                reconciles: of(|s| s.reconciles as f64) as u64,
                compared: of(|s| s.compared as f64) as u64,
                skipped: of(|s| s.skipped as f64) as u64,
            };
            (*mode, sample)
        })
        .collect();
    let alone = medians[0].1;
    println!(
        "shadow runs and recording, {objects} Deployments, median of {rounds} rounds:\n\
         mode       converged s  ratio  live latency us  ratio  reconciles  compared  skipped"
    );
    let mut rows = Vec::new();
    for (mode, sample) in &medians {
        let converged_ratio = sample.converged / alone.converged;
        let latency_ratio = sample.latency_micros / alone.latency_micros;
        println!(
            "{:<10} {:>11.2} {:>6.2} {:>16.0} {:>6.2} {:>11} {:>9} {:>8}",
            mode.name(),
            sample.converged,
            converged_ratio,
            sample.latency_micros,
            latency_ratio,
            sample.reconciles,
            sample.compared,
            sample.skipped
        );
        rows.push(serde_json::json!({
            "mode": mode.name(),
            "convergedSeconds": sample.converged,
            "convergedRatio": converged_ratio,
            "liveLatencyMicros": sample.latency_micros,
            "liveLatencyRatio": latency_ratio,
            "reconciles": sample.reconciles,
            "compared": sample.compared,
            "skipped": sample.skipped,
        }));
    }
    let out = paddock_bench::process::workspace().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("shadow.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "objects": objects,
            "rounds": rounds,
            "rows": rows,
        }))?,
    )?;
    Ok(())
}
