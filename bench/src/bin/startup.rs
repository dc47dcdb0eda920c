//! Start-up: from `paddock run` being started, with the three example
//! controllers of the demo and 10,000 Deployments already in the cluster,
//! to `/readyz` answering 200 (every controller started, every informer
//! listed). Compiled guests come from the compile cache, as on any restart.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets the number
//! of Deployments. Writes `target/bench/startup.json`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use paddock_bench::median;
use paddock_bench::process::{self, binary, free_port, wait_ready, workspace};

const ROUNDS: usize = 3;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("PADDOCK_BENCH_OBJECTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10_000);
    let root = workspace();
    let paddock = binary("paddock")?;
    let controllers = root.join("guest-examples/demo/controllers.yaml");
    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let client = process::client(&kubeconfig).await?;
    let crd: CustomResourceDefinition = serde_json::from_value(paddock::harness::read_object(
        &root.join("guest-examples/app-operator/deploy/crd.yaml"),
    )?)?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .context("creating the App definition")?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..objects)
        .map(|index| {
            let deployments = deployments.clone();
            async move {
                let name = format!("existing-{index:05}");
                let object: Deployment = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": {"app": name},
                                 "annotations": {"paddock.dev/min-replicas": "1"}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
                }))?;
                deployments.create(&PostParams::default(), &object).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;

    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let port = free_port()?;
        let started = Instant::now();
        let mut child = Command::new(&paddock)
            .arg("run")
            .arg("--config")
            .arg(&controllers)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--ops-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(root.join("target/paddock-cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting paddock")?;
        let ready = wait_ready(port, started, Duration::from_secs(120)).await;
        process::stop(&mut child);
        let ready = ready.with_context(|| format!("round {}", round + 1))?;
        eprintln!(
            "round {}: ready after {:.0} ms",
            round + 1,
            ready.as_secs_f64() * 1e3
        );
        samples.push(ready.as_secs_f64());
    }
    let seconds = median(samples);
    println!(
        "start-up: process start to /readyz 200, three example controllers, {objects} existing Deployments (median of {ROUNDS})"
    );
    println!("  {seconds:.2} s");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("startup.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "benchmark": "startup", "objects": objects, "seconds": seconds,
        }))?,
    )?;
    cluster.shutdown().await;
    Ok(())
}
