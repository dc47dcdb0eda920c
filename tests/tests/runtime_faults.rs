//! The runtime under faults: watches dropped, history expired, requests
//! failing, kinds arriving late. Nothing may be lost.

use std::sync::atomic::Ordering;

use devcluster::{FaultKind, FaultRule};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use paddock::controller::{ControllerConfig, ControllerStats, RunningController, Runtime};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::wasm::LoadOptions;
use paddock_tests::{client_for, cluster, engine, eventually, guest};
use serde_json::json;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Rule {
    Rule::new(groups, resources, verbs)
}

fn floor_config(concurrency: usize) -> ControllerConfig {
    ControllerConfig {
        guest: engine()
            .load(&guest("replica-floor"), LoadOptions::default())
            .expect("loads"),
        grant: Grant::new(vec![
            rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
            rule(&["apps"], &["deployments/scale"], &["patch"]),
            rule(&[""], &["events"], &["create", "patch"]),
        ]),
        namespaces: Vec::new(),
        concurrency,
        queue: QueueConfig::default(),
        resync: None,
        tenant: None,
        service_account: None,
        observe: Default::default(),
    }
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"paddock.dev/min-replicas": "2"}},
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

async fn scaled(api: &Api<Deployment>, name: &str) {
    eventually(20, &format!("{name} to be scaled to 2"), || async {
        let replicas = api.get_opt(name).await.ok().flatten()?.spec?.replicas;
        (replicas == Some(2)).then_some(())
    })
    .await;
}

fn informer_lists(runtime: &Runtime) -> u64 {
    runtime
        .informers()
        .find("apps/v1", "Deployment", None)
        .iter()
        .map(|informer| informer.stats().lists.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_resume_and_expired_history_relists() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let _controller: RunningController = runtime.start(floor_config(1)).await.expect("starts");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    deployments
        .create(&PostParams::default(), &deployment("before"))
        .await
        .expect("create");
    scaled(&deployments, "before").await;

    // All watches end: the informer resumes from its resourceVersion.
    cluster.close_watches();
    deployments
        .create(&PostParams::default(), &deployment("after-drop"))
        .await
        .expect("create");
    scaled(&deployments, "after-drop").await;
    assert!(
        cluster.watches_opened("apps", "deployments") >= 2,
        "the watch was reopened"
    );
    assert_eq!(
        informer_lists(&runtime),
        1,
        "a dropped watch resumes without relisting"
    );

    // The history is gone too: resuming gets 410, so the informer relists.
    cluster.expire_watch_history();
    cluster.close_watches();
    deployments
        .create(&PostParams::default(), &deployment("after-expiry"))
        .await
        .expect("create");
    scaled(&deployments, "after-expiry").await;
    assert!(informer_lists(&runtime) >= 2, "410 Gone led to a relist");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_server_errors_are_retried() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = runtime.start(floor_config(1)).await.expect("starts");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    cluster.inject(
        FaultRule::new(FaultKind::Conflict)
            .verb("patch")
            .resource("apps", "deployments/scale")
            .times(2),
    );
    cluster.inject(
        FaultRule::new(FaultKind::InternalError)
            .verb("patch")
            .resource("apps", "deployments/scale")
            .times(1),
    );
    deployments
        .create(&PostParams::default(), &deployment("contested"))
        .await
        .expect("create");
    scaled(&deployments, "contested").await;
    assert!(
        ControllerStats::get(&controller.stats().action_errors) >= 3,
        "three failed attempts before the scale went through"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_created_after_start_up_is_picked_up() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let config = ControllerConfig {
        guest: engine()
            .load(&guest("app-operator"), LoadOptions::default())
            .expect("loads"),
        grant: Grant::new(vec![
            rule(
                &["examples.paddock.dev"],
                &["apps"],
                &["get", "list", "watch"],
            ),
            rule(&["examples.paddock.dev"], &["apps/status"], &["update"]),
            rule(
                &["apps"],
                &["deployments"],
                &["get", "list", "watch", "patch"],
            ),
            rule(&[""], &["services"], &["get", "list", "watch", "patch"]),
            rule(&[""], &["events"], &["create", "patch"]),
        ]),
        namespaces: Vec::new(),
        concurrency: 1,
        queue: QueueConfig::default(),
        resync: None,
        tenant: None,
        service_account: None,
        observe: Default::default(),
    };
    // The App kind does not exist yet: the controller waits for it.
    let starting = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.start_when_served(config).await })
    };
    assert!(!starting.is_finished());

    paddock_tests::apply_app_crd(&client).await;
    let _controller = tokio::time::timeout(std::time::Duration::from_secs(20), starting)
        .await
        .expect("the controller starts once its kind is served")
        .expect("no panic")
        .expect("starts");

    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &paddock_tests::app_resource());
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "examples.paddock.dev/v1", "kind": "App",
        "metadata": {"name": "late", "namespace": "default"},
        "spec": {"image": "registry.example.com/late:1", "replicas": 1}
    }))
    .expect("an App");
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually(20, "the late App's Deployment", || async {
        deployments.get_opt("late").await.ok().flatten()
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_under_dropped_watches_expired_history_and_failing_requests() {
    const OBJECTS: usize = 1000;
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let _controller = runtime.start(floor_config(4)).await.expect("starts");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    for index in 0..OBJECTS {
        deployments
            .create(
                &PostParams::default(),
                &deployment(&format!("load-{index:04}")),
            )
            .await
            .expect("create");
        match index {
            150 => cluster.close_watches(),
            300 => {
                cluster.expire_watch_history();
                cluster.close_watches();
            }
            450 => cluster.inject(
                FaultRule::new(FaultKind::TooManyRequests)
                    .verb("patch")
                    .times(20)
                    .retry_after_seconds(0),
            ),
            600 => cluster.inject(
                FaultRule::new(FaultKind::InternalError)
                    .verb("list")
                    .times(3),
            ),
            650 => {
                cluster.expire_watch_history();
                cluster.close_watches();
            }
            800 => cluster.inject(
                FaultRule::new(FaultKind::InternalError)
                    .verb("patch")
                    .times(20),
            ),
            _ => {}
        }
    }
    // Listing 1,000 Deployments is not free: poll every 250 ms, so the
    // check does not starve the controller it waits for. The check's own
    // list may meet an injected fault the informers have not used up yet:
    // that is a poll that saw nothing, not a failure.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let done = deployments
            .list(&Default::default())
            .await
            .map(|list| {
                list.items
                    .iter()
                    .filter(|item| item.spec.as_ref().and_then(|spec| spec.replicas) == Some(2))
                    .count()
            })
            .unwrap_or(0);
        if done == OBJECTS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {OBJECTS} Deployments were scaled within 10 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_backs_the_key_off_through_the_queue() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = runtime.start(floor_config(1)).await.expect("starts");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    // Three 429s with `Retry-After: 1`. Retried inside the client, they
    // would hold the only worker for three seconds and never reach the
    // controller; retried through the queue, each fails one reconcile and
    // the key waits its second in the queue.
    cluster.inject(
        FaultRule::too_many_requests()
            .verb("patch")
            .resource("apps", "deployments/scale")
            .times(3),
    );
    deployments
        .create(&PostParams::default(), &deployment("throttled"))
        .await
        .expect("create");
    scaled(&deployments, "throttled").await;
    assert_eq!(
        ControllerStats::get(&controller.stats().action_errors),
        3,
        "every 429 failed one reconcile: none was retried inside the client"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_action_is_retried_until_its_cause_is_gone() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = runtime
        .start(ControllerConfig {
            guest: engine()
                .load(&guest("tenant"), LoadOptions::default())
                .expect("loads"),
            grant: Grant::new(vec![
                rule(&[""], &["configmaps"], &["get", "list", "watch", "create"]),
                // It reads Secrets.
                rule(&[""], &["secrets"], &["get"]),
                rule(&[""], &["events"], &["create", "patch"]),
            ]),
            namespaces: Vec::new(),
            concurrency: 1,
            queue: QueueConfig::default().max_delay(std::time::Duration::from_millis(200)),
            resync: None,
            tenant: None,
            service_account: None,
            observe: Default::default(),
        })
        .await
        .expect("starts");

    // The guest creates a ConfigMap in a namespace that does not exist yet:
    // the API server answers 404, which is not the guest's last word.
    let configmaps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let primary: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "planter", "annotations": {"paddock.dev/tenant-mode": "create-outside"}},
        "data": {"namespace": "later", "name": "planted"},
    }))
    .expect("a ConfigMap");
    configmaps
        .create(&PostParams::default(), &primary)
        .await
        .expect("create");
    eventually(20, "two rejected attempts", || async {
        (ControllerStats::get(&controller.stats().action_errors) >= 2).then_some(())
    })
    .await;

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let later: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "later"}})).expect("a Namespace");
    namespaces
        .create(&PostParams::default(), &later)
        .await
        .expect("create the namespace");
    let planted: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "later",
        &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    eventually(20, "the retried create to succeed", || async {
        planted.get_opt("planted").await.ok().flatten()
    })
    .await;
    cluster.shutdown().await;
}

fn finalizing_config(grant: Vec<Rule>) -> ControllerConfig {
    ControllerConfig {
        guest: engine()
            .load(&guest("finalizing"), LoadOptions::default())
            .expect("loads"),
        grant: Grant::new(grant),
        namespaces: Vec::new(),
        concurrency: 1,
        queue: QueueConfig::default(),
        resync: None,
        tenant: None,
        service_account: None,
        observe: Default::default(),
    }
}

fn finalizing_grant() -> Vec<Rule> {
    vec![rule(
        &[""],
        &["configmaps"],
        &["get", "list", "watch", "patch"],
    )]
}

async fn holds_finalizer(api: &Api<ConfigMap>, name: &str) -> bool {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|map| map.metadata.finalizers)
        .is_some_and(|held| held.iter().any(|f| f == "paddock.dev/finalizing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizing_guest_sees_a_deletion_made_while_the_host_was_down() {
    let (cluster, client) = cluster().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Finalizing needs `patch` on the primary resource.
    let refused = Runtime::new(client.clone())
        .start(finalizing_config(vec![rule(
            &[""],
            &["configmaps"],
            &["get", "list", "watch"],
        )]))
        .await
        .expect_err("refused without patch");
    assert!(
        refused
            .to_string()
            .contains("finalizes its ConfigMap objects"),
        "{refused}"
    );

    let runtime = Runtime::new(client.clone());
    let controller = runtime
        .start(finalizing_config(finalizing_grant()))
        .await
        .expect("starts");
    let precious: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "precious", "labels": {"finalize.paddock.dev/watch": "yes"}},
    }))
    .expect("a ConfigMap");
    let uid = configmaps
        .create(&PostParams::default(), &precious)
        .await
        .expect("create")
        .metadata
        .uid
        .expect("a uid");
    eventually(20, "the host to add its finalizer", || async {
        holds_finalizer(&configmaps, "precious").await.then_some(())
    })
    .await;

    // The host goes away without a word, and the object is deleted then:
    // the finalizer holds it.
    drop(controller);
    drop(runtime);
    configmaps
        .delete("precious", &DeleteParams::default())
        .await
        .expect("delete");
    let held = configmaps.get("precious").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());

    // Back up, the guest sees the deletion while the object exists; once it
    // answered, the object is gone, and no `deleted` reconcile follows.
    let runtime = Runtime::new(client.clone());
    let controller = runtime
        .start(finalizing_config(finalizing_grant()))
        .await
        .expect("restarts");
    eventually(20, "the finalized object to be deleted", || async {
        configmaps
            .get_opt("precious")
            .await
            .ok()
            .and_then(|found| found.is_none().then_some(()))
    })
    .await;
    eventually(20, "the controller to settle", || async {
        controller.is_idle().then_some(())
    })
    .await;
    let cleaned = configmaps
        .get("precious-cleaned")
        .await
        .expect("the guest cleaned up")
        .data
        .unwrap_or_default();
    assert_eq!(cleaned.get("uid"), Some(&uid));
    assert_eq!(
        cleaned.get("seen").map(String::as_str),
        Some("being-deleted"),
        "the guest saw the deletion once, while the object existed"
    );

    // A controller that is removed lets go of the objects it holds.
    let kept: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kept", "labels": {"finalize.paddock.dev/watch": "yes"}},
    }))
    .expect("a ConfigMap");
    configmaps
        .create(&PostParams::default(), &kept)
        .await
        .expect("create");
    eventually(20, "the finalizer on the second object", || async {
        holds_finalizer(&configmaps, "kept").await.then_some(())
    })
    .await;
    // One more holds the finalizer beside another's, written a moment
    // before the removal: the release reads the API server, not a store
    // that may not have seen it yet, and leaves the other finalizer alone.
    let shared: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": "shared",
            "finalizers": ["example.com/other", "paddock.dev/finalizing"],
        },
    }))
    .expect("a ConfigMap");
    configmaps
        .create(&PostParams::default(), &shared)
        .await
        .expect("create");
    let released = controller.remove(std::time::Duration::from_secs(10)).await;
    assert_eq!(released, 2);
    assert!(!holds_finalizer(&configmaps, "kept").await);
    assert!(!holds_finalizer(&configmaps, "shared").await);
    let others = configmaps
        .get("shared")
        .await
        .expect("still there")
        .metadata
        .finalizers;
    assert_eq!(others, Some(vec!["example.com/other".to_owned()]));
    cluster.shutdown().await;
}

/// A forbidden list at start: the host's identity may discover the kind
/// but not list it. The start does not hang: it fails within the
/// configured sync timeout, naming the informer and the 403, and through
/// the supervisor the controller waits for the cluster with that reason in
/// `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_list_at_start_fails_within_the_sync_timeout_with_the_reason() {
    use paddock::cluster::ClusterError;
    use paddock::controller::StartError;
    use std::time::{Duration, Instant};

    let (cluster, _admin) = cluster().await;
    // A user RBAC grants nothing but discovery.
    let kubeconfig = cluster
        .kubeconfig_yaml_for_user("nobody", &[])
        .expect("a kubeconfig");
    let runtime =
        Runtime::new(client_for(&kubeconfig).await).with_sync_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(30), runtime.start(floor_config(1)))
        .await
        .expect("the start returns instead of hanging")
        .expect_err("the list is forbidden");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let StartError::NotSynced {
        informer, source, ..
    } = &error
    else {
        panic!("not a sync failure: {error:?}");
    };
    assert_eq!(informer, "deployments.apps/v1 in all namespaces");
    assert!(
        matches!(source.as_deref(), Some(ClusterError::Forbidden(_))),
        "{error:?}"
    );
    let message = paddock::cluster::error_chain(&error);
    assert!(message.contains("403"), "{message}");

    // The same through the supervisor and a controllers file: waiting for
    // the cluster (started again with backoff), with the reason in
    // `/status`.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("controllers.yaml");
    std::fs::write(
        &config,
        format!(
            "controllers:
- name: floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
",
            guest("replica-floor").display()
        ),
    )
    .expect("write the controllers file");
    let supervisor = paddock::reload::Supervisor::new(engine(), runtime.clone());
    let _source =
        paddock::reload::files::watch(&config, supervisor.clone()).expect("the file is watched");
    let ops = paddock::ops::OpsState::new(
        supervisor.runtime().informers().clone(),
        supervisor.board().clone(),
    );
    let report = eventually(30, "the controller to wait for the cluster", || async {
        let report = ops.report();
        report
            .controllers
            .iter()
            .any(|controller| controller.status.phase == paddock::reload::Phase::WaitingForCluster)
            .then_some(report)
    })
    .await;
    let failure = report.controllers[0]
        .status
        .last_reload_error
        .as_ref()
        .expect("a reason")
        .message
        .clone();
    assert!(
        failure.contains("did not list within 2s") && failure.contains("403"),
        "{failure}"
    );
}

/// A wrong token at start is reported as a 401 at once, not as a kind the
/// cluster does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_at_start_is_reported_as_401() {
    use paddock::cluster::ClusterError;
    use paddock::controller::StartError;

    let (cluster, _admin) = cluster().await;
    let runtime = Runtime::new(client_for(&cluster.kubeconfig_yaml_for_token("wrong")).await);
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        runtime.start_when_served(floor_config(1)),
    )
    .await
    .expect("the start does not wait for a kind")
    .expect_err("the token is wrong");
    assert!(
        matches!(
            &error,
            StartError::Cluster {
                source: ClusterError::Unauthorized(_),
                ..
            }
        ),
        "{error:?}"
    );
    let message = paddock::cluster::error_chain(&error);
    assert!(
        message.contains("401") && !message.contains("does not serve"),
        "{message}"
    );
}
