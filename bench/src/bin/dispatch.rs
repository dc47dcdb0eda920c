//! Dispatch cost of one reconcile: the replica-floor guest, built from Rust,
//! Python and JavaScript, against the same logic compiled natively and the
//! same logic behind a local HTTP JSON webhook, on a ~2 KB Deployment that
//! needs scaling; and what each language's component
//! costs to load: its size, its compile time (uncached) and its
//! instantiation.
//!
//! Each guest declares a projection (the annotation and `spec.replicas`):
//! it is measured as it runs, handed ~300 bytes, and loaded with
//! `whole_objects`, handed all ~2 KB as a guest without a projection is.
//! The native contenders read the whole 2 KB: `native` builds a
//! `serde_json::Value` of it, as a controller deserializing its objects
//! does; `native, lazy reads` runs the SDK's own code natively (it checks
//! the JSON, then reads the five fields where they lie).
//!
//! Run with `cargo xtask bench`, which builds the guests and this binary in
//! release mode. Prints two tables and writes `target/bench/dispatch.json`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use paddock::harness::read_object;
use paddock::wasm::{
    Change, EmptyCache, EngineOptions, Guest, Instances, LoadOptions, Pooling, WasmEngine,
};
use paddock_bench::{Contender, alternate, native, webhook};
use paddock_guest::{Controller, Object, Request};
use replica_floor::ReplicaFloor;

/// The builds of replica-floor, by language and component file.
const BUILDS: [(&str, &str); 3] = [
    ("rust", "replica_floor.wasm"),
    ("python", "replica_floor_py.wasm"),
    ("js", "replica_floor_js.wasm"),
];

/// One language's build, loaded four times: reusing instances, reusing
/// them but handed whole objects, fresh per call, and fresh per call from
/// an engine with a pool of instance slots.
struct Build {
    language: &'static str,
    bytes: u64,
    compile_ms: f64,
    reused: Guest,
    whole: Guest,
    fresh: Guest,
    pooled: Guest,
}

fn main() -> anyhow::Result<()> {
    let (root, guests) = paddock_bench::workspace_dirs();
    let object =
        read_object(&root.join("guest-examples/replica-floor/fixtures/below-floor/object.yaml"))?;
    let json = object.to_string();
    let native = native_reconcile(&json);
    anyhow::ensure!(native == 2, "the native logic should scale and record");
    anyhow::ensure!(
        native_lazy_reconcile(&json) == 2,
        "the native logic with lazy reads should scale and record"
    );

    let uncached = WasmEngine::new(EngineOptions::default().cache_dir(None).pooling(None))?;
    // Without a pool: fresh instances mapped per instance.
    let engine = WasmEngine::new(
        EngineOptions::default()
            .cache_dir(Some(root.join("target/paddock-cache")))
            .pooling(None),
    )?;
    // The default engine: fresh instances from its pool (256 instances,
    // memories up to 512 MiB, 16 MiB of written pages kept resident where
    // the kernel has `PAGEMAP_SCAN`, else 64 KiB).
    let before_pool = own_kib("VmSize:");
    let rss_before_pool = own_kib("VmRSS:");
    let pooled = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(root.join("target/paddock-cache"))),
    )?;
    let pool_reserved_gib = (own_kib("VmSize:") - before_pool) / (1024.0 * 1024.0);
    let pool_resident_mib = (own_kib("VmRSS:") - rss_before_pool) / 1024.0;
    println!(
        "a pool of {} instances reserves {pool_reserved_gib:.0} GiB of address space, \
         {pool_resident_mib:.1} MiB resident",
        Pooling::default().instances
    );
    let cache: Arc<EmptyCache> = Arc::new(EmptyCache);
    let mut builds = Vec::new();
    // `PADDOCK_BENCH_LANGUAGES=rust` (say) measures only some builds, for
    // profiling one of them.
    let only = std::env::var("PADDOCK_BENCH_LANGUAGES").ok();
    for (language, file) in BUILDS {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|wanted| wanted.trim() == language))
        {
            continue;
        }
        let build = load([&uncached, &engine, &pooled], language, &guests.join(file))?;
        // Sanity: every build answers with the scale and the event.
        for guest in [&build.reused, &build.whole, &build.fresh, &build.pooled] {
            let seen = guest.projections().narrow(json.clone());
            let answer = guest.reconcile(&seen, Change::Applied, 0, cache.clone())?;
            anyhow::ensure!(
                answer.actions.len() == 2,
                "{language} should scale and record"
            );
        }
        builds.push(build);
    }

    // `PADDOCK_BENCH_PROFILE=SECONDS`: only call the first build's reused
    // guest (with `PADDOCK_BENCH_PROFILE_FRESH=1`, its fresh-per-call one,
    // `PADDOCK_BENCH_PROFILE_POOLED=1` the same from the pooled engine;
    // with `PADDOCK_BENCH_PROFILE_WHOLE=1`, the one handed whole objects)
    // for that long, for `perf record`.
    if let Some(seconds) = std::env::var("PADDOCK_BENCH_PROFILE")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
    {
        let build = builds.first().context("no build to profile")?;
        let guest = if std::env::var_os("PADDOCK_BENCH_PROFILE_POOLED").is_some() {
            &build.pooled
        } else if std::env::var_os("PADDOCK_BENCH_PROFILE_FRESH").is_some() {
            &build.fresh
        } else if std::env::var_os("PADDOCK_BENCH_PROFILE_WHOLE").is_some() {
            &build.whole
        } else {
            &build.reused
        };
        let seen = guest.projections().narrow(json.clone());
        let until = Instant::now() + std::time::Duration::from_secs_f64(seconds);
        let mut calls = 0u64;
        while Instant::now() < until {
            let outcome = guest.reconcile(&seen, Change::Applied, 0, cache.clone());
            std::hint::black_box(outcome.ok());
            calls += 1;
        }
        println!("{calls} calls of the {} guest", build.language);
        return Ok(());
    }

    // The webhook: a native Rust server on 127.0.0.1 with the same logic,
    // called over a keep-alive connection (the best case for a hook).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (addr, _server) = runtime.block_on(webhook::serve(native::webhook_answer))?;
    let hook = webhook::Client::new(addr);
    let webhook_call = |json: &str| -> usize {
        let answer = runtime.block_on(hook.call(json.as_bytes().to_vec()));
        answer
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .map_or(0, |answer| {
                usize::from(answer["scale"].is_u64()) + usize::from(answer["event"].is_object())
            })
    };
    anyhow::ensure!(
        webhook_call(&json) == 2,
        "the webhook should scale and record"
    );

    // What the host hands a guest with replica-floor's projection: the
    // object narrowed once (per version, as the host's store does).
    let projected = builds.first().map_or_else(
        || json.clone(),
        |build| build.reused.projections().narrow(json.clone()),
    );
    let mut contenders = vec![
        Contender {
            name: "native",
            run: Box::new(|| {
                std::hint::black_box(native_reconcile(std::hint::black_box(&json)));
            }),
        },
        Contender {
            name: "native, lazy reads",
            run: Box::new(|| {
                std::hint::black_box(native_lazy_reconcile(std::hint::black_box(&json)));
            }),
        },
    ];
    for build in &builds {
        for (guest, name) in [
            (&build.reused, contender_name(build.language, "reconcile")),
            (
                &build.whole,
                contender_name(build.language, "reconcile, whole object"),
            ),
            (
                &build.fresh,
                contender_name(build.language, "reconcile, fresh instance"),
            ),
            (
                &build.pooled,
                contender_name(build.language, "reconcile, fresh pooled instance"),
            ),
        ] {
            let cache = cache.clone();
            // Each is handed what the host would hand it.
            let json = if guest.projections().is_empty() {
                &json
            } else {
                &projected
            };
            contenders.push(Contender {
                name,
                run: Box::new(move || {
                    let outcome = guest.reconcile(json, Change::Applied, 0, cache.clone());
                    std::hint::black_box(outcome.ok());
                }),
            });
        }
        // The floor of a call: a deletion, which every build answers with
        // nothing before reading a field (the Python and JavaScript SDKs
        // still parse the projected object first).
        let cache = cache.clone();
        let (guest, json) = (&build.reused, &projected);
        contenders.push(Contender {
            name: contender_name(build.language, "reconcile of a deletion (answers nothing)"),
            run: Box::new(move || {
                let outcome = guest.reconcile(json, Change::Deleted, 0, cache.clone());
                std::hint::black_box(outcome.ok());
            }),
        });
    }
    contenders.push(Contender {
        name: "webhook",
        run: Box::new(|| {
            std::hint::black_box(webhook_call(std::hint::black_box(&json)));
        }),
    });
    let medians = alternate(&mut contenders, 15, 100);
    let native_ns = medians[0];
    println!(
        "dispatch of one reconcile, {} byte Deployment (median of 15 rounds of 100)",
        json.len()
    );
    println!("{:<48} {:>12} {:>10}", "contender", "ns/call", "÷ native");
    let mut rows = Vec::new();
    for (contender, ns) in contenders.iter().zip(&medians) {
        println!(
            "{:<48} {:>12.0} {:>10.2}",
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

    println!();
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>14} {:>14} {:>12}",
        "language",
        "bytes",
        "compile ms",
        "instantiate µs",
        "pooled µs",
        "reconcile µs",
        "deletion µs"
    );
    let mut languages = Vec::new();
    // The two native contenders first, then five per build.
    for (index, build) in builds.iter().enumerate() {
        let reused_ns = medians[2 + 5 * index];
        let fresh_ns = medians[4 + 5 * index];
        let pooled_ns = medians[5 + 5 * index];
        let deletion_ns = medians[6 + 5 * index];
        // A fresh-instance call is an instantiation plus the same call.
        let instantiate_us = (fresh_ns - reused_ns).max(0.0) / 1000.0;
        let pooled_us = (pooled_ns - reused_ns).max(0.0) / 1000.0;
        println!(
            "{:<8} {:>12} {:>12.0} {:>14.1} {:>14.1} {:>14.1} {:>12.1}",
            build.language,
            build.bytes,
            build.compile_ms,
            instantiate_us,
            pooled_us,
            reused_ns / 1000.0,
            deletion_ns / 1000.0
        );
        languages.push(serde_json::json!({
            "language": build.language,
            "componentBytes": build.bytes,
            "compileMs": build.compile_ms.round(),
            "instantiateUs": (instantiate_us * 10.0).round() / 10.0,
            "reconcileUs": (reused_ns / 100.0).round() / 10.0,
            "reconcileFreshInstanceUs": (fresh_ns / 100.0).round() / 10.0,
            "instantiatePooledUs": (pooled_us * 10.0).round() / 10.0,
            "deletionUs": (deletion_ns / 100.0).round() / 10.0,
        }));
    }
    println!("native   reconcile µs {:.1}", native_ns / 1000.0);
    // What the pool's idle slots hold on to after the runs: the pages the
    // last instance of each slot wrote, kept for the next one.
    let pool_idle_mib = pooled.pooled_bytes_resident().unwrap_or(0) as f64 / f64::from(1 << 20);
    println!(
        "the pool's idle slots keep {pool_idle_mib:.1} MiB resident \
         (keep_resident {} KiB per memory)",
        Pooling::default().keep_resident >> 10
    );

    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let report = serde_json::json!({
        "benchmark": "dispatch",
        "objectBytes": json.len(),
        "projectedBytes": projected_bytes(&builds, &json),
        "poolReservedGiB": pool_reserved_gib.round(),
        "poolResidentMiB": (pool_resident_mib * 10.0).round() / 10.0,
        "poolIdleResidentMiB": (pool_idle_mib * 10.0).round() / 10.0,
        "nativeReconcileUs": (native_ns / 100.0).round() / 10.0,
        "rows": rows,
        "languages": languages,
    });
    std::fs::write(
        out.join("dispatch.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(())
}

fn contender_name(language: &str, what: &str) -> &'static str {
    // Contender names are 'static; a handful of short strings is fine to leak.
    Box::leak(format!("{language} guest {what}").into_boxed_str())
}

/// Loads one build: once through an engine without a compile cache (to time
/// compiling it), then twice through the cached engine.
fn load(
    [uncached, engine, pooled]: [&WasmEngine; 3],
    language: &'static str,
    path: &Path,
) -> anyhow::Result<Build> {
    let bytes = std::fs::metadata(path)
        .with_context(|| {
            format!(
                "{} is missing: run `cargo xtask build-guests`",
                path.display()
            )
        })?
        .len();
    let started = Instant::now();
    // Compiling dominates a load without cache; the rest is one `describe`.
    drop(uncached.load(path, LoadOptions::default())?);
    let compile_ms = started.elapsed().as_secs_f64() * 1000.0;
    let reused = engine.load(path, LoadOptions::default().instances(Instances::Reused))?;
    let whole = engine.load(
        path,
        LoadOptions::default()
            .instances(Instances::Reused)
            .whole_objects(),
    )?;
    let fresh = engine.load(
        path,
        LoadOptions::default().instances(Instances::FreshPerCall),
    )?;
    let pooled = pooled.load(
        path,
        LoadOptions::default().instances(Instances::FreshPerCall),
    )?;
    Ok(Build {
        language,
        bytes,
        compile_ms,
        reused,
        whole,
        fresh,
        pooled,
    })
}

/// A `/proc/self/status` field of this process, in KiB.
fn own_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// How many bytes of the object a guest with replica-floor's projection
/// is handed.
fn projected_bytes(builds: &[Build], json: &str) -> Option<usize> {
    let guest = &builds.first()?.reused;
    let projection = guest.projection("apps/v1", "Deployment")?;
    Some(projection.narrow(json).len())
}

/// The guest's logic, natively: parse the whole object into a value and
/// reconcile; the number of actions.
fn native_reconcile(json: &str) -> usize {
    let Ok(value) = serde_json::from_str(json) else {
        return 0;
    };
    native_decide(Object::new(value))
}

/// The guest's logic, natively, with the SDK's lazy reads: the JSON is
/// checked, then each field is read where it lies.
fn native_lazy_reconcile(json: &str) -> usize {
    let Ok(object) = Object::parse(json) else {
        return 0;
    };
    native_decide(object)
}

fn native_decide(object: Object) -> usize {
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
