//! What acting as a ServiceAccount adds to a reconcile, isolated from the
//! API server's own work: the same controller (replica-floor, over N
//! Deployments in one namespace, reconciling nothing) runs twice in one
//! runtime, once as the host and once as a ServiceAccount bound to `edit`,
//! and each is measured side by side, alternating batches:
//!
//! - `cache get`: one `cache.get` of a Deployment, as the guest's import
//!   answers it (the SA's read authorised from the cached review);
//! - `cache list`: one `cache.list` of the namespace's N Deployments;
//! - `action review`: the review an action of the SA gets before it is
//!   performed (a cached SubjectAccessReview answer; the host's own actions
//!   have none);
//! - `write`: one merge patch of a Deployment sent as the host and sent
//!   impersonating the SA (the embedded API server checks the
//!   impersonation, as a real one does).
//!
//! Run with `cargo xtask bench`; `PADDOCK_BENCH_OBJECTS` sets N (default
//! 1,000). Writes `target/bench/identity.json`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount as Account;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams, PostParams};
use paddock::actions::ObjectRef;
use paddock::cluster::Projections;
use paddock::controller::{ControllerConfig, RunningController, Runtime};
use paddock::grants::{Grant, Rule};
use paddock::identity::{Attributes, ServiceAccount};
use paddock::queue::QueueConfig;
use paddock::wasm::{EngineOptions, ListQuery, LoadOptions, SharedCache, WasmEngine};
use paddock_bench::{Contender, alternate, median};
use serde_json::json;

const NAMESPACE: &str = "bench";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::var("PADDOCK_BENCH_OBJECTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000);
    let (root, guests) = paddock_bench::workspace_dirs();
    let engine = WasmEngine::new(
        EngineOptions::default().cache_dir(Some(root.join("target/paddock-cache"))),
    )?;
    let guest = engine
        .load(&guests.join("replica_floor.wasm"), LoadOptions::default())
        .context("replica_floor.wasm is built by `cargo xtask build-guests`")?;

    let cluster = devcluster::DevCluster::start(devcluster::Options::new()).await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = paddock::cluster::client(config)?;
    create(
        &Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()),
        json!({"metadata": {"name": NAMESPACE}}),
    )
    .await?;
    create(
        &Api::<Account>::namespaced(client.clone(), NAMESPACE),
        json!({"metadata": {"name": "floor"}}),
    )
    .await?;
    create(
        &Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": "floor-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "namespace": NAMESPACE, "name": "floor"}],
        }),
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for index in 0..objects {
        create(&deployments, deployment(&format!("app-{index}"))).await?;
    }
    let account = ServiceAccount::new(NAMESPACE, "floor");

    let runtime = Runtime::new(client.clone());
    let start = |service_account: Option<ServiceAccount>| {
        runtime.start(ControllerConfig {
            guest: guest.clone(),
            grant: Grant::new(vec![
                Rule::new(
                    &["apps"],
                    &["deployments"],
                    &["get", "list", "watch", "patch"],
                ),
                Rule::new(&["apps"], &["deployments/scale"], &["patch"]),
                Rule::new(&["events.k8s.io"], &["events"], &["create", "patch"]),
            ]),
            namespaces: vec![NAMESPACE.to_owned()],
            concurrency: 2,
            queue: QueueConfig::default(),
            resync: None,
            tenant: None,
            service_account,
            observe: Default::default(),
        })
    };
    let as_host = start(None).await?;
    let as_account = start(Some(account.clone())).await?;
    wait_idle(&as_host).await?;
    wait_idle(&as_account).await?;

    // Reads, as the guest's `cache` import makes them: sync calls, which
    // may wait for a review, so off the async workers.
    let (host_cache, account_cache) = (as_host.cache(), as_account.cache());
    let reads =
        tokio::task::spawn_blocking(move || measure_reads(&host_cache, &account_cache, objects))
            .await??;

    // The review of an action: the executor asks it of the cached answers.
    let reviews = runtime.identities().reviews().clone();
    let scale = Attributes::new("patch", "apps", "deployments", Some(NAMESPACE))
        .subresource(Some("scale"))
        .name(Some("app-0"));
    anyhow::ensure!(
        reviews.allows(&account, &scale).await?,
        "edit lets the ServiceAccount scale"
    );
    let mut review_samples = Vec::new();
    for _round in 0..15 {
        let started = Instant::now();
        for _ in 0..2_000 {
            anyhow::ensure!(reviews.allows(&account, &scale).await?, "still allowed");
        }
        review_samples.push(started.elapsed().as_nanos() as f64 / 2_000.0);
    }
    let review_ns = median(review_samples);

    // Writes, sent as the host and impersonating the ServiceAccount.
    let impersonating: Api<Deployment> =
        Api::namespaced(runtime.identities().client_for(Some(&account)), NAMESPACE);
    let (mut host_writes, mut account_writes) = (Vec::new(), Vec::new());
    let mut counter = 0_u64;
    for _round in 0..10 {
        for (api, samples) in [
            (&deployments, &mut host_writes),
            (&impersonating, &mut account_writes),
        ] {
            let started = Instant::now();
            for _ in 0..20 {
                counter += 1;
                let patch = json!({"metadata": {"annotations": {"bench.paddock.dev/n": counter.to_string()}}});
                api.patch("app-0", &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            samples.push(started.elapsed().as_nanos() as f64 / 20.0);
        }
    }
    let writes = (median(host_writes), median(account_writes));

    println!(
        "Acting as a ServiceAccount, per operation ({objects} Deployments, median of alternating batches):"
    );
    println!("| operation | as the host | as a ServiceAccount | ratio |");
    println!("|---|---:|---:|---:|");
    let rows = [
        ("cache get", reads.get.0, reads.get.1),
        ("cache list", reads.list.0, reads.list.1),
        ("action review", 0.0, review_ns),
        ("write (merge patch)", writes.0, writes.1),
    ];
    for (name, host, acting) in rows {
        let ratio = if host > 0.0 {
            format!("{:.2}", acting / host)
        } else {
            "-".to_owned()
        };
        println!("| {name} | {} | {} | {ratio} |", human(host), human(acting));
    }

    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("identity.json"),
        serde_json::to_string_pretty(&json!({
            "objects": objects,
            "cache_get_ns": {"host": reads.get.0, "service_account": reads.get.1},
            "cache_list_ns": {"host": reads.list.0, "service_account": reads.list.1},
            "action_review_ns": review_ns,
            "write_ns": {"host": writes.0, "service_account": writes.1},
        }))?,
    )
    .context("writing target/bench/identity.json")?;
    drop((as_host, as_account));
    cluster.shutdown().await;
    Ok(())
}

/// Median nanoseconds of one read, as the host and as the ServiceAccount.
struct Reads {
    get: (f64, f64),
    list: (f64, f64),
}

fn measure_reads(
    host: &SharedCache,
    account: &SharedCache,
    objects: usize,
) -> anyhow::Result<Reads> {
    let targets: Vec<ObjectRef> = (0..objects)
        .map(|index| ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some(NAMESPACE.into()),
            name: format!("app-{index}"),
        })
        .collect();
    for cache in [host, account] {
        anyhow::ensure!(
            targets
                .iter()
                .all(|target| cache.get(target, &Projections::none()).is_some()),
            "every Deployment reads as present"
        );
    }
    let getter = |cache: &SharedCache| {
        let cache = Arc::clone(cache);
        let targets = targets.clone();
        let mut next = 0;
        move || {
            let found = cache.get(&targets[next % targets.len()], &Projections::none());
            assert!(found.is_some());
            next += 1;
        }
    };
    let mut gets = [
        Contender {
            name: "host",
            run: Box::new(getter(host)),
        },
        Contender {
            name: "service account",
            run: Box::new(getter(account)),
        },
    ];
    let get = alternate(&mut gets, 15, 2_000);
    let query = ListQuery {
        api_version: "apps/v1",
        kind: "Deployment",
        namespace: Some(NAMESPACE),
        label_selector: None,
    };
    let lister = |cache: &SharedCache| {
        let cache = Arc::clone(cache);
        move || {
            let listed = cache.list(&query, &Projections::none());
            assert_eq!(listed.len(), objects);
        }
    };
    let mut lists = [
        Contender {
            name: "host",
            run: Box::new(lister(host)),
        },
        Contender {
            name: "service account",
            run: Box::new(lister(account)),
        },
    ];
    let list = alternate(&mut lists, 15, 20);
    Ok(Reads {
        get: (get[0], get[1]),
        list: (list[0], list[1]),
    })
}

fn deployment(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0.0"}]}}}
    })
}

async fn create<K>(api: &Api<K>, object: serde_json::Value) -> anyhow::Result<()>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(object)?)
        .await?;
    Ok(())
}

/// Waits (at most a minute) until the controller reconciled what it was
/// handed at start.
async fn wait_idle(controller: &RunningController) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while !controller.is_idle() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} is still busy after a minute",
            controller.name()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

fn human(nanos: f64) -> String {
    if nanos == 0.0 {
        "none".to_owned()
    } else if nanos < 10_000.0 {
        format!("{nanos:.0} ns")
    } else if nanos < 10_000_000.0 {
        format!("{:.1} µs", nanos / 1_000.0)
    } else {
        format!("{:.1} ms", nanos / 1_000_000.0)
    }
}
