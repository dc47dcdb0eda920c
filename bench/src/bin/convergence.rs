//! End-to-end convergence on the embedded cluster. N annotated Deployments
//! exist before replica-floor starts: time from its start until all are
//! scaled, and reconciles per second at saturation. Then 50 more, one at a
//! time on the idle controller: create-to-scale latency (p50, p99, seen
//! through a watch). And bytes per cached object in Paddock's store.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets N (default
//! 2000). Writes `target/bench/convergence.json`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use paddock::controller::{ControllerConfig, ControllerStats, Runtime};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::wasm::{EngineOptions, LoadOptions, WasmEngine};

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Rule {
    Rule::new(groups, resources, verbs)
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

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("PADDOCK_BENCH_OBJECTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .context("the bench crate lives in the workspace")?;
    let guests = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/wasm32-wasip2/release"));

    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?;
    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(root.join("target/paddock-cache"))),
    )?;
    let guest = engine.load(&guests.join("replica_floor.wasm"), LoadOptions::default())?;
    let runtime = Runtime::new(client.clone());

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let deployments = deployments.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let Ok(stream) = deployments
                .watch(&WatchParams::default().timeout(290), "0")
                .await
            else {
                return;
            };
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let WatchEvent::Modified(deployment) = event
                    && deployment.spec.as_ref().and_then(|spec| spec.replicas) == Some(2)
                    && let Some(name) = deployment.metadata.name
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.entry(name).or_insert_with(Instant::now);
                }
            }
        })
    };

    let names: Vec<String> = (0..objects)
        .map(|index| format!("bench-{index:05}"))
        .collect();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let deployments = deployments.clone();
            async move {
                let object = deployment(&name)?;
                deployments.create(&PostParams::default(), &object).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;

    // Saturation: every object exists before the controller starts.
    let started = Instant::now();
    let controller = runtime
        .start(ControllerConfig {
            guest,
            grant: Grant::new(vec![
                rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
                rule(&["apps"], &["deployments/scale"], &["patch"]),
                rule(&[""], &["events"], &["create", "patch"]),
            ]),
            namespaces: Vec::new(),
            concurrency: 4,
            queue: QueueConfig::default(),
            resync: None,
        })
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = seen.lock().map(|seen| seen.len()).unwrap_or(0);
        if done >= objects {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {objects} converged in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let converged = started.elapsed();
    let reconciles = ControllerStats::get(&controller.stats().reconciles);

    // One at a time on an idle controller: the latency a user sees.
    while !controller.is_idle() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut single = Vec::new();
    for index in 0..50 {
        let name = format!("single-{index:03}");
        deployments
            .create(&PostParams::default(), &deployment(&name)?)
            .await?;
        let created_at = Instant::now();
        let deadline = created_at + Duration::from_secs(30);
        loop {
            if let Some(at) = seen.lock().ok().and_then(|seen| seen.get(&name).copied()) {
                single.push(at.saturating_duration_since(created_at));
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} did not converge in 30 s");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    single.sort();
    watcher.abort();

    let informer = runtime
        .informers()
        .find("apps/v1", "Deployment", None)
        .into_iter()
        .next()
        .context("the Deployment informer")?;
    let stored = informer.store().len().max(1);
    let store_bytes = informer.store().heap_bytes();
    let json_bytes: usize = informer
        .store()
        .list(None, None)
        .iter()
        .map(|object| object.json.len())
        .sum();

    // The JSON the API server serves for these objects (with managedFields).
    let mut served_bytes = 0;
    let sample = names.iter().take(100).collect::<Vec<_>>();
    for name in &sample {
        let request = kube::core::Request::new("/apis/apps/v1/namespaces/default/deployments")
            .get(name, &Default::default())?;
        served_bytes += client.request_text(request).await?.len();
    }
    let served_per_object = served_bytes / sample.len().max(1);

    let rate = reconciles as f64 / converged.as_secs_f64();
    println!(
        "convergence of {objects} Deployments on the embedded cluster (replica-floor, concurrency 4)"
    );
    println!(
        "  start to all scaled       {:>10.2} s  (all {objects} existed before the controller started)",
        converged.as_secs_f64()
    );
    println!("  reconciles at saturation  {reconciles:>10}  ({rate:.0} per second)");
    println!(
        "  create → scale visible    p50 {:>7.1} ms   p99 {:>7.1} ms   (one at a time, 50 objects)",
        percentile(&single, 0.5).as_secs_f64() * 1e3,
        percentile(&single, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  cached bytes per object   {:>10}  (served JSON {served_per_object} bytes; stored JSON without managedFields {} bytes)",
        store_bytes / stored,
        json_bytes / stored
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let report = serde_json::json!({
        "benchmark": "convergence",
        "objects": objects,
        "convergedSeconds": converged.as_secs_f64(),
        "reconciles": reconciles,
        "reconcilesPerSecond": rate,
        "singleLatencyP50Ms": percentile(&single, 0.5).as_secs_f64() * 1e3,
        "singleLatencyP99Ms": percentile(&single, 0.99).as_secs_f64() * 1e3,
        "storeBytesPerObject": store_bytes / stored,
        "storedJsonBytesPerObject": json_bytes / stored,
        "servedJsonBytesPerObject": served_per_object,
    });
    std::fs::write(
        out.join("convergence.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    drop(controller);
    cluster.shutdown().await;
    Ok(())
}
