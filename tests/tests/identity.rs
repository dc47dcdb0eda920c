//! Controllers that act as a ServiceAccount: every API call made for them
//! impersonates it, and what the host does for them (their watches, their
//! cache reads) is authorised for it with SubjectAccessReviews. The host
//! itself runs as the cluster's admin throughout: only the ServiceAccount's
//! RBAC bounds the guest, whose grant here allows everything.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount as Account};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use paddock::controller::{ControllerConfig, Runtime, StartError};
use paddock::grants::{Grant, Rule};
use paddock::identity::ServiceAccount;
use paddock::queue::QueueConfig;
use paddock::wasm::LoadOptions;
use paddock_tests::{cluster, cluster_with, engine, eventually, guest};
use serde_json::{Value, json};

/// How long review answers are trusted in these tests.
const TTL: Duration = Duration::from_millis(200);

async fn create<K>(api: &Api<K>, object: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).expect("an object"),
    )
    .await
    .expect("create");
}

/// The ServiceAccount `name` in `namespace`, bound to the ClusterRole
/// `role` there.
async fn account_bound_to(client: &kube::Client, namespace: &str, name: &str, role: &str) {
    create(
        &Api::<Account>::namespaced(client.clone(), namespace),
        json!({"metadata": {"name": name}}),
    )
    .await;
    bind(client, namespace, name, role).await;
}

/// Binds the ClusterRole `role` to the ServiceAccount `name` in
/// `namespace`, as the RoleBinding `<name>-<role>`.
async fn bind(client: &kube::Client, namespace: &str, name: &str, role: &str) {
    create(
        &Api::<RoleBinding>::namespaced(client.clone(), namespace),
        json!({
            "metadata": {"name": format!("{name}-{role}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "namespace": namespace, "name": name}],
        }),
    )
    .await;
}

fn config_for(namespaces: &[&str], account: &ServiceAccount) -> ControllerConfig {
    ControllerConfig {
        guest: engine()
            .load(&guest("tenant"), LoadOptions::default())
            .expect("loads"),
        grant: Grant::new(vec![Rule::new(&["*"], &["*"], &["*"])]),
        namespaces: namespaces.iter().map(|ns| (*ns).to_owned()).collect(),
        concurrency: 1,
        queue: QueueConfig::default(),
        resync: None,
        tenant: None,
        service_account: Some(account.clone()),
        observe: Default::default(),
    }
}

/// The notes of the events of `reason` regarding the ConfigMap `object`.
async fn notes(client: &kube::Client, namespace: &str, object: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|events| events.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|event| {
            event.reason.as_deref() == Some(reason)
                && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
        })
        .filter_map(|event| event.note)
        .collect()
}

/// Sets a ConfigMap in team-a to the tenant guest's `mode` with `data`
/// (creating it, or changing its data so that it is reconciled again).
async fn ask(configmaps: &Api<ConfigMap>, name: &str, mode: &str, data: Value) {
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": {"paddock.dev/tenant-mode": mode}},
        "data": data,
    });
    configmaps
        .patch(
            name,
            &PatchParams::apply("identity-test").force(),
            &Patch::Apply(&body),
        )
        .await
        .expect("apply the request");
}

/// Asks the tenant guest to behave and waits for its stamp: its watch,
/// its cache and its action all work.
async fn behaves(configmaps: &Api<ConfigMap>) {
    ask(configmaps, "behave", "", json!({"value": "1"})).await;
    stamped(configmaps, "1", "the ConfigMap to be stamped").await;
}

/// Waits until the guest stamped `behave` with `value`.
async fn stamped(configmaps: &Api<ConfigMap>, value: &str, what: &str) {
    eventually(20, what, || async {
        let map = configmaps.get("behave").await.ok()?;
        let seen = map
            .metadata
            .annotations?
            .get("tenant.paddock.dev/seen")
            .cloned();
        (seen.as_deref() == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_acts_as_its_service_account_and_its_rbac_bounds_it() {
    let audit = tempfile::tempdir().expect("a folder");
    let audit_log = audit.path().join("audit.log");
    let (cluster, client) = cluster_with(devcluster::Options::new().audit_log(&audit_log)).await;
    for name in ["team-a", "team-b"] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"metadata": {"name": name}}),
        )
        .await;
    }
    account_bound_to(&client, "team-a", "tenant", "edit").await;
    let account = ServiceAccount::new("team-a", "tenant");
    let runtime = Runtime::new(client.clone()).with_review_ttl(TTL);

    // The client for it impersonates it: the API server says who it is.
    let whoami: Api<SelfSubjectReview> = Api::all(runtime.identities().client_for(Some(&account)));
    let review = whoami
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("a SelfSubjectReview");
    let user = review.status.and_then(|status| status.user_info);
    assert_eq!(
        user.as_ref().and_then(|user| user.username.as_deref()),
        Some("system:serviceaccount:team-a:tenant")
    );
    assert!(
        user.and_then(|user| user.groups)
            .unwrap_or_default()
            .contains(&"system:serviceaccounts:team-a".to_owned())
    );

    // Watches beyond its RBAC are refused at start, naming the
    // ServiceAccount and the permission: cluster-wide, or another
    // namespace.
    for namespaces in [&[][..], &["team-a", "team-b"][..]] {
        let refused = runtime
            .start(config_for(namespaces, &account))
            .await
            .expect_err("watches beyond the ServiceAccount's RBAC");
        assert!(
            matches!(refused, StartError::ServiceAccountLacksPermission { .. }),
            "{refused:?}"
        );
        let text = refused.to_string();
        assert!(text.contains("ServiceAccount team-a/tenant"), "{text}");
        assert!(text.contains("list configmaps"), "{text}");
    }

    // It declares that it reads Secrets: a ServiceAccount that may not
    // list them is refused too, although it may do all its watches need.
    create(
        &Api::<Account>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "narrow"}}),
    )
    .await;
    create(
        &Api::<Role>::namespaced(client.clone(), "team-a"),
        json!({
            "metadata": {"name": "configmaps-only"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]}],
        }),
    )
    .await;
    create(
        &Api::<RoleBinding>::namespaced(client.clone(), "team-a"),
        json!({
            "metadata": {"name": "narrow-configmaps-only"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps-only"},
            "subjects": [{"kind": "ServiceAccount", "namespace": "team-a", "name": "narrow"}],
        }),
    )
    .await;
    let refused = runtime
        .start(config_for(
            &["team-a"],
            &ServiceAccount::new("team-a", "narrow"),
        ))
        .await
        .expect_err("a read beyond the ServiceAccount's RBAC");
    let text = refused.to_string();
    assert!(
        matches!(refused, StartError::ServiceAccountLacksPermission { .. }),
        "{refused:?}"
    );
    assert!(text.contains("ServiceAccount team-a/narrow"), "{text}");
    assert!(text.contains("list secrets in namespace team-a"), "{text}");

    // Inside its namespace it runs, and its actions are performed.
    let controller = runtime
        .start(config_for(&["team-a"], &account))
        .await
        .expect("starts in its namespace");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    behaves(&configmaps).await;

    // The host caches every Secret, RoleBinding and Deployment; the guest
    // reads what it declared (Secrets) where `edit` lets it read them (its
    // namespace), and nothing else: not RoleBindings, which `edit` does not
    // let it read, nor Deployments, which `edit` does, but which it did not
    // declare. Its grant allows everything.
    let mut cached = Vec::new();
    for (api_version, kind) in [
        ("v1", "Secret"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("apps/v1", "Deployment"),
    ] {
        let resource = runtime
            .discovery()
            .resolve(api_version, kind)
            .await
            .unwrap_or_else(|error| panic!("{kind} is served: {error}"));
        cached.push(runtime.informers().informer(&resource, None));
    }
    create(
        &Api::<Secret>::namespaced(client.clone(), "team-a"),
        json!({"metadata": {"name": "own"}, "stringData": {"password": "mine"}}),
    )
    .await;
    create(
        &Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), "team-a"),
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                },
            },
        }),
    )
    .await;
    for (informer, name) in cached.iter().zip(["own", "tenant-edit", "web"]) {
        eventually(20, &format!("the host to cache {name}"), || async {
            informer.store().get("team-a", name)
        })
        .await;
    }
    for (name, api_version, kind, target, expected) in [
        ("read-own-secret", "v1", "Secret", "own", "seen"),
        (
            "read-rolebinding",
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "tenant-edit",
            "absent",
        ),
        ("read-deployment", "apps/v1", "Deployment", "web", "absent"),
    ] {
        ask(
            &configmaps,
            name,
            "read-kind",
            json!({"apiVersion": api_version, "kind": kind, "namespace": "team-a", "name": target}),
        )
        .await;
        eventually(20, &format!("{name} to be answered"), || async {
            let notes = notes(&client, "team-a", name, "ObjectRead").await;
            notes.first().cloned()
        })
        .await;
        assert_eq!(
            notes(&client, "team-a", name, "ObjectRead").await,
            vec![expected.to_owned()],
            "{name}"
        );
    }
    assert!(
        controller
            .stats()
            .cache_denied
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2,
        "the refused reads are counted"
    );

    // An escalation (a RoleBinding for itself) is refused before it is
    // sent, with the ServiceAccount and the permission in the event.
    let rolebindings: Api<RoleBinding> = Api::namespaced(client.clone(), "team-a");
    ask(
        &configmaps,
        "escalate",
        "escalate",
        json!({"name": "stolen", "subject": "tenant", "round": "1"}),
    )
    .await;
    let denial = eventually(20, "the escalation to be denied", || async {
        notes(&client, "team-a", "escalate", "ActionDenied")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        denial.contains(
            "ServiceAccount team-a/tenant may not create rolebindings.rbac.authorization.k8s.io in namespace team-a"
        ),
        "{denial}"
    );
    assert!(rolebindings.get_opt("stolen").await.expect("get").is_none());

    // A Role granted while the controller runs lets it through (RBAC
    // changes empty the reviews' cache; at the latest their expiry does),
    // without a restart...
    create(
        &Api::<Role>::namespaced(client.clone(), "team-a"),
        json!({
            "metadata": {"name": "binder"},
            "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]}],
        }),
    )
    .await;
    create(
        &rolebindings,
        json!({
            "metadata": {"name": "tenant-binder"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "binder"},
            "subjects": [{"kind": "ServiceAccount", "namespace": "team-a", "name": "tenant"}],
        }),
    )
    .await;
    let denied = || {
        controller
            .stats()
            .denied
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut round = 2;
    let created = loop {
        let before = denied();
        ask(
            &configmaps,
            "escalate",
            "escalate",
            json!({"name": "stolen", "subject": "tenant", "round": round.to_string()}),
        )
        .await;
        let created = eventually(20, &format!("round {round} to be answered"), || async {
            let created = rolebindings
                .get_opt("stolen")
                .await
                .ok()
                .flatten()
                .is_some();
            (created || denied() > before).then_some(created)
        })
        .await;
        if created || round > 50 {
            break created;
        }
        round += 1;
    };
    assert!(
        created,
        "the granted create was still denied after {round} rounds"
    );

    // ... and taking it away stops it again.
    rolebindings
        .delete("tenant-binder", &DeleteParams::default())
        .await
        .expect("take the Role away");
    let mut refused = false;
    for round in round + 1..round + 50 {
        rolebindings
            .delete("stolen", &DeleteParams::default())
            .await
            .expect("delete");
        eventually(20, "the RoleBinding to be gone", || async {
            rolebindings
                .get_opt("stolen")
                .await
                .ok()
                .and_then(|found| found.is_none().then_some(()))
        })
        .await;
        let before = denied();
        ask(
            &configmaps,
            "escalate",
            "escalate",
            json!({"name": "stolen", "subject": "tenant", "round": round.to_string()}),
        )
        .await;
        refused = eventually(20, &format!("round {round} to be answered"), || async {
            let created = rolebindings
                .get_opt("stolen")
                .await
                .ok()
                .flatten()
                .is_some();
            (created || denied() > before).then_some(!created)
        })
        .await;
        if refused {
            break;
        }
    }
    assert!(
        refused,
        "the create was still performed after the Role was taken away"
    );
    eventually(20, "the controller to settle", || async {
        controller.is_idle().then_some(())
    })
    .await;
    assert!(rolebindings.get_opt("stolen").await.expect("get").is_none());

    // Without `edit` it is no longer handed its objects; with `edit` back,
    // the object waiting meanwhile is reconciled without changing again.
    rolebindings
        .delete("tenant-edit", &DeleteParams::default())
        .await
        .expect("take edit away");
    ask(&configmaps, "behave", "", json!({"value": "2"})).await;
    eventually(20, "the reconcile to be refused", || async {
        controller
            .handle()
            .last_error()
            .filter(|error| error.message.contains("may no longer get configmaps"))
    })
    .await;
    bind(&client, "team-a", "tenant", "edit").await;
    stamped(&configmaps, "2", "the waiting object to be reconciled").await;
    drop(controller);
    cluster.shutdown().await;

    // The API server's audit log tells the guest from the host: the
    // guest's writes impersonate its ServiceAccount, the informers run as
    // the host.
    let events: Vec<Value> = std::fs::read_to_string(&audit_log)
        .expect("the audit log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect();
    let on_behave = |event: &&Value| {
        event["objectRef"]["resource"] == "configmaps" && event["objectRef"]["name"] == "behave"
    };
    let stamp = events
        .iter()
        .filter(on_behave)
        .find(|event| event["verb"] == "patch" && event["responseStatus"]["code"] == 200)
        .unwrap_or_else(|| panic!("the guest's stamp in the audit log: {events:#?}"));
    assert_eq!(
        stamp["impersonatedUser"]["username"], "system:serviceaccount:team-a:tenant",
        "{stamp}"
    );
    assert_eq!(stamp["user"]["username"], "kubernetes-admin", "{stamp}");
    let informer = events
        .iter()
        .find(|event| {
            event["verb"] == "watch"
                && event["objectRef"]["resource"] == "configmaps"
                && event["objectRef"]["namespace"] == "team-a"
        })
        .unwrap_or_else(|| panic!("the informer's watch in the audit log: {events:#?}"));
    assert!(informer.get("impersonatedUser").is_none(), "{informer}");
}

/// A host that may not list RBAC objects still runs controllers that act
/// as a ServiceAccount and stays ready: it starts no informer it may not
/// run, and review answers last their expiry instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_may_not_watch_rbac_relies_on_the_reviews_expiry() {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

    let (cluster, admin) = cluster().await;
    create(
        &Api::<Namespace>::all(admin.clone()),
        json!({"metadata": {"name": "team-a"}}),
    )
    .await;
    account_bound_to(&admin, "team-a", "tenant", "edit").await;
    // The host's own ServiceAccount: what the controller needs of it, and
    // no RBAC reads.
    create(
        &Api::<Account>::namespaced(admin.clone(), "default"),
        json!({"metadata": {"name": "host"}}),
    )
    .await;
    create(
        &Api::<ClusterRole>::all(admin.clone()),
        json!({
            "metadata": {"name": "narrow-host"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        }),
    )
    .await;
    create(
        &Api::<ClusterRoleBinding>::all(admin.clone()),
        json!({
            "metadata": {"name": "narrow-host"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "narrow-host"},
            "subjects": [{"kind": "ServiceAccount", "namespace": "default", "name": "host"}],
        }),
    )
    .await;
    let token = Api::<Account>::namespaced(admin.clone(), "default")
        .create_token_request("host", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("a token")
        .status
        .and_then(|status| status.token)
        .expect("a token");
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&cluster.kubeconfig_yaml()).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.as_str().into()),
        ..kube::config::AuthInfo::default()
    };
    let host = paddock::cluster::client(config).expect("a client");

    let runtime = Runtime::new(host).with_review_ttl(TTL);
    let account = ServiceAccount::new("team-a", "tenant");
    let controller = runtime
        .start(config_for(&["team-a"], &account))
        .await
        .expect("starts without RBAC reads");
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), "team-a");
    behaves(&configmaps).await;
    let informers: Vec<String> = runtime
        .informers()
        .all()
        .iter()
        .map(|informer| informer.describe())
        .collect();
    assert!(
        informers.iter().all(|informer| !informer.contains("rbac")),
        "no informer the host may not run: {informers:?}"
    );
    assert!(
        runtime
            .informers()
            .all()
            .iter()
            .all(|informer| informer.health().failure.is_none()),
        "every informer reaches the API server"
    );
    drop(controller);
    cluster.shutdown().await;
}
