//! Dispatch cost of one reconcile: the replica-floor guest against the same
//! logic compiled natively, on a ~2 KB Deployment that needs scaling.
//!
//! Run with `cargo xtask bench`, which builds the guests and this binary in
//! release mode. Prints a table and writes `target/bench/dispatch.json`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use paddock::harness::read_object;
use paddock::wasm::{Change, EmptyCache, EngineOptions, LoadOptions, WasmEngine};
use paddock_bench::{Contender, alternate};
use paddock_guest::{Controller, Object, Request};
use replica_floor::ReplicaFloor;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .context("the bench crate lives in the workspace")?;
    let guests = std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guests/wasm32-wasip2/release"));
    let object =
        read_object(&root.join("guest-examples/replica-floor/fixtures/below-floor/object.yaml"))?;
    let json = object.to_string();

    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(root.join("target/paddock-cache"))),
    )?;
    let guest = engine.load(&guests.join("replica_floor.wasm"), LoadOptions::default())?;
    let cache: Arc<EmptyCache> = Arc::new(EmptyCache);

    // Sanity: both answer with the scale and the event.
    let answer = guest.reconcile(&json, Change::Applied, 0, cache.clone())?;
    anyhow::ensure!(
        answer.actions.len() == 2,
        "the guest should scale and record"
    );
    let native = native_reconcile(&json);
    anyhow::ensure!(native == 2, "the native logic should scale and record");

    let mut contenders = [
        Contender {
            name: "native",
            run: Box::new(|| {
                std::hint::black_box(native_reconcile(std::hint::black_box(&json)));
            }),
        },
        Contender {
            name: "guest reconcile",
            run: Box::new(|| {
                let outcome = guest.reconcile(&json, Change::Applied, 0, cache.clone());
                std::hint::black_box(outcome.ok());
            }),
        },
        Contender {
            name: "guest describe",
            run: Box::new(|| {
                std::hint::black_box(guest.describe().ok());
            }),
        },
    ];
    let medians = alternate(&mut contenders, 30, 200);
    let native_ns = medians[0];
    println!(
        "dispatch of one reconcile, {} byte Deployment (median of 30 rounds of 200)",
        json.len()
    );
    println!("{:<18} {:>12} {:>10}", "contender", "ns/call", "÷ native");
    let mut rows = Vec::new();
    for (contender, ns) in contenders.iter().zip(&medians) {
        println!(
            "{:<18} {:>12.0} {:>10.2}",
            contender.name,
            ns,
            ns / native_ns
        );
        rows.push(serde_json::json!({
            "contender": contender.name,
            "nsPerCall": ns.round(),
            "ratioToNative": (ns / native_ns * 100.0).round() / 100.0,
        }));
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let report =
        serde_json::json!({"benchmark": "dispatch", "objectBytes": json.len(), "rows": rows});
    std::fs::write(
        out.join("dispatch.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}

/// The guest's logic, natively: parse the object and reconcile; the number
/// of actions.
fn native_reconcile(json: &str) -> usize {
    let Ok(object) = Object::parse(json) else {
        return 0;
    };
    let request = Request {
        object,
        change: paddock_guest::Change::Applied,
        attempt: 0,
    };
    match ReplicaFloor::reconcile(request) {
        Ok(outcome) => std::hint::black_box(outcome).actions.len(),
        Err(_) => 0,
    }
}
