//! A well-behaved tenant beside a hostile one: the good tenant's
//! update-to-reconciled latency alone, then while a hostile tenant runs
//! every attack at once, side by side in one run; and the host's resident
//! memory before, during and after the attack.
//!
//! The hostile tenant (namespace `bad`) declares more `WasmController`s
//! than the host allows per namespace, each running the `hostile` test
//! guest over ConfigMaps that ask it to compute forever, sleep through
//! WASI, answer 100,000 actions, log 64 MiB, requeue at once, patch a
//! subresource through a name and forge a status, while its resources are
//! edited in a loop. The good tenant (namespace `good`) runs the `tenant`
//! guest, which stamps each ConfigMap with the value it saw.
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_SAMPLES` sets the samples
//! per phase (default 25), `PADDOCK_BENCH_ATTACKS` a comma-separated subset
//! of the attacks (the modes below and `edits`; default all). Writes
//! `target/bench/tenants.json`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use paddock::controller::Runtime;
use paddock::crd::{ClusterWasmController, WasmController};
use paddock::reload::cluster::{self, TenantLimits};
use paddock::reload::{Phase, Supervisor};
use paddock::wasm::slots::ExecutionSlots;
use paddock::wasm::{EngineOptions, WasmEngine};
use paddock_bench::median;
use serde_json::{Value, json};

/// How long one reconcile may take before the run fails.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What each hostile ConfigMap asks the hostile guest to do, and how many.
const ATTACKS: [(&str, usize); 6] = [
    ("loop", 4),
    ("sleep", 4),
    ("flood-actions", 2),
    ("flood-log", 2),
    ("requeue-zero", 4),
    ("update-status", 1),
];

/// The host's resident memory, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn controller(name: &str, module: &str, grant: Value) -> anyhow::Result<WasmController> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "WasmController",
        "metadata": {"name": name},
        "spec": {"module": {"inline": module}, "grant": grant},
    }))?)
}

/// Patches the probe's value and waits until the good tenant stamped it.
async fn stamp_latency(probes: &Api<ConfigMap>, value: usize) -> anyhow::Result<f64> {
    let value = value.to_string();
    let started = Instant::now();
    probes
        .patch(
            "probe",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": value}})),
        )
        .await?;
    loop {
        let probe = probes.get("probe").await?;
        let annotations = probe.metadata.annotations.unwrap_or_default();
        if annotations.get("tenant.paddock.dev/seen") == Some(&value) {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if started.elapsed() > SAMPLE_TIMEOUT {
            bail!("the good tenant did not reconcile within {SAMPLE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

async fn wait_running(supervisor: &Supervisor, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if supervisor
            .board()
            .get(name)
            .is_some_and(|status| status.phase == Phase::Running)
        {
            return Ok(());
        }
        if started.elapsed() > SAMPLE_TIMEOUT {
            bail!("{name} did not start: {:?}", supervisor.board().get(name));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let samples: usize = std::env::var("PADDOCK_BENCH_SAMPLES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(25);
    let (root, guests) = paddock_bench::workspace_dirs();
    let encode = |name: &str| -> anyhow::Result<String> {
        let bytes = std::fs::read(guests.join(name))
            .with_context(|| format!("{name} is built by `cargo xtask build-guests`"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    let chosen = std::env::var("PADDOCK_BENCH_ATTACKS").ok();
    let attacking = |attack: &str| {
        chosen
            .as_deref()
            .is_none_or(|list| list.split(',').any(|item| item.trim() == attack))
    };
    let good_module = encode("tenant.wasm")?;
    let bad_module = encode("hostile.wasm")?;

    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = paddock::cluster::client(config)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [WasmController::crd(), ClusterWasmController::crd()] {
        crds.create(&PostParams::default(), &crd).await?;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["good", "bad"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}}))?,
            )
            .await?;
    }
    // Each tenant's controllers act as its `paddock-tenant` ServiceAccount,
    // bound to `edit` in its namespace.
    for name in ["good", "bad"] {
        Api::<ServiceAccount>::namespaced(client.clone(), name)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "paddock-tenant"}}))?,
            )
            .await?;
        Api::<RoleBinding>::namespaced(client.clone(), name)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "paddock-tenant-edit"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"kind": "ServiceAccount", "namespace": name, "name": "paddock-tenant"}],
                }))?,
            )
            .await?;
    }
    let dir = tempfile::tempdir()?;
    let engine =
        WasmEngine::new(EngineOptions::default().cache_dir(Some(dir.path().join("cache"))))?;
    let slots = ExecutionSlots::default();
    let supervisor = Supervisor::new(engine, Runtime::with_slots(client.clone(), slots.clone()));
    let tenant = TenantLimits {
        default_service_account: Some("paddock-tenant".to_owned()),
        ..TenantLimits::default()
    };
    let _source = cluster::watch(supervisor.clone(), client.clone(), tenant.clone());

    let good: Api<WasmController> = Api::namespaced(client.clone(), "good");
    good.create(
        &PostParams::default(),
        &controller(
            "stamper",
            &good_module,
            json!([
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]},
                // The tenant guest declares reads of Secrets (contract 0.1.2).
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            ]),
        )?,
    )
    .await?;
    wait_running(&supervisor, "good/stamper").await?;
    let probes: Api<ConfigMap> = Api::namespaced(client.clone(), "good");
    probes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "probe"}, "data": {"value": "0"}}),
            )?,
        )
        .await?;
    // Warm-up, then the good tenant alone.
    for value in 1..=5 {
        stamp_latency(&probes, value).await?;
    }
    let rss_before = rss_mib();
    let mut alone = Vec::new();
    for value in 0..samples {
        alone.push(stamp_latency(&probes, 100 + value).await?);
    }

    // The hostile tenant: more controllers than allowed, every attack.
    let bad: Api<WasmController> = Api::namespaced(client.clone(), "bad");
    let hostile_grant = json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["paddock.dev"], "resources": ["wasmcontrollers", "wasmcontrollers/status"], "verbs": ["*"]},
    ]);
    let declared = tenant.max_controllers_per_namespace + 2;
    for index in 0..declared {
        bad.create(
            &PostParams::default(),
            &controller(&format!("bad-{index}"), &bad_module, hostile_grant.clone())?,
        )
        .await?;
    }
    wait_running(&supervisor, "bad/bad-0").await?;
    let targets: Api<ConfigMap> = Api::namespaced(client.clone(), "bad");
    for (mode, count) in ATTACKS {
        if !attacking(mode) {
            continue;
        }
        for index in 0..count {
            let data = if mode == "update-status" {
                json!({"object": json!({
                    "apiVersion": "paddock.dev/v1alpha1", "kind": "WasmController",
                    "metadata": {"namespace": "bad", "name": "bad-0"},
                    "status": {"moduleDigest": "forged"},
                }).to_string()})
            } else {
                json!({})
            };
            targets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                        "metadata": {"name": format!("{mode}-{index}"), "annotations": {"paddock.dev/test-mode": mode}},
                        "data": data,
                    }))?,
                )
                .await?;
        }
    }
    // Edits of the hostile resources for as long as the attack lasts.
    let editing = Arc::new(AtomicBool::new(attacking("edits")));
    let editor = {
        let bad = bad.clone();
        let editing = Arc::clone(&editing);
        tokio::spawn(async move {
            let mut edits = 0u64;
            while editing.load(Ordering::Relaxed) {
                let name = format!("bad-{}", edits % 3);
                let patch = json!({"metadata": {"annotations": {"edit": edits.to_string()}}});
                if bad
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .is_ok()
                {
                    edits += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            edits
        })
    };
    // Let every attack reach its controllers before measuring.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut attacked = Vec::new();
    for value in 0..samples {
        attacked.push(stamp_latency(&probes, 1000 + value).await?);
    }
    let rss_attack = rss_mib();
    editing.store(false, Ordering::Relaxed);
    let edits = editor.await?;
    let running_bad = supervisor
        .board()
        .all()
        .iter()
        .filter(|status| status.name.starts_with("bad/") && status.handle.is_some())
        .count();
    let forged = bad
        .get("bad-0")
        .await?
        .status
        .and_then(|status| status.module_digest)
        .is_some_and(|digest| digest == "forged");
    if forged {
        bail!("the hostile tenant forged its own status");
    }
    for index in 0..declared {
        bad.delete(&format!("bad-{index}"), &DeleteParams::default())
            .await?;
    }
    let started = Instant::now();
    while supervisor
        .board()
        .all()
        .iter()
        .any(|status| status.name.starts_with("bad/"))
    {
        if started.elapsed() > SAMPLE_TIMEOUT {
            bail!("the hostile controllers did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_after = rss_mib();
    let slots_status = slots.status();

    let (alone, attacked) = (median(alone), median(attacked));
    let ratio = attacked / alone;
    println!(
        "\ntenants: a good tenant's update-to-reconciled latency beside a hostile tenant ({samples} samples each)"
    );
    println!("{:<28} {:>12}", "phase", "median ms");
    println!("{:<28} {alone:>12.2}", "alone");
    println!("{:<28} {attacked:>12.2}", "beside every attack");
    println!("ratio attacked / alone: {ratio:.2}x (target at most 2x)");
    println!(
        "hostile controllers declared {declared}, running {running_bad} (cap {}); {edits} edits of their resources",
        tenant.max_controllers_per_namespace
    );
    println!(
        "execution slots: {} in all, {} per tenant",
        slots_status.total, slots_status.per_tenant
    );
    println!(
        "host RSS: {rss_before:.0} MiB before, {rss_attack:.0} MiB during, {rss_after:.0} MiB after the attack"
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("tenants.json"),
        serde_json::to_string_pretty(&json!({
            "samples": samples,
            "alone_ms": alone,
            "attacked_ms": attacked,
            "ratio": ratio,
            "hostile_declared": declared,
            "hostile_running": running_bad,
            "edits": edits,
            "slots": slots_status.total,
            "slots_per_tenant": slots_status.per_tenant,
            "rss_mib": {"before": rss_before, "attack": rss_attack, "after": rss_after},
        }))?,
    )?;
    supervisor.shutdown().await;
    slots.drained(SAMPLE_TIMEOUT).await;
    cluster.shutdown().await;
    Ok(())
}
