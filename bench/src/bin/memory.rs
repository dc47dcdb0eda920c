//! Memory per controller: the resident memory of one `paddock run` process
//! with 1, 10 and 100 replica-floor controllers loaded (each its own guest
//! and queue, sharing one Deployment informer), against N separate native
//! kube-runtime controller processes. Every controller has reconciled the
//! one Deployment that exists, then idles.
//!
//! Run with `cargo xtask bench`. Writes `target/bench/memory.json`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use paddock_bench::process::{self, binary, free_port, settled_rss, wait_ready, workspace};

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let root = workspace();
    let guests = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/wasm32-wasip2/release"));
    let module = guests.join("replica_floor.wasm");
    let paddock = binary("paddock")?;
    let native = binary("native-floor")?;
    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let client = process::client(&kubeconfig).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "annotations": {"paddock.dev/min-replicas": "1"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "web", "image": "web"}]}}}
            }))?,
        )
        .await?;

    let mut paddock_rss = Vec::new();
    for count in [1usize, 10, 100] {
        let config = dir.path().join(format!("controllers-{count}.yaml"));
        std::fs::write(&config, paddock_bench::floor_controllers(count, &module))?;
        let port = free_port()?;
        let mut child = Command::new(&paddock)
            .arg("run")
            .arg("--config")
            .arg(&config)
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
        let ready = wait_ready(port, Instant::now(), Duration::from_secs(120)).await;
        let measured = match ready {
            Ok(_) => settled_rss(child.id(), Duration::from_secs(10)).await,
            Err(error) => Err(error),
        };
        process::stop(&mut child);
        let bytes = measured.with_context(|| format!("paddock with {count} controllers"))?;
        eprintln!(
            "paddock, {count:>3} controllers: {:.1} MiB",
            bytes as f64 / MIB
        );
        paddock_rss.push((count, bytes));
    }

    let mut native_rss = Vec::new();
    for count in [1usize, 10] {
        let mut children = Vec::new();
        for _ in 0..count {
            children.push(
                Command::new(&native)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting native-floor")?,
            );
        }
        let mut total = 0;
        let mut failure = None;
        for child in &children {
            match settled_rss(child.id(), Duration::from_secs(10)).await {
                Ok(bytes) => total += bytes,
                Err(error) => failure = Some(error),
            }
        }
        for child in &mut children {
            process::stop(child);
        }
        if let Some(error) = failure {
            return Err(error.context(format!("{count} native controllers")));
        }
        eprintln!(
            "native,  {count:>3} processes:   {:.1} MiB",
            total as f64 / MIB
        );
        native_rss.push((count, total));
    }
    let first = paddock_rss[0].1 as f64;
    let last = paddock_rss[2].1 as f64;
    let per_guest = (last - first) / 99.0 / MIB;
    let native_per_process = native_rss[1].1 as f64 / 10.0 / MIB;
    if per_guest <= 0.0 {
        bail!("paddock's memory did not grow with its controllers: {paddock_rss:?}");
    }
    println!("memory per controller (resident, each controller has reconciled once and idles)");
    println!("{:<32} {:>10}", "", "MiB");
    for (count, bytes) in &paddock_rss {
        println!(
            "{:<32} {:>10.1}",
            format!("paddock, {count} controllers"),
            *bytes as f64 / MIB
        );
    }
    for (count, bytes) in &native_rss {
        println!(
            "{:<32} {:>10.1}",
            format!("native, {count} processes"),
            *bytes as f64 / MIB
        );
    }
    println!("{:<32} {per_guest:>10.2}", "each extra paddock controller");
    println!(
        "{:<32} {native_per_process:>10.2}",
        "each native controller process"
    );
    println!(
        "native / paddock per controller = {:.0}",
        native_per_process / per_guest
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("memory.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "benchmark": "memory",
            "paddockRssBytes": paddock_rss.iter().map(|(count, bytes)| serde_json::json!({"controllers": count, "bytes": bytes})).collect::<Vec<_>>(),
            "nativeRssBytes": native_rss.iter().map(|(count, bytes)| serde_json::json!({"processes": count, "bytes": bytes})).collect::<Vec<_>>(),
            "paddockMiBPerController": per_guest,
            "nativeMiBPerProcess": native_per_process,
        }))?,
    )?;
    cluster.shutdown().await;
    Ok(())
}
