//! Hot-reload latency: from a module file being written under a running
//! `paddock` supervisor to the new version serving (its digest reported by
//! the status board), on the embedded cluster.
//!
//! Cached: the file alternates between two builds already compiled (the
//! compile cache holds both). Uncached: each write is a build never seen
//! before (the same component with a unique custom section appended), so
//! it is compiled from scratch.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_SWAPS` sets the swaps per
//! kind (default 9). Writes `target/bench/reload.json`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use paddock::controller::Runtime;
use paddock::reload::{Supervisor, files};
use paddock::wasm::compile_cache::digest;
use paddock::wasm::{EngineOptions, WasmEngine};

/// How long one swap may take before the run fails.
const SWAP_TIMEOUT: Duration = Duration::from_secs(120);

/// `bytes` with a custom section named `paddock-bench` holding `tag`
/// appended: the same component, a new digest.
fn retagged(bytes: &[u8], tag: u64) -> Vec<u8> {
    let name = b"paddock-bench";
    let payload = tag.to_le_bytes();
    let mut section = vec![u8::try_from(name.len()).unwrap_or(0)];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(u8::try_from(section.len()).unwrap_or(0)); // LEB128, < 128
    out.extend_from_slice(&section);
    out
}

/// Writes `bytes` over the module and waits until they serve.
async fn swap(supervisor: &Supervisor, module: &Path, bytes: &[u8]) -> anyhow::Result<Duration> {
    let wanted = digest(bytes);
    let started = Instant::now();
    std::fs::write(module, bytes).with_context(|| format!("writing {}", module.display()))?;
    loop {
        let status = supervisor.board().get("stamp");
        if status.as_ref().and_then(|status| status.digest.as_deref()) == Some(wanted.as_str()) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > SWAP_TIMEOUT {
            bail!("the new version did not serve within {SWAP_TIMEOUT:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn stats(samples: &[Duration]) -> (f64, f64, f64) {
    let mut millis: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    millis.sort_by(f64::total_cmp);
    (
        millis[millis.len() / 2],
        millis[0],
        millis[millis.len() - 1],
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let swaps: usize = std::env::var("PADDOCK_BENCH_SWAPS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(9);
    let (root, guests) = paddock_bench::workspace_dirs();
    let v1 = std::fs::read(guests.join("stamp_v1.wasm"))
        .context("stamp-v1 is built by `cargo xtask build-guests`")?;
    let v2 = std::fs::read(guests.join("stamp_v2.wasm"))
        .context("stamp-v2 is built by `cargo xtask build-guests`")?;

    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = paddock::cluster::client(config)?;
    let dir = tempfile::tempdir()?;
    let engine =
        WasmEngine::new(EngineOptions::default().cache_dir(Some(dir.path().join("cache"))))?;
    let module = dir.path().join("stamp.wasm");
    std::fs::write(&module, &v1)?;
    let controllers = dir.path().join("controllers.yaml");
    std::fs::write(
        &controllers,
        "controllers:
- name: stamp
  module: stamp.wasm
  grant:
  - {apiGroups: [\"\"], resources: [configmaps], verbs: [get, list, watch, patch]}
",
    )?;
    let supervisor = Supervisor::new(engine, Runtime::new(client));
    let _source = files::watch(&controllers, supervisor.clone())?;
    // The first version serves; the second is compiled once (warm-up).
    swap(&supervisor, &module, &v1).await?;
    swap(&supervisor, &module, &v2).await?;

    let mut cached = Vec::new();
    let mut uncached = Vec::new();
    for index in 0..swaps {
        // Alternate the kinds so that both see the same machine.
        let next = if index % 2 == 0 { &v1 } else { &v2 };
        cached.push(swap(&supervisor, &module, next).await?);
        let fresh = retagged(&v1, index as u64 + 1);
        uncached.push(swap(&supervisor, &module, &fresh).await?);
    }
    let status = supervisor
        .board()
        .get("stamp")
        .context("the controller is declared")?;
    if status.reload_failures != 0 {
        bail!("a swap failed: {status:?}");
    }
    let expected_reloads = 1 + 2 * swaps as u64;
    if status.reloads != expected_reloads {
        bail!(
            "expected {expected_reloads} swaps, the status says {}",
            status.reloads
        );
    }
    let (cached_median, cached_min, cached_max) = stats(&cached);
    let (uncached_median, uncached_min, uncached_max) = stats(&uncached);
    println!("\nreload latency: module file written -> new version serving ({swaps} swaps each)");
    println!(
        "{:<10} {:>12} {:>10} {:>10}",
        "module", "median ms", "min ms", "max ms"
    );
    println!(
        "{:<10} {cached_median:>12.1} {cached_min:>10.1} {cached_max:>10.1}",
        "cached"
    );
    println!(
        "{:<10} {uncached_median:>12.1} {uncached_min:>10.1} {uncached_max:>10.1}",
        "uncached"
    );
    println!(
        "component {} KiB; uncached / cached = {:.0}x",
        v1.len() / 1024,
        uncached_median / cached_median
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("reload.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "swaps": swaps,
            "component_bytes": v1.len(),
            "cached_ms": {"median": cached_median, "min": cached_min, "max": cached_max},
            "uncached_ms": {"median": uncached_median, "min": uncached_min, "max": uncached_max},
        }))?,
    )?;
    supervisor.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}
