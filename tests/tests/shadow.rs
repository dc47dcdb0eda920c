//! Shadow runs and recordings on the embedded cluster: a candidate is
//! asked every question the live version is and never acts; what it
//! answers differently is reported object by object; a recording replays
//! offline against the module that made it with no difference, and
//! against a changed one with exactly the differences its change makes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use paddock::controller::{
    ControllerConfig, ControllerHandle, ControllerStats, Observe, RunningController, Runtime,
    Shadow, ShadowReport,
};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::record::{RecordOptions, Recordings, Redaction, replay};
use paddock::reload::{Supervisor, files};
use paddock::wasm::{Guest, LoadOptions};
use paddock_tests::{cluster, engine, eventually, guest};
use serde_json::json;

/// Deployments both versions scale alike (floor 2).
const AGREEING: usize = 6;
/// Deployments the candidate scales to 2 where the live version scales to
/// the floor, 4.
const DIFFERING: usize = 4;
/// Deployments with no floor: neither version touches them.
const UNTOUCHED: usize = 3;

fn floor_grant() -> Vec<Rule> {
    vec![
        Rule::new(&["apps"], &["deployments"], &["get", "list", "watch"]),
        Rule::new(&["apps"], &["deployments/scale"], &["patch"]),
        Rule::new(&[""], &["events"], &["create", "patch"]),
    ]
}

fn load(crate_name: &str, name: &str) -> Guest {
    engine()
        .load(&guest(crate_name), LoadOptions::default().name(name))
        .unwrap_or_else(|error| panic!("{crate_name} loads: {error:#}"))
}

async fn start(runtime: &Runtime, live: &str, observe: Observe) -> RunningController {
    runtime
        .start(ControllerConfig {
            guest: load(live, "floor"),
            grant: Grant::new(floor_grant()),
            namespaces: Vec::new(),
            concurrency: 2,
            queue: QueueConfig::default(),
            resync: None,
            tenant: None,
            service_account: None,
            observe,
        })
        .await
        .expect("the controller starts")
}

fn deployment(name: &str, annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

/// Creates the three groups of Deployments in `default`; the names of
/// the differing ones.
async fn create_deployments(client: &kube::Client) -> BTreeSet<String> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut differing = BTreeSet::new();
    for index in 0..AGREEING {
        let floor = json!({"paddock.dev/min-replicas": "2"});
        api.create(
            &PostParams::default(),
            &deployment(&format!("agree-{index}"), floor),
        )
        .await
        .expect("create");
    }
    for index in 0..DIFFERING {
        let name = format!("differ-{index}");
        let floor = json!({"paddock.dev/min-replicas": "4"});
        api.create(&PostParams::default(), &deployment(&name, floor))
            .await
            .expect("create");
        differing.insert(name);
    }
    for index in 0..UNTOUCHED {
        api.create(
            &PostParams::default(),
            &deployment(&format!("none-{index}"), json!({})),
        )
        .await
        .expect("create");
    }
    differing
}

/// Waits until every Deployment has the replicas the live version wants.
async fn converged(client: &kube::Client) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually(60, "every Deployment at the live version's floor", || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let done = list.items.len() == AGREEING + DIFFERING + UNTOUCHED
                && list.items.iter().all(|deployment| {
                    let name = deployment.metadata.name.as_deref().unwrap_or_default();
                    let replicas = deployment.spec.as_ref().and_then(|spec| spec.replicas);
                    let wanted = if name.starts_with("agree") {
                        2
                    } else if name.starts_with("differ") {
                        4
                    } else {
                        1
                    };
                    replicas == Some(wanted)
                });
            done.then_some(())
        }
    })
    .await;
}

/// replica-floor running with `candidate` in its shadow.
async fn start_shadowed(runtime: &Runtime, candidate: Guest) -> (RunningController, Arc<Shadow>) {
    let shadow = Arc::new(Shadow::new(candidate));
    let observe = Observe {
        record: None,
        shadow: Some(Arc::clone(&shadow)),
    };
    (start(runtime, "replica-floor", observe).await, shadow)
}

/// The shadow's report once it answered every question asked and the live
/// controller is idle.
async fn settled(controller: &RunningController, shadow: &Shadow) -> ShadowReport {
    eventually(60, "the live controller idle", || async {
        controller.is_idle().then_some(())
    })
    .await;
    assert!(
        shadow.settled(Duration::from_secs(60)).await,
        "the candidate answers every question within a minute"
    );
    shadow.report()
}

/// Every event in `default`: the name of the object it is about, and its
/// message.
async fn event_messages(client: &kube::Client) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let events = api.list(&ListParams::default()).await.expect("list events");
    assert!(!events.items.is_empty(), "the live version recorded events");
    events
        .items
        .into_iter()
        .map(|event| {
            (
                event.involved_object.name.unwrap_or_default(),
                event.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_differing_candidate_is_reported_on_exactly_those_objects_and_never_acts() {
    let (_cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let (controller, shadow) = start_shadowed(&runtime, load("floor-next", "floor.shadow")).await;
    let differing = create_deployments(&client).await;
    converged(&client).await;
    let report = settled(&controller, &shadow).await;

    let reconciles = ControllerStats::get(&controller.stats().reconciles);
    assert_eq!(report.skipped, 0, "{report:#?}");
    assert_eq!(
        report.compared, reconciles,
        "every live reconcile is compared: {report:#?}"
    );
    let sampled: BTreeSet<String> = report
        .samples
        .iter()
        .map(|sample| {
            assert_eq!(sample.difference, "actions", "{sample:#?}");
            assert!(
                sample.diff.contains("-    replicas: 4")
                    && sample.diff.contains("+    replicas: 2"),
                "the diff shows the live and the candidate's scale: {}",
                sample.diff
            );
            sample
                .object
                .strip_prefix("Deployment default/")
                .unwrap_or_else(|| panic!("a Deployment: {sample:?}"))
                .to_owned()
        })
        .collect();
    assert_eq!(sampled, differing, "{report:#?}");
    let differences = report.differences.get("actions").copied().unwrap_or(0);
    assert!(
        differences >= DIFFERING as u64 && report.differences.len() == 1,
        "{report:#?}"
    );
    assert_eq!(report.agreed, report.compared - differences);

    // The candidate never acted: no event of its was recorded (its "to 2
    // replicas" on a differing Deployment), and every Deployment is at the
    // live version's floor.
    for (object, message) in event_messages(&client).await {
        assert!(
            !(object.starts_with("differ") && message.contains("to 2 replicas")),
            "the candidate acted on {object}: {message}"
        );
    }
    converged(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_logic_in_another_language_agrees_on_every_call() {
    let (_cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let (controller, shadow) =
        start_shadowed(&runtime, load("replica-floor-py", "floor.shadow")).await;
    create_deployments(&client).await;
    converged(&client).await;
    let report = settled(&controller, &shadow).await;
    let reconciles = ControllerStats::get(&controller.stats().reconciles);
    assert!(reconciles >= (AGREEING + DIFFERING + UNTOUCHED) as u64);
    assert_eq!(report.compared, reconciles, "{report:#?}");
    assert_eq!(report.agreed, report.compared, "{report:#?}");
    assert!(report.differences.is_empty() && report.samples.is_empty());
    assert_eq!(report.agreement(), "100.0%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_candidate_costs_the_live_controller_its_work_nothing() {
    let (_cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let candidate = engine()
        .load(
            &guest("floor-next"),
            LoadOptions::default()
                .name("floor.shadow")
                .limits(paddock::wasm::Limits {
                    deadline: Duration::from_millis(100),
                    ..paddock::wasm::Limits::default()
                }),
        )
        .expect("loads");
    let (controller, shadow) = start_shadowed(&runtime, candidate).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for (index, how) in ["trap", "spin", "trap", "spin"].iter().enumerate() {
        let annotations = json!({
            "paddock.dev/min-replicas": "3",
            "floor-next.paddock.dev/fail": how,
        });
        api.create(
            &PostParams::default(),
            &deployment(&format!("fail-{index}"), annotations),
        )
        .await
        .expect("create");
    }
    eventually(60, "the live version scales every Deployment", || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|d| d.spec.as_ref().and_then(|s| s.replicas) == Some(3))
                .then_some(())
        }
    })
    .await;
    let report = settled(&controller, &shadow).await;
    let stats = controller.stats();
    assert_eq!(
        ControllerStats::get(&stats.guest_errors),
        0,
        "the live guest never failed"
    );
    assert_eq!(
        report.compared + report.skipped,
        ControllerStats::get(&stats.reconciles)
    );
    assert_eq!(
        report.differences.get("candidate-failed").copied(),
        Some(report.compared),
        "{report:#?}"
    );
    let kinds: BTreeSet<String> = report
        .samples
        .iter()
        .map(|sample| {
            let kind = if sample.diff.contains("+  trap:") {
                "trap"
            } else if sample.diff.contains("+  deadline_exceeded:") {
                "deadline"
            } else {
                panic!("a failure of the candidate: {}", sample.diff)
            };
            kind.to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["deadline".to_owned(), "trap".to_owned()])
    );
}

/// A controllers file entry of the floor controller.
fn floor_entry(module: &Path, shadow: Option<&Path>) -> String {
    let shadow = shadow.map_or_else(String::new, |module| {
        format!("  shadow:\n    module: {}\n", module.display())
    });
    format!(
        "controllers:
- name: floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
  - {{apiGroups: [\"\"], resources: [events], verbs: [create, patch]}}
{shadow}",
        module.display()
    )
}

fn handle(supervisor: &Supervisor) -> Option<ControllerHandle> {
    supervisor.board().get("floor")?.handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_shadow_records_replays_and_is_promoted_without_losing_work() {
    let (_cluster, client) = cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let live = guest("replica-floor");
    let candidate = dir.path().join("floor-next.wasm");
    std::fs::copy(guest("floor-next"), &candidate).expect("copy the candidate");
    let config = dir.path().join("controllers.yaml");
    std::fs::write(&config, floor_entry(&live, Some(&candidate))).expect("write");
    let supervisor = Supervisor::new(engine(), Runtime::new(client.clone()));
    let recordings = dir.path().join("recordings");
    supervisor.set_recordings(Arc::new(Recordings::new(RecordOptions {
        dir: recordings.clone(),
        max_bytes: 16 * 1024 * 1024,
        redaction: Redaction::default(),
        controllers: vec!["floor".to_owned()],
    })));
    let _source = files::watch(&config, supervisor.clone()).expect("watched");
    let serving = eventually(60, "the floor controller serving", || async {
        handle(&supervisor)
    })
    .await;
    let shadow = serving.shadow_candidate().expect("the declared candidate");
    let differing = create_deployments(&client).await;
    converged(&client).await;
    eventually(60, "the live controller idle", || async {
        let queue = serving.queue_metrics();
        (queue.depth == 0 && queue.in_flight == 0 && queue.waiting == 0).then_some(())
    })
    .await;
    assert!(shadow.settled(Duration::from_secs(60)).await);
    let report = serving.shadow().expect("a shadow report");
    let sampled: BTreeSet<String> = report
        .samples
        .iter()
        .map(|sample| {
            sample
                .object
                .trim_start_matches("Deployment default/")
                .to_owned()
        })
        .collect();
    assert_eq!(sampled, differing, "{report:#?}");

    // The recording replays against the live module with no difference,
    // and against the candidate with exactly the differences the shadow
    // run saw.
    let recorder = serving.recorder().expect("recorded");
    let written = || {
        recorder
            .stats()
            .written
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let reconciles = ControllerStats::get(&serving.stats().reconciles);
    eventually(30, "every reconcile recorded", || async {
        (written() == reconciles).then_some(())
    })
    .await;
    let recorded = replay::read(&recordings.join("floor")).expect("the recording reads");
    assert_eq!(recorded.len() as u64, reconciles);
    let differences = |module: &Path| -> Vec<String> {
        let guest = engine()
            .load(module, LoadOptions::default())
            .expect("loads");
        recorded
            .iter()
            .filter(|call| {
                replay::replay(&guest, &call.entry)
                    .comparison
                    .difference
                    .is_some()
            })
            .map(|call| call.entry.object_ref())
            .collect()
    };
    assert!(differences(&live).is_empty());
    let replayed: BTreeSet<String> = differences(&candidate)
        .into_iter()
        .map(|object| object.trim_start_matches("Deployment default/").to_owned())
        .collect();
    assert_eq!(replayed, differing);
    assert_eq!(
        differences(&candidate).len() as u64,
        report.differences.get("actions").copied().unwrap_or(0),
        "replay and shadow find the same differences"
    );

    // Promotion: the candidate becomes the module, the shadow goes. Work
    // queued around the swap is done, by one version or the other.
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let before = written();
    std::fs::write(&config, floor_entry(&candidate, None)).expect("promote");
    for index in 0..10 {
        let floor = json!({"paddock.dev/min-replicas": "4"});
        api.create(
            &PostParams::default(),
            &deployment(&format!("late-{index}"), floor),
        )
        .await
        .expect("create");
    }
    let candidate_digest = paddock::wasm::compile_cache::digest(
        &std::fs::read(&candidate).expect("read the candidate"),
    );
    let promoted = eventually(60, "the candidate serving", || async {
        handle(&supervisor).filter(|handle| handle.digest() == candidate_digest)
    })
    .await;
    assert!(promoted.shadow().is_none(), "the shadow is gone");
    eventually(60, "every late Deployment scaled by one version", || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .filter(|d| {
                    d.metadata
                        .name
                        .as_deref()
                        .unwrap_or("")
                        .starts_with("late-")
                })
                .all(|d| matches!(d.spec.as_ref().and_then(|s| s.replicas), Some(2 | 4)))
                .then_some(())
        }
    })
    .await;
    // The promoted version acts: a Deployment created now gets its 2.
    api.create(
        &PostParams::default(),
        &deployment("after", json!({"paddock.dev/min-replicas": "4"})),
    )
    .await
    .expect("create");
    eventually(60, "the promoted version scales to its cap", || {
        let api = api.clone();
        async move { (api.get("after").await.ok()?.spec?.replicas == Some(2)).then_some(()) }
    })
    .await;
    assert!(
        written() > before,
        "the recording goes on across the promotion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_are_recorded_compared_and_replayed() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Patch, PatchParams};

    let (_cluster, client) = cluster().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let policy = |labels: &str| {
        serde_json::from_value::<Namespace>(json!({
            "metadata": {"name": "shop", "annotations": {"paddock.dev/required-labels": labels}}
        }))
        .expect("a Namespace")
    };
    namespaces
        .create(&PostParams::default(), &policy("team=a"))
        .await
        .expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = Recordings::new(RecordOptions {
        dir: dir.path().to_owned(),
        max_bytes: 16 * 1024 * 1024,
        redaction: Redaction::default(),
        controllers: Vec::new(),
    });
    let recorder = recordings.recorder("policy").expect("a recorder");
    // The same logic in Python is the candidate, maps included.
    let shadow = Arc::new(Shadow::new(load("label-policy-py", "policy.shadow")));
    let controller = Runtime::new(client.clone())
        .start(ControllerConfig {
            guest: load("label-policy", "policy"),
            grant: Grant::new(vec![
                Rule::new(
                    &["apps"],
                    &["deployments"],
                    &["get", "list", "watch", "patch"],
                ),
                Rule::new(&[""], &["namespaces"], &["get", "list", "watch"]),
                Rule::new(&[""], &["events"], &["create", "patch"]),
            ]),
            namespaces: Vec::new(),
            concurrency: 2,
            queue: QueueConfig::default(),
            resync: None,
            tenant: None,
            service_account: None,
            observe: Observe {
                record: Some(Arc::clone(&recorder)),
                shadow: Some(Arc::clone(&shadow)),
            },
        })
        .await
        .expect("starts");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    deployments
        .create(&PostParams::default(), &deployment("web", json!({})))
        .await
        .expect("create");
    let label = |wanted: &'static str| {
        let deployments = deployments.clone();
        async move {
            let web = deployments.get("web").await.ok()?;
            (web.metadata.labels?.get("team").map(String::as_str) == Some(wanted)).then_some(())
        }
    };
    eventually(60, "web labelled team=a", || label("a")).await;
    // A changed policy reaches the Deployment through `map`.
    let patch =
        json!({"metadata": {"annotations": {"paddock.dev/required-labels": "team=a, tier=web"}}});
    namespaces
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    eventually(60, "web labelled tier=web", || {
        let deployments = deployments.clone();
        async move {
            let web = deployments.get("web").await.ok()?;
            (web.metadata.labels?.get("tier").map(String::as_str) == Some("web")).then_some(())
        }
    })
    .await;
    let report = settled(&controller, &shadow).await;
    assert_eq!(report.agreed, report.compared, "{report:#?}");
    assert!(recordings.drained(Duration::from_secs(30)).await);
    let recorded = replay::read(recorder.dir()).expect("the recording reads");
    let maps = recorded
        .iter()
        .filter(|call| call.entry.call == paddock::record::CallKind::Map)
        .count();
    assert!(maps >= 1, "the policy change was mapped: {recorded:#?}");
    let stats = controller.stats();
    assert!(
        report.compared > ControllerStats::get(&stats.reconciles),
        "reconciles and maps compared: {report:#?}"
    );
    let guest = load("label-policy", "replayed");
    for call in &recorded {
        let replayed = replay::replay(&guest, &call.entry);
        assert_eq!(
            replayed.comparison.difference, None,
            "{}: {}",
            call.location, replayed.comparison.diff
        );
        assert_eq!(replayed.unrecorded, 0, "{}", call.location);
    }
}
