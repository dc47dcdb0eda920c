//! Work queue behaviour seen end to end: bursts coalesce, transient errors
//! back off, requeue-after comes back.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use paddock::controller::{ControllerConfig, ControllerStats, RunningController, Runtime};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::wasm::LoadOptions;
use paddock_tests::{cluster, engine, eventually, guest};
use serde_json::json;

fn hostile_config() -> ControllerConfig {
    ControllerConfig {
        guest: engine()
            .load(&guest("hostile"), LoadOptions::default())
            .expect("loads"),
        grant: Grant::new(vec![
            Rule::new(&[""], &["configmaps"], &["get", "list", "watch"]),
            Rule::new(&[""], &["events"], &["create", "patch"]),
        ]),
        namespaces: Vec::new(),
        concurrency: 1,
        queue: QueueConfig::default(),
        resync: None,
        tenant: None,
        service_account: None,
        observe: Default::default(),
    }
}

fn config_map(name: &str, mode: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": {"paddock.dev/test-mode": mode}},
        "data": {"value": "0"}
    }))
    .expect("a ConfigMap")
}

async fn start(runtime: &Runtime) -> RunningController {
    runtime.start(hostile_config()).await.expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_is_never_reconciled_by_two_workers_at_once() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = runtime
        .start(ControllerConfig {
            concurrency: 4,
            ..hostile_config()
        })
        .await
        .expect("starts");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["hot-a", "hot-b"] {
        config_maps
            .create(&PostParams::default(), &config_map(name, "slow"))
            .await
            .expect("create");
    }
    for value in 1..=40 {
        for name in ["hot-a", "hot-b"] {
            let patch = json!({"data": {"value": value.to_string()}});
            config_maps
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("update");
        }
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(
        20,
        "both objects reconciled in their last state",
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            let last = |name: &str| {
                list.items.iter().any(|event| {
                    event.involved_object.name.as_deref() == Some(name)
                        && event.message.as_deref() == Some("40")
                })
            };
            (last("hot-a") && last("hot-b")).then_some(())
        },
    )
    .await;
    assert!(ControllerStats::get(&controller.stats().reconciles) >= 2);
    assert_eq!(ControllerStats::get(&controller.stats().overlaps), 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_reconciles_unchanged_objects_periodically() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = runtime
        .start(ControllerConfig {
            resync: Some(Duration::from_millis(50)),
            tenant: None,
            service_account: None,
            ..hostile_config()
        })
        .await
        .expect("starts");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &config_map("steady", "behave"))
        .await
        .expect("create");
    eventually(20, "three reconciles of an unchanged object", || async {
        (ControllerStats::get(&controller.stats().reconciles) >= 3).then_some(())
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_updates_coalesces_and_ends_in_the_latest_state() {
    const UPDATES: usize = 100;
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = start(&runtime).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &config_map("burst", "slow"))
        .await
        .expect("create");
    for value in 1..=UPDATES {
        let patch = json!({"data": {"value": value.to_string()}});
        config_maps
            .patch("burst", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("update");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(20, "a reconcile that saw the last update", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|event| event.message.as_deref() == Some("100"))
            .then_some(())
    })
    .await;
    let reconciles = ControllerStats::get(&controller.stats().reconciles);
    assert!(
        reconciles < (UPDATES as u64) / 2,
        "{UPDATES} updates should coalesce into far fewer reconciles, got {reconciles}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_back_off_exponentially() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = start(&runtime).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = Instant::now();
    config_maps
        .create(
            &PostParams::default(),
            &config_map("flaky", "fail-transient"),
        )
        .await
        .expect("create");
    eventually(20, "six failed attempts", || async {
        (ControllerStats::get(&controller.stats().guest_errors) >= 6).then_some(())
    })
    .await;
    // Retries wait 5, 10, 20, 40 and 80 ms: at least 155 ms for six attempts.
    assert!(
        created.elapsed() >= Duration::from_millis(150),
        "six attempts came too fast for backoff: {:?}",
        created.elapsed()
    );
    assert!(controller.queue_metrics().retries >= 5);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_after_reconciles_again_without_a_change() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = start(&runtime).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&PostParams::default(), &config_map("periodic", "requeue"))
        .await
        .expect("create");
    eventually(20, "four reconciles of an unchanged object", || async {
        (ControllerStats::get(&controller.stats().reconciles) >= 4).then_some(())
    })
    .await;
    assert_eq!(ControllerStats::get(&controller.stats().guest_errors), 0);
    cluster.shutdown().await;
}
