//! The controller runtime on the embedded cluster: each example guest does
//! its job through the real HTTP path.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Service};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use paddock::controller::{
    ControllerConfig, ControllerStats, RunningController, Runtime, StartError,
};
use paddock::grants::{Grant, Rule};
use paddock::queue::QueueConfig;
use paddock::wasm::LoadOptions;
use paddock_tests::{cluster, engine, eventually, guest};
use serde_json::json;

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Rule {
    Rule::new(groups, resources, verbs)
}

fn events_rule() -> Rule {
    rule(&[""], &["events"], &["create", "patch"])
}

async fn start(
    runtime: &Runtime,
    example: &str,
    name: &str,
    grant: Vec<Rule>,
) -> RunningController {
    let loaded = engine()
        .load(&guest(example), LoadOptions::default().name(name))
        .expect("the guest loads");
    runtime
        .start(ControllerConfig {
            guest: loaded,
            grant: Grant::new(grant),
            namespaces: Vec::new(),
            concurrency: 2,
            queue: QueueConfig::default(),
            resync: None,
            tenant: None,
            service_account: None,
            observe: Default::default(),
        })
        .await
        .expect("the controller starts")
}

fn floor_grant() -> Vec<Rule> {
    vec![
        rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
        rule(&["apps"], &["deployments/scale"], &["patch"]),
        events_rule(),
    ]
}

fn deployment(name: &str, replicas: i32, annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

async fn replicas(api: &Api<Deployment>, name: &str) -> Option<i32> {
    api.get_opt(name).await.ok().flatten()?.spec?.replicas
}

async fn events_with_reason(client: &kube::Client, namespace: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_floor_scales_deployments_through_the_api() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let controller = start(&runtime, "replica-floor", "replica-floor", floor_grant()).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let annotated = deployment("web", 1, json!({"paddock.dev/min-replicas": "3"}));
    deployments
        .create(&PostParams::default(), &annotated)
        .await
        .expect("create");
    let plain = deployment("plain", 1, json!({}));
    deployments
        .create(&PostParams::default(), &plain)
        .await
        .expect("create");

    eventually(10, "web to be scaled to 3", || async {
        (replicas(&deployments, "web").await == Some(3)).then_some(())
    })
    .await;
    let scaled = eventually(10, "a ScaledUp event", || async {
        let events = events_with_reason(&client, "default", "ScaledUp").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(scaled[0].involved_object.name.as_deref(), Some("web"));
    assert_eq!(scaled[0].type_.as_deref(), Some("Normal"));
    assert_eq!(
        replicas(&deployments, "plain").await,
        Some(1),
        "unannotated is left alone"
    );
    assert_eq!(ControllerStats::get(&controller.stats().denied), 0);
    drop(controller);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_guests_share_one_watch_per_resource() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let first = start(&runtime, "replica-floor", "floor-a", floor_grant()).await;
    let second = start(&runtime, "replica-floor", "floor-b", floor_grant()).await;
    let mut policy_grant = vec![
        rule(
            &["apps"],
            &["deployments"],
            &["get", "list", "watch", "patch"],
        ),
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
    ];
    policy_grant.push(events_rule());
    let third = start(&runtime, "label-policy", "label-policy", policy_grant).await;

    // An informer opens its watch right after its first list: wait for both
    // watches to be open before counting.
    eventually(
        10,
        "the Deployment and Namespace watches to open",
        || async {
            (cluster.watches_open("apps", "deployments") >= 1
                && cluster.watches_open("", "namespaces") >= 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        cluster.watches_opened("apps", "deployments"),
        1,
        "one watch for three guests"
    );
    assert_eq!(
        cluster.requests("list", "apps", "deployments"),
        1,
        "one list for three guests"
    );
    assert_eq!(cluster.watches_opened("", "namespaces"), 1);

    // All three still act on the same objects.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let annotated = deployment("shared", 1, json!({"paddock.dev/min-replicas": "2"}));
    deployments
        .create(&PostParams::default(), &annotated)
        .await
        .expect("create");
    eventually(10, "the shared deployment to be scaled", || async {
        (replicas(&deployments, "shared").await == Some(2)).then_some(())
    })
    .await;
    drop((first, second, third));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_policy_follows_namespace_changes_through_map() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let grant = vec![
        rule(
            &["apps"],
            &["deployments"],
            &["get", "list", "watch", "patch"],
        ),
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
        events_rule(),
    ];
    let controller = start(&runtime, "label-policy", "label-policy", grant).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let plain = deployment("checkout", 1, json!({}));
    deployments
        .create(&PostParams::default(), &plain)
        .await
        .expect("create");

    // The policy arrives after the Deployment: the Namespace watch is mapped
    // to the Deployments in it.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let policy = json!({"metadata": {"annotations": {"paddock.dev/required-labels": "cost-center=shared, team"}}});
    namespaces
        .patch("default", &PatchParams::default(), &Patch::Merge(&policy))
        .await
        .expect("annotate the namespace");

    let labels = eventually(10, "the default label to be patched on", || async {
        let labels = deployments.get("checkout").await.ok()?.metadata.labels?;
        labels.contains_key("cost-center").then_some(labels)
    })
    .await;
    assert_eq!(
        labels.get("cost-center").map(String::as_str),
        Some("shared")
    );
    let warnings = eventually(10, "a warning about the label without default", || async {
        let events = events_with_reason(&client, "default", "MissingRequiredLabels").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert!(
        warnings[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("team")
    );
    drop(controller);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_operator_runs_an_app_and_reports_ready() {
    let (cluster, client) = cluster().await;
    paddock_tests::apply_app_crd(&client).await;

    // The controller starts after the CRD exists: discovery finds the new kind.
    let runtime = Runtime::new(client.clone());
    let grant = vec![
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
        events_rule(),
    ];
    let controller = start(&runtime, "app-operator", "app-operator", grant).await;

    let app_resource = paddock_tests::app_resource();
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &app_resource);
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "examples.paddock.dev/v1",
        "kind": "App",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {"image": "registry.example.com/hello:1.0.0", "replicas": 2, "port": 8080}
    }))
    .expect("an App");
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create the App");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created = eventually(10, "the App's Deployment", || async {
        deployments.get_opt("hello").await.ok().flatten()
    })
    .await;
    let owner = &created.metadata.owner_references.expect("owned")[0];
    assert_eq!(owner.kind, "App");
    assert_eq!(owner.controller, Some(true));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    eventually(10, "the App's Service", || async {
        services.get_opt("hello").await.ok().flatten()
    })
    .await;

    // The workload simulator makes the Deployment ready; the owned watch
    // reconciles the App, which reports it.
    let status = eventually(15, "the App to report Ready", || async {
        let app = apps.get("hello").await.ok()?;
        let status = app.data.get("status")?.clone();
        (status["conditions"][0]["status"] == "True").then_some(status)
    })
    .await;
    assert_eq!(status["readyReplicas"], 2);
    assert_eq!(status["conditions"][0]["reason"], "AllReplicasReady");
    drop(controller);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_reads_beyond_the_grant_are_refused_with_the_missing_rule() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client);
    let refused = |name: &str, grant: Vec<Rule>| {
        let config = ControllerConfig {
            guest: engine()
                .load(&guest(name), LoadOptions::default())
                .expect("loads"),
            grant: Grant::new(grant),
            namespaces: Vec::new(),
            concurrency: 1,
            queue: QueueConfig::default(),
            resync: None,
            tenant: None,
            service_account: None,
            observe: Default::default(),
        };
        let runtime = runtime.clone();
        async move { runtime.start(config).await.expect_err("beyond the grant") }
    };
    let error = refused(
        "replica-floor",
        vec![rule(&["apps"], &["deployments"], &["list"])],
    )
    .await;
    assert!(matches!(error, StartError::Grant { .. }), "{error:?}");
    let cause = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        cause.contains("verb `watch` on resource `deployments`"),
        "{cause}"
    );

    // The same for a kind it reads without watching it: the tenant guest
    // reads Secrets, which its grant must let it get or list.
    let error = refused(
        "tenant",
        vec![
            rule(&[""], &["configmaps"], &["get", "list", "watch"]),
            rule(&[""], &["secrets"], &["watch"]),
        ],
    )
    .await;
    assert!(matches!(error, StartError::ReadGrant { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("reads Secret (v1) beyond its grant, which allows neither `get` nor `list`"),
        "{error}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_action_is_not_performed_and_is_reported() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    // No right to patch deployments/scale.
    let grant = vec![
        rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
        events_rule(),
    ];
    let controller = start(&runtime, "replica-floor", "replica-floor", grant).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let annotated = deployment("web", 1, json!({"paddock.dev/min-replicas": "3"}));
    deployments
        .create(&PostParams::default(), &annotated)
        .await
        .expect("create");

    let denied = eventually(10, "an ActionDenied warning", || async {
        let events = events_with_reason(&client, "default", "ActionDenied").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    let message = denied[0].message.clone().unwrap_or_default();
    assert!(message.contains("deployments/scale"), "{message}");
    assert_eq!(denied[0].type_.as_deref(), Some("Warning"));
    // The warning is recorded while the actions are refused, the count once they return.
    eventually(10, "the denial counted", || async {
        (ControllerStats::get(&controller.stats().denied) >= 1).then_some(())
    })
    .await;
    assert_eq!(
        replicas(&deployments, "web").await,
        Some(1),
        "the scale was not performed"
    );
    assert!(
        events_with_reason(&client, "default", "ScaledUp")
            .await
            .is_empty(),
        "no action of the denied reconcile was performed"
    );
    let _ = Duration::ZERO;
    drop(controller);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_reads_are_narrowed_to_the_grant() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    // Namespaces may be watched (for map) but not read with `get`.
    let grant = vec![
        rule(
            &["apps"],
            &["deployments"],
            &["get", "list", "watch", "patch"],
        ),
        rule(&[""], &["namespaces"], &["list", "watch"]),
        events_rule(),
    ];
    let controller = start(&runtime, "label-policy", "label-policy", grant).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let policy =
        json!({"metadata": {"annotations": {"paddock.dev/required-labels": "cost-center=shared"}}});
    namespaces
        .patch("default", &PatchParams::default(), &Patch::Merge(&policy))
        .await
        .expect("annotate the namespace");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("blind", 1, json!({})))
        .await
        .expect("create");

    // The guest cannot see the Namespace, so it cannot apply the policy.
    eventually(
        10,
        "the guest to fail for lack of the Namespace",
        || async { (ControllerStats::get(&controller.stats().guest_errors) >= 2).then_some(()) },
    )
    .await;
    let labels = deployments
        .get("blind")
        .await
        .expect("get")
        .metadata
        .labels
        .unwrap_or_default();
    assert!(!labels.contains_key("cost-center"), "{labels:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_requeue_a_cluster_scoped_owner_and_a_failed_map_is_retried() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let grant = vec![
        rule(&[""], &["namespaces"], &["get", "list", "watch"]),
        rule(&[""], &["configmaps"], &["get", "list", "watch", "patch"]),
        rule(&[""], &["secrets"], &["get", "list", "watch"]),
        events_rule(),
    ];
    let controller = start(&runtime, "keeper", "keeper", grant).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let kept: Namespace = serde_json::from_value(
        json!({"metadata": {"name": "kept", "labels": {"keeper.paddock.dev/keep": "yes"}}}),
    )
    .expect("a Namespace");
    namespaces
        .create(&PostParams::default(), &kept)
        .await
        .expect("create the namespace");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "kept");
    let keeper_data = |key: &'static str, want: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            let data = configmaps.get_opt("keeper").await.ok().flatten()?.data?;
            (data.get(key).map(String::as_str) == Some(want)).then_some(())
        }
    };
    eventually(20, "the Namespace's ConfigMap", || {
        keeper_data("owner", "kept")
    })
    .await;
    let unlabelled: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert!(
        unlabelled.get_opt("keeper").await.expect("get").is_none(),
        "a Namespace outside the watch's label selector is not reconciled"
    );

    // A change to the child must reconcile its cluster-scoped owner, whose
    // queue key has no namespace.
    eventually(20, "the child's creation to be reconciled", || async {
        controller.is_idle().then_some(())
    })
    .await;
    let before_tamper = ControllerStats::get(&controller.stats().reconciles);
    let tamper = json!({"data": {"owner": "tampered"}});
    configmaps
        .patch("keeper", &PatchParams::default(), &Patch::Merge(&tamper))
        .await
        .expect("tamper with the child");
    eventually(20, "the owner to restore its child", || {
        keeper_data("owner", "kept")
    })
    .await;
    // The restore changes the child once more, which reconciles the owner once more: let
    // that settle before a Secret exists, or it would count the Secret. Idle alone is not
    // enough: the restore's watch event may not have arrived yet. The tamper and the
    // restore's own event are two reconciles.
    eventually(20, "the restore's own event to be reconciled", || async {
        let reconciles = ControllerStats::get(&controller.stats().reconciles);
        (reconciles >= before_tamper + 2 && controller.is_idle()).then_some(())
    })
    .await;

    // The map of a new Secret traps until a ConfigMap `gate` exists.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "kept");
    let secret = serde_json::from_value(json!({"metadata": {"name": "s1"}})).expect("a Secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
    let error = eventually(20, "the failed map to be counted and recorded", || async {
        let handle = controller.handle();
        let error = handle.last_error()?;
        (ControllerStats::get(&controller.stats().map_errors) >= 1).then_some(error)
    })
    .await;
    assert!(
        error.message.contains("map of Secret kept/s1 failed"),
        "{}",
        error.message
    );
    assert!(
        ControllerStats::get(&controller.stats().guest_errors_by_kind[4]) >= 1,
        "the trap is counted among the guest errors"
    );
    assert!(
        keeper_data("secrets", "0").await.is_some(),
        "nothing reconciled the Namespace for the Secret yet"
    );

    // Nothing about the Secret changes: only a retried map queues the
    // Namespace once the gate exists.
    let gate = serde_json::from_value(json!({"metadata": {"name": "gate"}})).expect("a ConfigMap");
    configmaps
        .create(&PostParams::default(), &gate)
        .await
        .expect("create the gate");
    eventually(30, "the retried map to reconcile the Namespace", || {
        keeper_data("secrets", "1")
    })
    .await;

    // A deletion reaches the guest as `deleted`, with the last state.
    namespaces
        .delete("kept", &Default::default())
        .await
        .expect("delete the namespace");
    eventually(30, "the guest to see the deletion", || async {
        let events = events_with_reason(&client, "default", "Forgotten").await;
        events
            .iter()
            .any(|event| event.involved_object.name.as_deref() == Some("kept"))
            .then_some(())
    })
    .await;
    cluster.shutdown().await;
}

/// A controller of the `tenant` guest named `name`, operator-declared, with
/// `event_verbs` on events.
async fn tenant(runtime: &Runtime, name: &str, event_verbs: &[&str]) -> RunningController {
    let grant = vec![
        rule(&[""], &["configmaps"], &["get", "list", "watch"]),
        rule(&[""], &["secrets"], &["get"]),
        rule(&["events.k8s.io"], &["events"], event_verbs),
    ];
    start(runtime, "tenant", name, grant).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_object_by_uid_and_count_repeats_per_guest() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let first = tenant(&runtime, "tenant-a", &["create", "patch"]).await;
    let second = tenant(&runtime, "tenant-b", &["create", "patch"]).await;
    // Recording a repeat patches the event: `create` alone is not enough.
    let create_only = tenant(&runtime, "tenant-c", &["create"]).await;

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let watched: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "watched", "annotations": {"paddock.dev/tenant-mode": "read-secret"}},
        "data": {"value": "1"},
    }))
    .expect("a ConfigMap");
    let uid = configmaps
        .create(&PostParams::default(), &watched)
        .await
        .expect("create")
        .metadata
        .uid
        .expect("a uid");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let read_events = || async {
        let mut found: Vec<_> = events
            .list(&ListParams::default())
            .await
            .map(|list| list.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|event| event.reason.as_deref() == Some("SecretRead"))
            .collect();
        found.sort_by(|a, b| a.reporting_controller.cmp(&b.reporting_controller));
        found
    };
    eventually(20, "one event of each guest allowed to record", || async {
        (read_events().await.len() == 2).then_some(())
    })
    .await;

    // A second reconcile records the same event again: each guest counts
    // the repeat in its own event's series.
    let change = json!({"data": {"value": "2"}});
    configmaps
        .patch("watched", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("change the ConfigMap");
    let recorded = eventually(20, "each guest to count its repeat", || async {
        let found = read_events().await;
        let counted = found.len() == 2
            && found
                .iter()
                .all(|event| event.series.as_ref().map(|series| series.count) == Some(2));
        counted.then_some(found)
    })
    .await;
    let controllers: Vec<_> = recorded
        .iter()
        .map(|event| event.reporting_controller.clone().unwrap_or_default())
        .collect();
    assert_eq!(controllers, ["paddock-tenant-a", "paddock-tenant-b"]);
    for event in &recorded {
        let regarding = event.regarding.as_ref().expect("a regarding object");
        assert_eq!(regarding.uid.as_deref(), Some(uid.as_str()));
        assert_eq!(regarding.kind.as_deref(), Some("ConfigMap"));
        assert!(
            event
                .reporting_instance
                .as_deref()
                .is_some_and(|instance| !instance.is_empty()),
            "a reporting instance"
        );
    }
    let denied = eventually(20, "tenant-c's event to be denied", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|event| {
                event.reason.as_deref() == Some("ActionDenied")
                    && event.reporting_controller.as_deref() == Some("paddock-tenant-c")
                    && event
                        .regarding
                        .as_ref()
                        .is_some_and(|regarding| regarding.name.as_deref() == Some("watched"))
            })
    })
    .await;
    let note = denied.note.unwrap_or_default();
    assert!(
        note.contains("verb `patch` on resource `events` in API group events.k8s.io"),
        "recording an event needs `patch` as well as `create`: {note}"
    );
    eventually(10, "tenant-c's denial counted", || async {
        (ControllerStats::get(&create_only.stats().denied) >= 1).then_some(())
    })
    .await;

    // kubectl finds the events of an object by its uid.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.kubeconfig_yaml()).expect("write the kubeconfig");
    let described = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["describe", "configmap", "watched", "-n", "default"])
        .output()
        .expect("kubectl runs (it is on PATH in CI)");
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(described.status.success(), "{text}");
    assert!(
        text.contains("SecretRead") && text.contains("paddock-tenant-a"),
        "kubectl describe shows the guest's events:\n{text}"
    );
    drop((first, second, create_only));
    cluster.shutdown().await;
}

/// 20 Deployments asking for 3 replicas, and `replica_floor` started
/// behind a closed fence, as a standby: every key queued, none taken.
struct Standby {
    cluster: devcluster::DevCluster,
    deployments: Api<Deployment>,
    names: Vec<String>,
    fence: paddock::replication::Fence,
    controller: RunningController,
}

async fn standby() -> Standby {
    let (cluster, client) = cluster().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    for name in &names {
        let floor = deployment(name, 1, json!({"paddock.dev/min-replicas": "3"}));
        deployments
            .create(&PostParams::default(), &floor)
            .await
            .expect("create");
    }
    let fence = paddock::replication::Fence::closed();
    let runtime = Runtime::new(client).with_fence(fence.clone());
    let controller = start(&runtime, "replica-floor", "floor", floor_grant()).await;
    eventually(10, "every key queued", || async {
        (controller.queue_depth() == names.len()).then_some(())
    })
    .await;
    assert_eq!(ControllerStats::get(&controller.stats().reconciles), 0);
    Standby {
        cluster,
        deployments,
        names,
        fence,
        controller,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_fence_holds_every_key_and_a_shard_lets_only_its_own_through() {
    use paddock::replication::Shard;
    let Standby {
        cluster,
        deployments,
        names,
        fence,
        controller,
    } = standby().await;

    // Open on a share of two members: only this host's keys are worked.
    let shard = Shard::new("me", ["me".to_owned(), "other".to_owned()]);
    let (mine, theirs): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|name| shard.owns("default", name));
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "{mine:?} {theirs:?}"
    );
    fence.set_shard(Some(shard));
    fence.open_until(std::time::Instant::now() + Duration::from_secs(600));
    eventually(10, "this host's share scaled", || async {
        for name in &mine {
            (replicas(&deployments, name).await == Some(3)).then_some(())?;
        }
        controller.is_idle().then_some(())
    })
    .await;
    for name in &theirs {
        assert_eq!(
            replicas(&deployments, name).await,
            Some(1),
            "{name} is another member's"
        );
    }

    // Closed again: a change waits in the queue, nothing is written.
    fence.close();
    let reconciles = ControllerStats::get(&controller.stats().reconciles);
    deployments
        .patch(
            mine[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"paddock.dev/min-replicas": "5"}}})),
        )
        .await
        .expect("patch");
    eventually(10, "the change queued", || async {
        (controller.queue_depth() == 1).then_some(())
    })
    .await;
    assert_eq!(
        ControllerStats::get(&controller.stats().reconciles),
        reconciles
    );
    assert_eq!(replicas(&deployments, mine[0]).await, Some(3));
    drop(controller);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_reconciles_every_key_still_queued_before_it_stops() {
    // Held at a closed fence, every key is still queued when the shutdown
    // begins; the fence opens as it drains.
    let Standby {
        cluster,
        deployments,
        names,
        fence,
        controller,
    } = standby().await;
    let stopping = tokio::spawn(controller.shutdown(Duration::from_secs(30)));
    fence.open_until(std::time::Instant::now() + Duration::from_secs(600));
    stopping.await.expect("the shutdown ends");
    for name in &names {
        assert_eq!(
            replicas(&deployments, name).await,
            Some(3),
            "{name} was queued when the shutdown began"
        );
    }
    cluster.shutdown().await;
}

/// A guest that declares a projection is handed only its fields (and the
/// identity every projection keeps), in `reconcile` and in every cache
/// read, and reads nothing else of the objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_narrows_what_the_guest_is_handed() {
    let (cluster, client) = cluster().await;
    let runtime = Runtime::new(client.clone());
    let grant = vec![rule(
        &[""],
        &["configmaps"],
        &["get", "list", "watch", "patch"],
    )];
    let controller = start(&runtime, "seen", "seen", grant).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["other", "probe"] {
        let config_map = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"seen": "probe"},
                         "annotations": {"note": "not read"}},
            "data": {"keep": format!("{name}-kept"), "drop": "not read"},
        }))
        .expect("a ConfigMap");
        config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .expect("create");
    }
    // `other` may reach the cache after `probe` is reconciled: touch the
    // probe until the guest's answer has seen both.
    let seen = eventually(10, "the guest to write down what it saw", || async {
        let seen = config_maps.get_opt("probe-seen").await.ok().flatten()?;
        let data = seen.data?;
        if data.get("cached").is_none_or(String::is_empty) {
            let touch = json!({"metadata": {"annotations": {"touched": format!("{:?}", std::time::Instant::now())}}});
            config_maps
                .patch("probe", &PatchParams::default(), &Patch::Merge(&touch))
                .await
                .ok()?;
            return None;
        }
        Some(data)
    })
    .await;
    let parse = |field: &str| -> serde_json::Value {
        serde_json::from_str(&seen[field]).unwrap_or_else(|error| panic!("{field}: {error}"))
    };
    let object = parse("object");
    let cached = parse("cached");
    for (what, handed, name) in [
        ("reconcile", &object, "probe"),
        ("cache.get", &cached, "other"),
    ] {
        assert_eq!(
            handed["data"],
            json!({"keep": format!("{name}-kept")}),
            "{what}: {handed}"
        );
        assert_eq!(handed["metadata"]["name"], name, "{what}: {handed}");
        assert_eq!(
            handed["metadata"]["namespace"], "default",
            "{what}: {handed}"
        );
        assert!(handed["metadata"]["uid"].is_string(), "{what}: {handed}");
        assert!(
            handed["metadata"]["resourceVersion"].is_string(),
            "{what}: {handed}"
        );
        assert_eq!(
            (handed["apiVersion"].as_str(), handed["kind"].as_str()),
            (Some("v1"), Some("ConfigMap"))
        );
        for absent in ["labels", "annotations", "creationTimestamp"] {
            assert!(
                handed["metadata"].get(absent).is_none(),
                "{what} handed `{absent}`: {handed}"
            );
        }
    }
    let listed = parse("listed");
    let listed = listed.as_array().expect("a list");
    let names: Vec<&str> = listed
        .iter()
        .filter_map(|handed| handed["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"other") && names.contains(&"probe"),
        "{listed:?}"
    );
    // Every ConfigMap listed (the cluster's `kube-root-ca.crt` too) is
    // narrowed: `keep` where it has one, no other data, no labels.
    assert!(
        listed.iter().all(|handed| {
            handed["data"]
                .as_object()
                .is_none_or(|data| data.keys().all(|key| key == "keep"))
                && handed["metadata"].get("labels").is_none()
        }),
        "cache.list handed more than the projection: {listed:?}"
    );
    // The whole objects are untouched in the cluster.
    let probe = config_maps.get("probe").await.expect("the probe");
    assert_eq!(probe.data.expect("data")["drop"], "not read");
    drop(controller);
    cluster.shutdown().await;
}
