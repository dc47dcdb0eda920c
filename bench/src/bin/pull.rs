//! Modules from an OCI registry: for the replica-floor example in Rust,
//! Python and JavaScript, pushed once to the embedded registry (plain HTTP
//! on 127.0.0.1), the time to pull it (resolve the tag, fetch and verify
//! the layer), to load it the first time (compile, into an empty compile
//! cache) and to load it again on a fresh engine with that cache (what a
//! restart or a second host pays). What a registry far away adds is the
//! network's, not measured here.
//!
//! Run with `cargo xtask bench`. Writes `target/bench/pull.json`.

use std::time::{Duration, Instant};

use paddock::oci::{PullLimits, Registries, RegistryAuth};
use paddock::wasm::{EngineOptions, LoadOptions, WasmEngine};
use paddock_bench::median;
use serde_json::json;

/// Pulls and warm loads measured per language (their median is reported).
const ROUNDS: usize = 5;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let (root, guests) = paddock_bench::workspace_dirs();
    let registry = devcluster::OciRegistry::start(devcluster::OciOptions::new()).await?;
    let host = registry.host();
    let registries = Registries::new(vec![host.clone()], PullLimits::default());
    let mut rows = Vec::new();
    for (language, file) in [
        ("Rust", "replica_floor.wasm"),
        ("Python", "replica_floor_py.wasm"),
        ("JavaScript", "replica_floor_js.wasm"),
    ] {
        let component = std::fs::read(guests.join(file))?;
        let reference = format!("{host}/examples/{}:v1", file.trim_end_matches(".wasm"));
        registries
            .push(component.clone(), &reference, &RegistryAuth::Anonymous)
            .await?;
        let mut pulls = Vec::new();
        let mut pulled = None;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let image = registries
                .pull(&reference, &RegistryAuth::Anonymous)
                .await?;
            pulls.push(started.elapsed().as_secs_f64() * 1e3);
            pulled = Some(image);
        }
        let pulled = pulled.ok_or_else(|| anyhow::anyhow!("no pull"))?;
        anyhow::ensure!(
            *pulled.bytes == *component,
            "the pulled bytes are the pushed ones"
        );
        let cache = tempfile::tempdir()?;
        let load = |bytes: std::sync::Arc<[u8]>| {
            let cache = cache.path().to_owned();
            let name = reference.clone();
            async move {
                tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
                    let engine = WasmEngine::new(EngineOptions::default().cache_dir(Some(cache)))?;
                    let started = Instant::now();
                    engine.load_bytes(
                        std::path::Path::new(&name),
                        &bytes,
                        LoadOptions::default(),
                    )?;
                    Ok(started.elapsed())
                })
                .await?
            }
        };
        let cold = load(std::sync::Arc::clone(&pulled.bytes)).await?;
        let mut warm = Vec::new();
        for _ in 0..ROUNDS {
            warm.push(
                load(std::sync::Arc::clone(&pulled.bytes))
                    .await?
                    .as_secs_f64()
                    * 1e3,
            );
        }
        let row = json!({
            "language": language,
            "megabytes": component.len() as f64 / 1e6,
            "pullMs": median(pulls),
            "firstLoadMs": cold.as_secs_f64() * 1e3,
            "cachedLoadMs": median(warm),
        });
        eprintln!("{row}");
        rows.push(row);
    }
    registry.shutdown().await;

    println!(
        "modules from an OCI registry (embedded, plain HTTP on 127.0.0.1; medians of {ROUNDS})"
    );
    println!(
        "{:<12} {:>8} {:>10} {:>16} {:>16}",
        "language", "MB", "pull ms", "first load ms", "cached load ms"
    );
    for row in &rows {
        println!(
            "{:<12} {:>8.1} {:>10.1} {:>16.0} {:>16.1}",
            row["language"].as_str().unwrap_or_default(),
            row["megabytes"].as_f64().unwrap_or(0.0),
            row["pullMs"].as_f64().unwrap_or(0.0),
            row["firstLoadMs"].as_f64().unwrap_or(0.0),
            row["cachedLoadMs"].as_f64().unwrap_or(0.0),
        );
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("pull.json"),
        serde_json::to_string_pretty(
            &json!({"benchmark": "pull", "rounds": ROUNDS, "rows": rows}),
        )?,
    )?;
    Ok(())
}
