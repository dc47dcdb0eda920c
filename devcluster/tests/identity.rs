//! Identity end to end: ServiceAccount tokens, client certificates, RBAC, impersonation and the
//! access reviews, driven with the real kubectl (which must be on PATH) and kube-rs.

mod common;

use anyhow::{Context, Result, bail, ensure};
use devcluster::{DevCluster, Options};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use serde_json::json;

use common::Kubectl;

async fn connect(yaml: &str) -> Result<Client> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml)?;
    Ok(Client::try_from(
        Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_bound_to_view_reads_its_namespace_only() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let admin = Kubectl::new(dir.path(), "admin", &dev.kubeconfig_yaml())?;
    for args in [
        &["create", "namespace", "facts"][..],
        &["create", "namespace", "other"],
        &["-n", "facts", "create", "serviceaccount", "viewer"],
        &[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--serviceaccount=facts:viewer",
        ],
        &[
            "-n",
            "facts",
            "create",
            "configmap",
            "c1",
            "--from-literal=a=b",
        ],
        &[
            "-n",
            "other",
            "create",
            "configmap",
            "c2",
            "--from-literal=a=b",
        ],
    ] {
        admin.run(args).await?;
    }

    let token = admin
        .run(&["-n", "facts", "create", "token", "viewer"])
        .await?;
    let token = token.trim();
    ensure!(token.split('.').count() == 3, "a JWT: {token}");
    let viewer = Kubectl::new(dir.path(), "viewer", &dev.kubeconfig_yaml_for_token(token))?;

    let names = viewer
        .run(&["-n", "facts", "get", "configmaps", "-o", "name"])
        .await?;
    assert!(names.contains("configmap/c1"), "{names}");
    assert!(names.contains("configmap/kube-root-ca.crt"), "{names}");

    let err = viewer
        .refused(&["-n", "other", "get", "configmaps"])
        .await?;
    assert!(
        err.contains(r#"Error from server (Forbidden): configmaps is forbidden: User "system:serviceaccount:facts:viewer" cannot list resource "configmaps" in API group "" in the namespace "other""#),
        "{err}"
    );
    let err = viewer
        .refused(&[
            "-n",
            "facts",
            "create",
            "configmap",
            "c3",
            "--from-literal=a=b",
        ])
        .await?;
    assert!(
        err.contains(r#"configmaps is forbidden: User "system:serviceaccount:facts:viewer" cannot create resource "configmaps" in API group "" in the namespace "facts""#),
        "{err}"
    );
    let err = viewer.refused(&["-n", "facts", "get", "secrets"]).await?;
    assert!(
        err.contains(r#"secrets is forbidden: User "system:serviceaccount:facts:viewer" cannot list resource "secrets" in API group "" in the namespace "facts""#),
        "{err}"
    );
    let err = viewer
        .refused(&["-n", "facts", "delete", "configmap", "c1"])
        .await?;
    assert!(
        err.contains(r#"configmaps "c1" is forbidden: User "system:serviceaccount:facts:viewer" cannot delete resource "configmaps" in API group "" in the namespace "facts""#),
        "{err}"
    );

    // kubectl auth: whoami, can-i (own and --as), can-i --list.
    let whoami = viewer.run(&["auth", "whoami"]).await?;
    assert!(
        whoami.contains("system:serviceaccount:facts:viewer"),
        "{whoami}"
    );
    assert!(
        whoami
            .contains("[system:serviceaccounts system:serviceaccounts:facts system:authenticated]"),
        "{whoami}"
    );
    let whoami = admin
        .run(&[
            "auth",
            "whoami",
            "--as=system:serviceaccount:facts:viewer",
            "-o",
            "json",
        ])
        .await?;
    let whoami: serde_json::Value = serde_json::from_str(&whoami)?;
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:facts",
            "system:authenticated"
        ])
    );
    assert_eq!(
        viewer
            .run(&["auth", "can-i", "list", "configmaps", "-n", "facts"])
            .await?
            .trim(),
        "yes"
    );
    let (ok, out, _) = viewer
        .try_run(&["auth", "can-i", "create", "configmaps", "-n", "facts"])
        .await?;
    assert!(!ok && out.trim() == "no", "can-i create: {out}");
    let as_viewer = "--as=system:serviceaccount:facts:viewer";
    assert_eq!(
        admin
            .run(&["auth", "can-i", "get", "pods", "-n", "facts", as_viewer])
            .await?
            .trim(),
        "yes"
    );
    let (ok, out, _) = admin
        .try_run(&["auth", "can-i", "get", "secrets", "-n", "facts", as_viewer])
        .await?;
    assert!(!ok && out.trim() == "no", "can-i --as secrets: {out}");
    let (ok, out, _) = admin
        .try_run(&["auth", "can-i", "get", "pods", "-n", "other", as_viewer])
        .await?;
    assert!(!ok && out.trim() == "no", "can-i --as elsewhere: {out}");
    assert_eq!(
        admin
            .run(&["auth", "can-i", "delete", "nodes"])
            .await?
            .trim(),
        "yes"
    );
    let rules = viewer
        .run(&["auth", "can-i", "--list", "-n", "facts"])
        .await?;
    let configmaps = rules
        .lines()
        .find(|l| l.starts_with("configmaps "))
        .with_context(|| format!("no configmaps rule in:\n{rules}"))?;
    assert!(configmaps.contains("[get list watch]"), "{configmaps}");
    assert!(
        rules.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{rules}"
    );

    // Impersonation needs the impersonate verb.
    let err = viewer
        .refused(&["get", "pods", "-n", "facts", "--as=jane"])
        .await?;
    assert!(
        err.contains(r#"users "jane" is forbidden: User "system:serviceaccount:facts:viewer" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    let err = admin
        .refused(&["get", "pods", "-n", "facts", "--as=jane", "--as-group=devs"])
        .await?;
    assert!(
        err.contains(r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "facts""#),
        "{err}"
    );
    dev.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_cluster_admin_without_holding_it_is_refused() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let admin = Kubectl::new(dir.path(), "admin", &dev.kubeconfig_yaml())?;
    for args in [
        &["create", "namespace", "facts"][..],
        &["-n", "facts", "create", "serviceaccount", "binder"],
        &[
            "-n",
            "facts",
            "create",
            "role",
            "binder",
            "--verb=create,get,list",
            "--resource=rolebindings.rbac.authorization.k8s.io",
        ],
        &[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "binder",
            "--role=binder",
            "--serviceaccount=facts:binder",
        ],
    ] {
        admin.run(args).await?;
    }
    let token = admin
        .run(&["-n", "facts", "create", "token", "binder", "--duration=20m"])
        .await?;
    let binder = Kubectl::new(
        dir.path(),
        "binder",
        &dev.kubeconfig_yaml_for_token(token.trim()),
    )?;
    let err = binder
        .refused(&[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "esc",
            "--clusterrole=cluster-admin",
            "--serviceaccount=facts:binder",
        ])
        .await?;
    assert!(
        err.contains(r#"rolebindings.rbac.authorization.k8s.io "esc" is forbidden: user "system:serviceaccount:facts:binder" (groups=["system:serviceaccounts" "system:serviceaccounts:facts" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{err}"
    );
    assert!(
        err.contains(r#"{APIGroups:["*"], Resources:["*"], Verbs:["*"]}"#),
        "{err}"
    );
    assert!(
        err.contains(r#"{NonResourceURLs:["*"], Verbs:["*"]}"#),
        "{err}"
    );
    // Binding a role whose rules it holds is fine.
    binder
        .run(&[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "ok",
            "--role=binder",
            "--serviceaccount=facts:binder",
        ])
        .await?;
    // With the bind verb on cluster-admin, the same binding is allowed.
    admin
        .run(&[
            "-n",
            "facts",
            "create",
            "role",
            "may-bind",
            "--verb=bind",
            "--resource=clusterroles.rbac.authorization.k8s.io",
            "--resource-name=cluster-admin",
        ])
        .await?;
    admin
        .run(&[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "may-bind",
            "--role=may-bind",
            "--serviceaccount=facts:binder",
        ])
        .await?;
    binder
        .run(&[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "esc",
            "--clusterrole=cluster-admin",
            "--serviceaccount=facts:binder",
        ])
        .await?;
    dev.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_anonymous_requests() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let dir = tempfile::tempdir()?;
    let admin = Kubectl::new(dir.path(), "admin", &dev.kubeconfig_yaml())?;
    let jane = Kubectl::new(
        dir.path(),
        "jane",
        &dev.kubeconfig_yaml_for_user("jane", &["devs"])?,
    )?;
    let whoami = jane.run(&["auth", "whoami"]).await?;
    assert!(whoami.contains("jane"), "{whoami}");
    assert!(whoami.contains("[devs system:authenticated]"), "{whoami}");
    let err = jane.refused(&["get", "pods", "-A"]).await?;
    assert!(
        err.contains(r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" at the cluster scope"#),
        "{err}"
    );
    admin
        .run(&[
            "create",
            "clusterrolebinding",
            "devs-view",
            "--clusterrole=view",
            "--group=devs",
        ])
        .await?;
    jane.run(&["get", "pods", "-A"]).await?;

    let root = Kubectl::new(
        dir.path(),
        "root",
        &dev.kubeconfig_yaml_for_user("root", &["system:masters"])?,
    )?;
    root.run(&["create", "namespace", "by-cert"]).await?;

    // No credentials at all: system:anonymous, allowed the public health and version paths only.
    let mut kubeconfig = kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?;
    for user in &mut kubeconfig.auth_infos {
        if let Some(info) = user.auth_info.as_mut() {
            info.token = None;
        }
    }
    let anonymous =
        Client::try_from(Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)?;
    let get = |path: &str| http::Request::get(path).body(Vec::new());
    assert_eq!(anonymous.request_text(get("/healthz")?).await?, "ok");
    anonymous.request_text(get("/version")?).await?;
    match anonymous.request_text(get("/api")?).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                r#"forbidden: User "system:anonymous" cannot get path "/api""#
            );
        }
        other => bail!("anonymous /api: {other:?}"),
    }
    let bad = dev.kubeconfig_yaml_for_token("not-a-valid-token");
    let bad = Kubectl::new(dir.path(), "bad", &bad)?;
    let err = bad.refused(&["get", "--raw", "/api"]).await?;
    assert!(err.contains("Unauthorized"), "{err}");
    dev.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_token_request_then_token_review() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = connect(&dev.kubeconfig_yaml()).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "fakesa"}}))?,
        )
        .await?;
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["api"]}}))?;
    let issued = accounts
        .create_token_request("fakesa", &PostParams::default(), &request)
        .await?;
    let status = issued.status.context("TokenRequest status")?;
    let spec = issued.spec.context("TokenRequest spec")?;
    assert_eq!(spec.expiration_seconds, Some(3600));
    let token = status.token.context("TokenRequest status.token")?;
    assert!(!token.is_empty());

    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review: TokenReview =
        serde_json::from_value(json!({"spec": {"token": token, "audiences": ["api"]}}))?;
    let reviewed = reviews.create(&PostParams::default(), &review).await?;
    let status = reviewed.status.context("TokenReview status")?;
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.audiences, Some(vec!["api".to_owned()]));
    assert_eq!(status.error, None);
    let user = status.user.context("user")?;
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:fakesa")
    );

    // A token for another audience does not authenticate to the API server.
    let other = dev.kubeconfig_yaml_for_token(&token);
    let as_api = client_or_err(&other).await;
    assert!(
        as_api.is_err(),
        "a token for audience \"api\" was accepted by the server"
    );

    // Too short a lifetime is invalid, as on a real server.
    let short: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 60}}))?;
    let err = accounts
        .create_token_request("fakesa", &PostParams::default(), &short)
        .await
        .expect_err("60 s is below the minimum");
    assert!(
        err.to_string()
            .contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );

    // Deleting the ServiceAccount revokes its tokens.
    let default_aud: TokenRequest = serde_json::from_value(json!({"spec": {}}))?;
    let token = accounts
        .create_token_request("fakesa", &PostParams::default(), &default_aud)
        .await?
        .status
        .and_then(|status| status.token)
        .context("status.token")?;
    let sa_client = connect(&dev.kubeconfig_yaml_for_token(&token)).await?;
    let whoami: Api<ConfigMap> = Api::namespaced(sa_client.clone(), "default");
    let refused = whoami
        .list(&Default::default())
        .await
        .expect_err("no RBAC for fakesa");
    assert!(refused.to_string().contains("forbidden"), "{refused}");
    accounts.delete("fakesa", &Default::default()).await?;
    let gone = whoami
        .list(&Default::default())
        .await
        .expect_err("token revoked");
    assert!(gone.to_string().contains("Unauthorized"), "{gone}");
    dev.shutdown().await;
    Ok(())
}

/// Lists namespaces with a kubeconfig; the error when refused.
async fn client_or_err(yaml: &str) -> Result<()> {
    let c = connect(yaml).await?;
    Api::<Namespace>::all(c).list(&Default::default()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_a_default_service_account_and_pods_a_token_volume() -> Result<()> {
    let dev = DevCluster::start(Options::new()).await?;
    let client = connect(&dev.kubeconfig_yaml()).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "fresh"}}))?,
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "fresh");
    accounts
        .get("default")
        .await
        .context("default ServiceAccount")?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "fresh");
    let ca = configmaps.get("kube-root-ca.crt").await?;
    assert_eq!(
        ca.data
            .unwrap_or_default()
            .get("ca.crt")
            .map(String::as_str),
        Some(dev.ca_pem())
    );
    let pods: Api<Pod> = Api::namespaced(client, "fresh");
    let pod = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))?,
        )
        .await?;
    let spec = pod.spec.context("spec")?;
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volume = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name.starts_with("kube-api-access-"))
        .context("token volume")?;
    let mounts = spec.containers[0].volume_mounts.clone().unwrap_or_default();
    assert!(mounts.iter().any(|m| m.name == volume.name
        && m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
        && m.read_only == Some(true)));
    dev.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_survives_a_restart_with_a_data_dir() -> Result<()> {
    let data = tempfile::tempdir()?;
    let dev = DevCluster::start(Options::new().data_dir(data.path())).await?;
    let kubeconfig = dev.kubeconfig_yaml();
    let cert_kubeconfig = dev.kubeconfig_yaml_for_user("jane", &["system:masters"])?;
    let client_before = connect(&kubeconfig).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client_before, "default");
    let token = accounts
        .create_token_request(
            "default",
            &PostParams::default(),
            &serde_json::from_value(json!({"spec": {}}))?,
        )
        .await?
        .status
        .and_then(|status| status.token)
        .context("status.token")?;
    let token_kubeconfig = dev.kubeconfig_yaml_for_token(&token);
    let port = dev.addr().port();
    dev.shutdown().await;

    let dev = DevCluster::start(Options::new().data_dir(data.path()).port(port)).await?;
    assert_eq!(
        dev.kubeconfig_yaml(),
        kubeconfig,
        "same CA, address and token"
    );
    client_or_err(&kubeconfig)
        .await
        .context("admin kubeconfig after restart")?;
    client_or_err(&cert_kubeconfig)
        .await
        .context("client certificate after restart")?;
    let sa = connect(&token_kubeconfig).await?;
    let err = Api::<Namespace>::all(sa)
        .list(&Default::default())
        .await
        .expect_err("the default ServiceAccount may not list namespaces");
    assert!(
        err.to_string().contains("forbidden"),
        "the token still authenticates: {err}"
    );
    dev.shutdown().await;
    Ok(())
}

/// The audit log names who asked, whom it impersonated, the decision and the answer: an
/// impersonated ServiceAccount's allowed list and its forbidden create, as kube-apiserver's
/// `--audit-log-path` writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_the_impersonated_user_and_the_servers_403() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.log");
    let dev = DevCluster::start(Options::new().audit_log(&log)).await?;
    let admin = Kubectl::new(dir.path(), "admin", &dev.kubeconfig_yaml())?;
    for args in [
        &["create", "namespace", "facts"][..],
        &["-n", "facts", "create", "serviceaccount", "viewer"],
        &[
            "-n",
            "facts",
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--serviceaccount=facts:viewer",
        ],
    ] {
        admin.run(args).await?;
    }
    let kc = kube::config::Kubeconfig::from_yaml(&dev.kubeconfig_yaml())?;
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    config.auth_info.impersonate = Some("system:serviceaccount:facts:viewer".into());
    let viewer = Client::try_from(config)?;
    let configmaps: Api<ConfigMap> = Api::namespaced(viewer, "facts");
    configmaps.list(&Default::default()).await?;
    let refused = configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "planted"}}))?,
        )
        .await;
    ensure!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 403),
        "the create is forbidden: {refused:?}"
    );
    drop(dev);

    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("every line is one JSON event")?;
    let find = |verb: &str| {
        events
            .iter()
            .find(|event| {
                event["verb"] == verb
                    && event["objectRef"]["resource"] == "configmaps"
                    && event["objectRef"]["namespace"] == "facts"
                    && event["impersonatedUser"]["username"] == "system:serviceaccount:facts:viewer"
            })
            .with_context(|| format!("an impersonated {verb} of configmaps in {events:#?}"))
    };
    let list = find("list")?;
    ensure!(
        list["kind"] == "Event" && list["apiVersion"] == "audit.k8s.io/v1",
        "{list}"
    );
    ensure!(
        list["level"] == "Metadata" && list["stage"] == "ResponseComplete",
        "{list}"
    );
    ensure!(
        list["user"]["username"] == "kubernetes-admin",
        "the impersonator: {list}"
    );
    ensure!(list["responseStatus"]["code"] == 200, "{list}");
    ensure!(
        list["annotations"]["authorization.k8s.io/decision"] == "allow",
        "{list}"
    );
    ensure!(list["objectRef"]["apiVersion"] == "v1", "{list}");
    let create = find("create")?;
    ensure!(create["responseStatus"]["code"] == 403, "{create}");
    ensure!(
        create["responseStatus"]["reason"] == "Forbidden",
        "{create}"
    );
    ensure!(
        create["responseStatus"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("cannot create resource \"configmaps\"")),
        "{create}"
    );
    ensure!(
        create["annotations"]["authorization.k8s.io/decision"] == "forbid",
        "{create}"
    );
    Ok(())
}
