//! Controllers declared as `WasmController` resources on the embedded
//! cluster: a module in a ConfigMap runs and is swapped when the ConfigMap
//! changes; removing the resource stops the guest; and a tenant's guest
//! stays inside its namespace whatever it tries, while a well-behaved
//! tenant beside it keeps its latency. Tenants' controllers act as a
//! ServiceAccount of their namespace, whose RBAC bounds them.

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use paddock::controller::{ControllerStats, Runtime};
use paddock::crd::{ClusterWasmController, WasmController};
use paddock::reload::cluster::{self, TenantLimits};
use paddock::reload::{Phase, Supervisor};
use paddock::wasm::compile_cache::digest;
use paddock_tests::{cluster, engine, eventually, guest, status_where};
use serde_json::{Value, json};

const WAIT: u64 = 60;

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("a built guest")
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn install_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [WasmController::crd(), ClusterWasmController::crd()] {
        api.create(&PostParams::default(), &crd)
            .await
            .expect("the definition is accepted");
    }
}

/// The ServiceAccount tenants' controllers act as in these tests, as
/// `--tenant-default-service-account` names it: bound to `edit` in each
/// namespace [`namespace`] creates.
const TENANT_ACCOUNT: &str = "paddock-tenant";

/// A namespace, with the ServiceAccount [`TENANT_ACCOUNT`] bound to the
/// ClusterRole `edit` in it.
async fn namespace(client: &kube::Client, name: &str) {
    bare_namespace(client, name).await;
    account_bound_to(client, name, TENANT_ACCOUNT, "edit").await;
}

async fn bare_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace"),
    )
    .await
    .expect("create the namespace");
}

/// The ServiceAccount `account` in `namespace`, bound to the ClusterRole
/// `role` there.
async fn account_bound_to(client: &kube::Client, namespace: &str, account: &str, role: &str) {
    create::<ServiceAccount>(client, namespace, json!({"metadata": {"name": account}})).await;
    bind(client, namespace, account, role).await;
}

async fn bind(client: &kube::Client, namespace: &str, account: &str, role: &str) {
    create::<RoleBinding>(
        client,
        namespace,
        json!({
            "metadata": {"name": format!("{account}-{role}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "namespace": namespace, "name": account}],
        }),
    )
    .await;
}

async fn create<K>(client: &kube::Client, namespace: &str, object: Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).expect("an object"),
    )
    .await
    .expect("create");
}

struct Host {
    supervisor: Supervisor,
    _source: cluster::ClusterSource,
}

/// A host following the cluster's controller resources; tenants'
/// controllers that name no ServiceAccount act as [`TENANT_ACCOUNT`].
fn host(client: &kube::Client, tenant: TenantLimits) -> Host {
    let tenant = TenantLimits {
        default_service_account: Some(TENANT_ACCOUNT.to_owned()),
        ..tenant
    };
    host_with(client, tenant)
}

fn host_with(client: &kube::Client, tenant: TenantLimits) -> Host {
    let supervisor = Supervisor::new(engine(), Runtime::new(client.clone()));
    let source = cluster::watch(supervisor.clone(), client.clone(), tenant);
    Host {
        supervisor,
        _source: source,
    }
}

fn stamp_grant() -> Value {
    json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// The `version` stamp of a ConfigMap, once it carries its current value.
async fn stamp_of(api: &Api<ConfigMap>, name: &str) -> Option<String> {
    let map = api.get(name).await.ok()?;
    let annotations = map.metadata.annotations.unwrap_or_default();
    let value = map.data.unwrap_or_default().get("value").cloned();
    (annotations.get("stamp.paddock.dev/value") == value.as_ref())
        .then(|| annotations.get("stamp.paddock.dev/version").cloned())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_controller_runs_its_configmap_module_and_follows_its_changes() {
    let (_cluster, client) = cluster().await;
    install_crds(&client).await;
    namespace(&client, "team-a").await;
    account_bound_to(&client, "team-a", "stamp", "edit").await;
    let v1 = bytes("stamp-v1");
    let v2 = bytes("stamp-v2");
    create::<ConfigMap>(
        &client,
        "team-a",
        json!({"metadata": {"name": "stamp-module"}, "binaryData": {"module.wasm": base64(&v1)}}),
    )
    .await;
    let resources: Api<WasmController> = Api::namespaced(client.clone(), "team-a");
    resources
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "paddock.dev/v1alpha1",
                "kind": "WasmController",
                "metadata": {"name": "stamp"},
                "spec": {
                    "serviceAccountName": "stamp",
                    "module": {"configMap": {"name": "stamp-module", "key": "module.wasm"}},
                    "grant": stamp_grant(),
                },
            }))
            .expect("a WasmController"),
        )
        .await
        .expect("create the WasmController");
    for (namespace, name) in [("team-a", "mine"), ("default", "theirs")] {
        create::<ConfigMap>(
            &client,
            namespace,
            json!({"metadata": {"name": name, "labels": {"paddock.dev/stamp": "yes"}}, "data": {"value": "1"}}),
        )
        .await;
    }
    let host = host(&client, TenantLimits::default());

    // (Statuses are not kept: one holds its running controller.)
    let serving = status_where(
        host.supervisor.board(),
        "team-a/stamp",
        "the WasmController running",
        |status| status.phase == Phase::Running,
    )
    .await
    .digest;
    assert_eq!(serving.as_deref(), Some(digest(&v1).as_str()));
    let mine: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    eventually(WAIT, "team-a/mine stamped by v1", || async {
        (stamp_of(&mine, "mine").await.as_deref() == Some("stamp-v1")).then_some(())
    })
    .await;
    let resource = eventually(WAIT, "the status written", || async {
        let resource = resources.get("stamp").await.ok()?;
        let status = resource.status.clone()?;
        (status.module_digest.as_deref() == Some(digest(&v1).as_str())).then_some(status)
    })
    .await;
    let ready = resource
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Serving")
    );
    assert_eq!(resource.observed_generation, Some(1));
    let theirs: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let untouched = theirs.get("theirs").await.expect("theirs");
    assert!(
        !untouched
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("stamp.paddock.dev/version"),
        "a tenant's controller never sees another namespace"
    );

    // A new module in the ConfigMap swaps the guest.
    mine.patch(
        "stamp-module",
        &PatchParams::default(),
        &Patch::Merge(json!({"binaryData": {"module.wasm": base64(&v2)}})),
    )
    .await
    .expect("update the module");
    mine.patch(
        "mine",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": "2"}})),
    )
    .await
    .expect("update mine");
    let reloads = status_where(
        host.supervisor.board(),
        "team-a/stamp",
        "v2 serving",
        |status| status.digest.as_deref() == Some(digest(&v2).as_str()),
    )
    .await
    .reloads;
    assert_eq!(reloads, 1);
    eventually(WAIT, "team-a/mine stamped by v2", || async {
        (stamp_of(&mine, "mine").await.as_deref() == Some("stamp-v2")).then_some(())
    })
    .await;
    eventually(WAIT, "the status shows v2", || async {
        let status = resources.get("stamp").await.ok()?.status?;
        (status.module_digest.as_deref() == Some(digest(&v2).as_str())).then_some(())
    })
    .await;

    // A broken module leaves v2 serving, and the resource says why.
    mine.patch(
        "stamp-module",
        &PatchParams::default(),
        &Patch::Merge(json!({"binaryData": {"module.wasm": base64(b"not a component")}})),
    )
    .await
    .expect("break the module");
    let degraded = eventually(WAIT, "Degraded in the status", || async {
        let status = resources.get("stamp").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|condition| condition.type_ == "Degraded" && condition.status == "True")
    })
    .await;
    assert_eq!(degraded.reason, "NewVersionRefused");
    assert!(
        degraded
            .message
            .contains("ConfigMap team-a/stamp-module key module.wasm"),
        "{}",
        degraded.message
    );
    let serving = host
        .supervisor
        .board()
        .get("team-a/stamp")
        .and_then(|status| status.digest);
    assert_eq!(serving.as_deref(), Some(digest(&v2).as_str()));

    // Deleting the resource stops the guest and releases its informer.
    resources
        .delete("stamp", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(WAIT, "the guest stopped", || async {
        host.supervisor
            .board()
            .get("team-a/stamp")
            .is_none()
            .then_some(())
    })
    .await;
    let informers = host.supervisor.runtime().informers().clone();
    eventually(WAIT, "team-a's ConfigMap informer released", || async {
        informers
            .all()
            .iter()
            .all(|informer| informer.namespace() != Some("team-a"))
            .then_some(())
    })
    .await;
    host.supervisor.shutdown().await;
}

fn tenant_resource(name: &str, module: &str, extra: Value) -> WasmController {
    let mut spec = json!({
        "module": {"inline": module},
        "grant": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]},
            {"apiGroups": ["paddock.dev"], "resources": ["wasmcontrollers", "wasmcontrollers/status"], "verbs": ["get", "update", "patch"]},
        ],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "WasmController",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a WasmController")
}

/// The messages of the events regarding one object, by reason.
async fn events(client: &kube::Client, namespace: &str, object: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|event| event.involved_object.name.as_deref() == Some(object))
        .map(|event| {
            (
                event.reason.unwrap_or_default(),
                event.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// Sets `data.value` of a ConfigMap and returns how long until the good
/// tenant's guest stamped it.
async fn stamp_latency(api: &Api<ConfigMap>, value: usize) -> Duration {
    let started = Instant::now();
    api.patch(
        "probe",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": value.to_string()}})),
    )
    .await
    .expect("update the probe");
    eventually(WAIT, "the good tenant stamps the probe", || async {
        let map = api.get("probe").await.ok()?;
        (map.metadata.annotations?.get("tenant.paddock.dev/seen")? == &value.to_string())
            .then_some(())
    })
    .await;
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_stays_inside_its_namespace_and_cannot_starve_its_neighbour() {
    let (_cluster, client) = cluster().await;
    install_crds(&client).await;
    for name in ["team-a", "team-b", "team-c"] {
        namespace(&client, name).await;
    }
    create::<Secret>(
        &client,
        "team-b",
        json!({"metadata": {"name": "db"}, "stringData": {"password": "theirs"}}),
    )
    .await;
    create::<Secret>(
        &client,
        "team-a",
        json!({"metadata": {"name": "own"}, "stringData": {"password": "mine"}}),
    )
    .await;
    create::<ConfigMap>(
        &client,
        "team-b",
        json!({"metadata": {"name": "target"}, "data": {"owner": "team-b"}}),
    )
    .await;
    for team in ["team-a", "team-b"] {
        create::<Deployment>(
            &client,
            team,
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web"}]}}}}),
        )
        .await;
    }
    let host = host(
        &client,
        TenantLimits {
            max_memory_mib: 64,
            max_deadline_ms: 1000,
            max_concurrency: 2,
            ..TenantLimits::default()
        },
    );
    // Another controller of the host caches every Secret: the tenant's
    // cache reads must still stop at its namespace.
    let secrets = host
        .supervisor
        .runtime()
        .discovery()
        .resolve("v1", "Secret")
        .await
        .expect("Secrets are served");
    let all_secrets = host
        .supervisor
        .runtime()
        .informers()
        .informer(&secrets, None);
    all_secrets.wait_synced().await;

    let module = base64(&bytes("tenant"));
    let tenants: Api<WasmController> = Api::namespaced(client.clone(), "team-a");
    tenants
        .create(
            &PostParams::default(),
            &tenant_resource(
                "sly",
                &module,
                json!({"namespaces": ["team-a", "team-b"], "limits": {"concurrency": 8, "deadlineMs": 1000}}),
            ),
        )
        .await
        .expect("create the hostile tenant");
    let neighbours: Api<WasmController> = Api::namespaced(client.clone(), "team-c");
    neighbours
        .create(
            &PostParams::default(),
            &tenant_resource("good", &module, json!({})),
        )
        .await
        .expect("create the good tenant");
    let status = status_where(
        host.supervisor.board(),
        "team-a/sly",
        "the hostile tenant running",
        |status| status.phase == Phase::Running,
    )
    .await;
    let cut = status.cut.join("\n");
    assert!(cut.contains("spec.namespaces: team-b"), "{cut}");
    assert!(cut.contains("cluster-scoped namespaces"), "{cut}");
    assert!(
        cut.contains("spec.limits.concurrency: 8 lowered to the host's tenant cap 2"),
        "{cut}"
    );
    let written = eventually(WAIT, "the cut in the resource status", || async {
        let status = tenants.get("sly").await.ok()?.status?;
        (!status.cut.is_empty()).then_some(status)
    })
    .await;
    assert_eq!(written.cut, status.cut);
    status_where(
        host.supervisor.board(),
        "team-c/good",
        "the good tenant running",
        |status| status.phase == Phase::Running,
    )
    .await;

    // The good tenant's latency alone.
    let probes: Api<ConfigMap> = Api::namespaced(client.clone(), "team-c");
    probes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "probe"}, "data": {"value": "0"}}))
                .expect("probe"),
        )
        .await
        .expect("create the probe");
    let mut alone = Vec::new();
    for value in 1..=10 {
        alone.push(stamp_latency(&probes, value).await);
    }

    // Every escape the hostile tenant tries.
    let attempts = [
        ("own-secret", "read-secret", "team-a", "own"),
        ("their-secret", "read-secret", "team-b", "db"),
        ("their-secrets", "list-secrets", "team-b", "db"),
        ("own-indexed", "index-secrets", "team-a", "own"),
        ("their-indexed", "index-secrets", "team-b", "db"),
        ("all-indexed", "index-secrets", "", "db"),
        ("all-own-indexed", "index-secrets", "", "own"),
        ("create", "create-outside", "team-b", "planted"),
        ("patch", "patch-outside", "team-b", "target"),
        ("delete", "delete-outside", "team-b", "target"),
        ("scale", "scale-outside", "team-b", "web"),
        ("secret", "ungranted-kind", "team-a", "stolen"),
        ("namespace", "cluster-scoped", "team-a", "planted-namespace"),
        ("by-status", "patch-by-name", "team-a", "web/status"),
        ("by-scale", "patch-by-name", "team-a", "web/scale"),
        ("by-encoded", "patch-by-name", "team-a", "web%2Fscale"),
        ("by-dots", "patch-by-name", "team-a", ".."),
        ("forge", "forge-status", "team-a", "sly"),
    ];
    for (name, mode, target_namespace, target) in attempts {
        create::<ConfigMap>(
            &client,
            "team-a",
            json!({"metadata": {"name": name, "annotations": {"paddock.dev/tenant-mode": mode}},
                   "data": {"namespace": target_namespace, "name": target}}),
        )
        .await;
    }
    let expect_event = |object: &'static str, reason: &'static str, message: &'static str| {
        let client = client.clone();
        async move {
            eventually(WAIT, &format!("{reason} on {object}"), || async {
                events(&client, "team-a", object)
                    .await
                    .into_iter()
                    .find(|(found, text)| found == reason && text.contains(message))
            })
            .await
        }
    };
    expect_event("own-secret", "SecretRead", "seen").await;
    expect_event("their-secret", "SecretRead", "absent").await;
    expect_event("their-secrets", "SecretsListed", "0").await;
    // Its index holds its own Secrets only, whichever namespace it asks.
    expect_event("own-indexed", "SecretsIndexed", "1").await;
    expect_event("their-indexed", "SecretsIndexed", "0").await;
    expect_event("all-indexed", "SecretsIndexed", "0").await;
    expect_event("all-own-indexed", "SecretsIndexed", "1").await;
    // A Secret stored after the tenant started is indexed as it arrives.
    create::<Secret>(
        &client,
        "team-a",
        json!({"metadata": {"name": "fresh"}, "stringData": {"password": "new"}}),
    )
    .await;
    let own_secrets = host
        .supervisor
        .runtime()
        .informers()
        .informer(&secrets, Some("team-a"));
    eventually(WAIT, "the new Secret in the tenant's informer", || async {
        own_secrets.store().get("team-a", "fresh").map(|_| ())
    })
    .await;
    create::<ConfigMap>(
        &client,
        "team-a",
        json!({"metadata": {"name": "fresh-indexed", "annotations": {"paddock.dev/tenant-mode": "index-secrets"}},
               "data": {"namespace": "team-a", "name": "fresh"}}),
    )
    .await;
    expect_event("fresh-indexed", "SecretsIndexed", "1").await;
    for object in ["create", "patch", "delete", "scale", "secret", "namespace"] {
        expect_event(object, "ActionDenied", "").await;
    }
    expect_event("forge", "ActionDenied", "Paddock's own resources").await;
    let sly = host
        .supervisor
        .board()
        .get("team-a/sly")
        .and_then(|status| status.handle)
        .expect("the hostile tenant runs");
    // Each warning is recorded while its actions are refused, the count once they return.
    eventually(10, "the seven denials counted", || async {
        (ControllerStats::get(&sly.stats().denied) >= 7).then_some(())
    })
    .await;
    // A name that reaches for a subresource (or changes the path) is
    // malformed output: refused before any request is built.
    eventually(WAIT, "the four names refused as malformed", || async {
        (ControllerStats::get(&sly.stats().guest_errors_by_kind[5]) >= 4).then_some(())
    })
    .await;
    let own_web: Api<Deployment> = Api::namespaced(client.clone(), "team-a");
    let web = own_web.get("web").await.expect("web");
    assert_eq!(
        web.spec.and_then(|spec| spec.replicas),
        Some(2),
        "not scaled through `web/scale`"
    );
    assert_ne!(
        web.status.and_then(|status| status.replicas),
        Some(7),
        "status not written through `web/status`"
    );
    let own: WasmController = tenants.get("sly").await.expect("sly");
    assert_ne!(
        own.status
            .and_then(|status| status.module_digest)
            .as_deref(),
        Some("forged"),
        "the tenant cannot write its own status"
    );
    assert!(ControllerStats::get(&sly.stats().cache_denied) >= 2);
    let theirs: Api<ConfigMap> = Api::namespaced(client.clone(), "team-b");
    assert!(theirs.get_opt("planted").await.expect("get").is_none());
    let target = theirs.get("target").await.expect("target still exists");
    assert_eq!(
        target.data.unwrap_or_default().get("planted"),
        None,
        "not patched"
    );
    let web: Api<Deployment> = Api::namespaced(client.clone(), "team-b");
    assert_eq!(
        web.get("web")
            .await
            .expect("web")
            .spec
            .and_then(|spec| spec.replicas),
        Some(2)
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces
            .get_opt("planted-namespace")
            .await
            .expect("get")
            .is_none()
    );

    // Now it burns CPU on many objects at once; the neighbour keeps its
    // latency.
    for index in 0..20 {
        create::<ConfigMap>(
            &client,
            "team-a",
            json!({"metadata": {"name": format!("burn-{index}"), "annotations": {"paddock.dev/tenant-mode": "burn"}}}),
        )
        .await;
    }
    eventually(WAIT, "the burner hits its deadline", || async {
        (ControllerStats::get(&sly.stats().guest_errors_by_kind[2]) >= 1).then_some(())
    })
    .await;
    let mut burning = Vec::new();
    for value in 11..=20 {
        burning.push(stamp_latency(&probes, value).await);
    }
    let (alone, burning) = (median(alone), median(burning));
    eprintln!("good tenant's stamp latency: alone {alone:?}, beside a burning tenant {burning:?}");
    // Starved, the neighbour would wait for the burner's calls, each of
    // which runs its whole deadline (1000 ms, capped by the host's limits
    // above): a median under half of one such call, or within ten times
    // its latency alone, shows it never waited for one. Both bounds are
    // ratios of times of this run, which a loaded machine stretches alike.
    let burner_call = Duration::from_millis(1000);
    assert!(
        burning < (burner_call / 2).max(alone * 10),
        "the good tenant's median latency went from {alone:?} to {burning:?} beside a tenant whose calls run {burner_call:?} each"
    );
    // The burner kept running to its deadline (its tenant's one execution
    // slot at a time) while the neighbour was measured.
    eventually(WAIT, "the burner hitting its deadline again", || async {
        (ControllerStats::get(&sly.stats().guest_errors_by_kind[2]) >= 2).then_some(())
    })
    .await;
    host.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_runs_no_more_controllers_than_the_host_allows() {
    let (_cluster, client) = cluster().await;
    install_crds(&client).await;
    namespace(&client, "crowd").await;
    let module = base64(&bytes("tenant"));
    let resources: Api<WasmController> = Api::namespaced(client.clone(), "crowd");
    // Created in this order: `c` is the newest (or, within one second,
    // last by name).
    for name in ["a", "b", "c"] {
        resources
            .create(
                &PostParams::default(),
                &tenant_resource(name, &module, json!({})),
            )
            .await
            .expect("create");
    }
    let host = host(
        &client,
        TenantLimits {
            max_controllers_per_namespace: 2,
            ..TenantLimits::default()
        },
    );
    for name in ["crowd/a", "crowd/b"] {
        status_where(
            host.supervisor.board(),
            name,
            "within the cap, running",
            |status| status.phase == Phase::Running,
        )
        .await;
    }
    let refused = eventually(
        WAIT,
        "the third one's status says why it does not run",
        || async {
            let status = resources.get("c").await.ok()?.status?;
            let degraded = status
                .conditions
                .iter()
                .find(|condition| {
                    condition
                        .message
                        .contains("--tenant-max-controllers-per-namespace")
                })?
                .clone();
            Some(degraded)
        },
    )
    .await;
    assert!(
        refused
            .message
            .contains("namespace crowd already runs 2 WasmControllers"),
        "{refused:?}"
    );
    assert!(
        host.supervisor.board().get("crowd/c").is_none(),
        "the third one does not run"
    );
    // Removing one lets the third one run.
    resources
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete a");
    status_where(
        host.supervisor.board(),
        "crowd/c",
        "the third one running once there is room",
        |status| status.phase == Phase::Running,
    )
    .await;
    host.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_controller_acts_as_a_service_account_with_the_rights_of_its_watches() {
    let (_cluster, client) = cluster().await;
    install_crds(&client).await;
    bare_namespace(&client, "team-d").await;
    create::<ServiceAccount>(&client, "team-d", json!({"metadata": {"name": "viewer"}})).await;
    let module = base64(&bytes("tenant"));
    let resources: Api<WasmController> = Api::namespaced(client.clone(), "team-d");
    for (name, extra) in [
        ("nameless", json!({})),
        ("weak", json!({"serviceAccountName": "viewer"})),
    ] {
        resources
            .create(
                &PostParams::default(),
                &tenant_resource(name, &module, extra),
            )
            .await
            .expect("create");
    }
    // This host gives tenants no default ServiceAccount.
    let host = host_with(&client, TenantLimits::default());
    let condition = |name: &'static str, reason: &'static str| {
        let resources = resources.clone();
        async move {
            eventually(
                WAIT,
                &format!("{name}'s status to say {reason}"),
                || async {
                    let status = resources.get(name).await.ok()?.status?;
                    status
                        .conditions
                        .into_iter()
                        .find(|condition| condition.type_ == "Ready" && condition.reason == reason)
                },
            )
            .await
        }
    };
    let nameless = condition("nameless", "Failed").await;
    assert!(
        nameless
            .message
            .contains("spec.serviceAccountName: required; name a ServiceAccount in team-d"),
        "{nameless:?}"
    );
    // A ServiceAccount without the rights its watches need: refused, naming
    // it and the permission, and started once a Role grants them.
    let weak = condition("weak", "ServiceAccountLacksPermission").await;
    assert!(
        weak.message
            .contains("acts as ServiceAccount team-d/viewer, which may not list configmaps in namespace team-d"),
        "{weak:?}"
    );
    let degraded = resources
        .get("weak")
        .await
        .expect("get")
        .status
        .expect("a status")
        .conditions
        .into_iter()
        .find(|condition| condition.type_ == "Degraded")
        .expect("a Degraded condition");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ServiceAccountLacksPermission")
    );
    bind(&client, "team-d", "viewer", "edit").await;
    let running = status_where(
        host.supervisor.board(),
        "team-d/weak",
        "the controller to start once its ServiceAccount may watch",
        |status| status.phase == Phase::Running,
    )
    .await;
    assert_eq!(running.identity, "serviceaccount team-d/viewer");
    host.supervisor.shutdown().await;
}

/// A Docker config naming `user:password` for `registry`.
fn docker_config(registry: &str, user: &str, password: &str) -> String {
    let auth = base64(format!("{user}:{password}").as_bytes());
    json!({"auths": {registry: {"auth": auth}}}).to_string()
}

/// A `kubernetes.io/dockerconfigjson` Secret `name` naming `user:password`
/// for `registry`.
fn pull_secret(name: &str, registry: &str, user: &str, password: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64(docker_config(registry, user, password).as_bytes())},
    })
}

/// A Deployment asking `replica-floor` for at least `floor` replicas.
fn floor_deployment(name: &str, floor: u32) -> Value {
    json!({
        "metadata": {"name": name, "annotations": {"paddock.dev/min-replicas": floor.to_string()}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": format!("{name}:1")}]}}},
    })
}

/// A tenant's `replica-floor` controller from `image`, with `pull_secrets`.
fn floor_by_image(name: &str, image: &str, pull_secrets: &[&str]) -> WasmController {
    let secrets: Vec<Value> = pull_secrets
        .iter()
        .map(|secret| json!({"name": secret}))
        .collect();
    floor_resource(
        name,
        json!({"module": {"image": image, "imagePullSecrets": secrets}}),
    )
}

/// A tenant's `replica-floor` controller: its grant, and `spec`'s module
/// (and shadow).
fn floor_resource(name: &str, mut spec: Value) -> WasmController {
    spec["grant"] = json!([
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]);
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "WasmController",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a WasmController")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_run_python_and_javascript_controllers_from_images_with_their_pull_secrets() {
    use paddock::oci::{PullLimits, Registries, RegistryAuth};

    let options = devcluster::Options::new()
        .oci_registry_options(devcluster::OciOptions::new().basic_auth("tenants", "s3cret"));
    let (cluster, client) = paddock_tests::cluster_with(options).await;
    let registry = cluster.oci_registry().expect("a registry").host();
    install_crds(&client).await;
    let registries = Registries::new(vec![registry.clone()], PullLimits::default());
    let auth = RegistryAuth::Basic("tenants".into(), "s3cret".into());
    let mut pinned = std::collections::BTreeMap::new();
    for language in ["py", "js"] {
        let component = bytes(&format!("replica_floor_{language}"));
        assert!(
            component.len() > 1024 * 1024,
            "the {language} component is larger than a ConfigMap may hold"
        );
        let reference = format!("{registry}/examples/replica-floor-{language}:v1");
        let resolved = registries
            .push(component.clone(), &reference, &auth)
            .await
            .expect("push");
        pinned.insert(language, (reference, resolved, digest(&component)));
    }

    // Each tenant's namespace holds its pull secret and a Deployment that
    // asks for 3 replicas; team-py also declares controllers whose pulls
    // cannot succeed.
    for language in ["py", "js"] {
        let namespace_name = format!("team-{language}");
        namespace(&client, &namespace_name).await;
        create::<Secret>(
            &client,
            &namespace_name,
            pull_secret("registry", &registry, "tenants", "s3cret"),
        )
        .await;
        create::<Deployment>(&client, &namespace_name, floor_deployment("web", 3)).await;
    }
    create::<Secret>(
        &client,
        "team-py",
        pull_secret("wrong", &registry, "tenants", "guess"),
    )
    .await;
    let py: Api<WasmController> = Api::namespaced(client.clone(), "team-py");
    let js: Api<WasmController> = Api::namespaced(client.clone(), "team-js");
    let (py_image, py_resolved, py_digest) = pinned["py"].clone();
    let (js_image, js_resolved, js_digest) = pinned["js"].clone();
    for (api, resource) in [
        (&py, floor_by_image("floor", &py_image, &["registry"])),
        (&js, floor_by_image("floor", &js_image, &["registry"])),
        (&py, floor_by_image("wrong-secret", &py_image, &["wrong"])),
        (&py, floor_by_image("no-secret", &py_image, &[])),
        (
            &py,
            floor_by_image("absent-secret", &py_image, &["nowhere"]),
        ),
        (
            &py,
            floor_by_image(
                "never-pushed",
                &format!("{registry}/examples/replica-floor-py:v9"),
                &["registry"],
            ),
        ),
    ] {
        api.create(&PostParams::default(), &resource)
            .await
            .expect("create the WasmController");
    }

    // A tenant may not make the host pull from a registry the operator
    // did not list.
    py.create(
        &PostParams::default(),
        &floor_by_image(
            "elsewhere",
            "registry.internal.example:443/anything:v1",
            &["registry"],
        ),
    )
    .await
    .expect("create the WasmController");

    // The host pulls from the embedded registry over plain HTTP, and lets
    // tenants pull from it alone.
    let supervisor = Supervisor::new(engine(), Runtime::new(client.clone()));
    supervisor.set_registries(Registries::new(
        vec![registry.clone()],
        PullLimits::default(),
    ));
    let tenant = TenantLimits {
        default_service_account: Some(TENANT_ACCOUNT.to_owned()),
        registries: vec![registry.clone()],
        ..TenantLimits::default()
    };
    let _source = cluster::watch(supervisor.clone(), client.clone(), tenant);

    for (namespace_name, api, resolved, component_digest) in [
        ("team-py", &py, &py_resolved, &py_digest),
        ("team-js", &js, &js_resolved, &js_digest),
    ] {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace_name);
        eventually(
            120,
            &format!("{namespace_name}'s controller from its image to scale web to 3"),
            || async {
                let replicas = deployments.get("web").await.ok()?.spec?.replicas;
                (replicas == Some(3)).then_some(())
            },
        )
        .await;
        let status = eventually(WAIT, "the resolved image in the status", || async {
            let status = api.get("floor").await.ok()?.status?;
            status.resolved_image.is_some().then_some(status)
        })
        .await;
        assert_eq!(status.resolved_image.as_ref(), Some(resolved));
        assert_eq!(status.module_digest.as_ref(), Some(component_digest));
    }

    let elsewhere = eventually(WAIT, "elsewhere to be refused", || async {
        let status = py.get("elsewhere").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|condition| condition.type_ == "Ready" && condition.reason == "Failed")
    })
    .await;
    assert!(
        elsewhere.message.contains(
            "registry registry.internal.example:443 is not one a WasmController may pull from"
        ),
        "{elsewhere:?}"
    );

    // A new version whose pull fails leaves the serving one serving:
    // Degraded with PullFailed, the resolved image unchanged, and new work
    // still done.
    py.patch(
        "floor",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"module": {"image": format!("{registry}/examples/replica-floor-py:gone")}}})),
    )
    .await
    .expect("point floor at a tag never pushed");
    let degraded = eventually(WAIT, "floor to report the failed pull", || async {
        let status = py.get("floor").await.ok()?.status?;
        let degraded = status
            .conditions
            .iter()
            .find(|condition| condition.type_ == "Degraded" && condition.reason == "PullFailed")?
            .clone();
        Some((status, degraded))
    })
    .await;
    let (status, condition) = degraded;
    assert!(condition.message.contains("was not found"), "{condition:?}");
    assert_eq!(
        status.resolved_image.as_ref(),
        Some(&py_resolved),
        "{status:?}"
    );
    let ready = status
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "ServingPreviousVersion")
    );
    create::<Deployment>(&client, "team-py", floor_deployment("api", 2)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "team-py");
    eventually(WAIT, "the serving version to scale api to 2", || async {
        let replicas = deployments.get("api").await.ok()?.spec?.replicas;
        (replicas == Some(2)).then_some(())
    })
    .await;

    // Pulls that cannot succeed: each resource's status says why, with
    // the reason PullFailed.
    for (name, says) in [
        ("wrong-secret", "refused access"),
        ("no-secret", "refused access"),
        ("absent-secret", "Secret team-py/nowhere does not exist"),
        ("never-pushed", "was not found"),
    ] {
        let failed = eventually(WAIT, &format!("{name} to report PullFailed"), || async {
            let status = py.get(name).await.ok()?.status?;
            status
                .conditions
                .into_iter()
                .find(|condition| condition.type_ == "Ready" && condition.reason == "PullFailed")
        })
        .await;
        assert!(failed.message.contains(says), "{name}: {failed:?}");
    }
    supervisor.shutdown().await;
}

/// A tenant's `replica-floor` controller (inline) with `shadow` (a built
/// guest, inline) in its shadow.
fn floor_with_shadow(name: &str, shadow: &str) -> WasmController {
    floor_resource(
        name,
        json!({
            "module": {"inline": base64(&bytes("replica-floor"))},
            "shadow": {"module": {"inline": base64(&bytes(shadow))}},
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_shadows_a_candidate_sees_how_it_agrees_and_promotes_it() {
    let (_cluster, client) = cluster().await;
    install_crds(&client).await;
    namespace(&client, "team-s").await;
    create::<Deployment>(&client, "team-s", floor_deployment("low", 2)).await;
    create::<Deployment>(&client, "team-s", floor_deployment("high", 4)).await;
    let api: Api<WasmController> = Api::namespaced(client.clone(), "team-s");
    api.create(
        &PostParams::default(),
        &floor_with_shadow("floor", "floor-next"),
    )
    .await
    .expect("create");
    // A candidate of another primary kind cannot be compared: refused.
    api.create(
        &PostParams::default(),
        &floor_with_shadow("mismatch", "stamp-v1"),
    )
    .await
    .expect("create");
    let _host = host(&client, TenantLimits::default());

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "team-s");
    eventually(
        WAIT,
        "the live version to scale both Deployments",
        || async {
            let low = deployments.get("low").await.ok()?.spec?.replicas;
            let high = deployments.get("high").await.ok()?.spec?.replicas;
            (low == Some(2) && high == Some(4)).then_some(())
        },
    )
    .await;
    let shadow = eventually(WAIT, "the shadow's findings in the status", || async {
        let shadow = api.get("floor").await.ok()?.status?.shadow?;
        // low and high, each before and after its scale.
        (shadow.compared >= 4 && !shadow.last_differences.is_empty()).then_some(shadow)
    })
    .await;
    assert_eq!(shadow.module_digest, digest(&bytes("floor-next")));
    assert!(
        shadow.compared >= 2 && shadow.agreed < shadow.compared,
        "{shadow:?}"
    );
    assert!(
        shadow.differences.keys().all(|kind| kind == "actions"),
        "{shadow:?}"
    );
    assert!(
        shadow
            .last_differences
            .iter()
            .all(|difference| difference.object == "Deployment team-s/high"),
        "only `high` (floor 4) is scaled differently: {shadow:?}"
    );
    assert_ne!(shadow.agreement, "-");

    let refused = eventually(WAIT, "the mismatched candidate to be refused", || async {
        let status = api.get("mismatch").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|condition| condition.type_ == "Ready" && condition.reason == "Failed")
    })
    .await;
    assert!(
        refused
            .message
            .contains("the shadow candidate reconciles ConfigMap of v1, the live version Deployment of apps/v1"),
        "{refused:?}"
    );

    // Promotion, as `paddock promote` writes it: the candidate becomes the
    // module and serves; the shadow is gone from the status.
    let current = serde_json::to_value(api.get("floor").await.expect("get")).expect("json");
    let patch = paddock::crd::promotion(&current).expect("a shadow to promote");
    api.patch("floor", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .expect("promote");
    let candidate_digest = digest(&bytes("floor-next"));
    eventually(
        WAIT,
        "the candidate serving, without its shadow",
        || async {
            let status = api.get("floor").await.ok()?.status?;
            (status.module_digest.as_ref() == Some(&candidate_digest) && status.shadow.is_none())
                .then_some(())
        },
    )
    .await;
    create::<Deployment>(&client, "team-s", floor_deployment("after", 4)).await;
    eventually(WAIT, "the promoted version to scale to its cap", || async {
        (deployments.get("after").await.ok()?.spec?.replicas == Some(2)).then_some(())
    })
    .await;
}
