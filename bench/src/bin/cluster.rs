//! Create, list and watch throughput with 10 000 objects, memory per stored object, and the
//! create and patch throughput of a fifth as many Deployments.
//!
//! Run with `cargo xtask bench`, or alone as `target/release/cluster [<objects> [rbac]]` after
//! the xtask's build (`cargo build --release --bins --package paddock --package paddock-bench
//! --package devcluster`: building `paddock-bench` alone unifies features differently and
//! compiles every dependency again); with `rbac` the requests are made by a
//! ServiceAccount holding `edit` through RBAC instead of the admin (whose `system:masters` group
//! skips authorisation). It lives among the benches, not as an example of `devcluster`, so that
//! it is built with the same features as the other release binaries: an example of
//! `devcluster` unifies its dev-dependencies' features and needs a release build of its own.

use std::time::Instant;

use anyhow::{Context, Result};
use devcluster::{DevCluster, Options};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, Config};
use serde_json::json;

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn configmap(i: usize) -> Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("cm-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "data": {"key": format!("value-{i}"), "other": "some text of moderate length"},
    }))?)
}

/// A Deployment of one container with ports, as a typed built-in write exercises defaulting,
/// validation, storage as Go stores it and field ownership.
fn deployment(i: usize) -> Result<Deployment> {
    let labels = json!({"app": format!("web-{i}")});
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("web-{i:05}"), "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "ports": [{"containerPort": 80}, {"containerPort": 443}],
                    "env": [{"name": "MODE", "value": "bench"}],
                }]},
            },
        },
    }))?)
}

async fn connect(kubeconfig: &str) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
    Ok(Client::try_from(
        Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?)
}

/// A ServiceAccount bound to `edit` and to a ClusterRole for namespaces; returns its token.
async fn rbac_user(admin: &Client) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let pp = PostParams::default();
    accounts
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
        )
        .await?;
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    roles
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "bench-namespaces"}, "rules": [
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["*"]}]}))?,
        )
        .await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for role in ["edit", "bench-namespaces"] {
        bindings
            .create(
                &pp,
                &serde_json::from_value(json!({
                    "metadata": {"name": format!("bench-{role}")},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                    "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": "default"}],
                }))?,
            )
            .await?;
    }
    let request = serde_json::from_value(json!({"spec": {"expirationSeconds": 86400}}))?;
    let issued = accounts
        .create_token_request("bench", &pp, &request)
        .await?;
    issued
        .status
        .and_then(|status| status.token)
        .context("TokenRequest status.token")
}

#[tokio::main]
async fn main() -> Result<()> {
    let objects: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rbac = std::env::args().nth(2).as_deref() == Some("rbac");
    let dev = DevCluster::start(Options::new().watch_history(objects * 2)).await?;
    let admin = connect(&dev.kubeconfig_yaml()).await?;
    let client = if rbac {
        let token = rbac_user(&admin).await?;
        println!("as system:serviceaccount:default:bench (RBAC: edit + namespaces)");
        connect(&dev.kubeconfig_yaml_for_token(&token)).await?
    } else {
        println!("as the admin (system:masters)");
        admin
    };
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    // The first event of a new watch: from the request to the event of the
    // one object the namespace holds (its kube-root-ca.crt).
    let mut firsts = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let mut watch = api.watch(&WatchParams::default(), "0").await?.boxed();
        match watch.next().await.context("watch ended")?? {
            WatchEvent::Added(_) => firsts.push(started.elapsed().as_secs_f64() * 1000.0),
            other => anyhow::bail!("the first event of a watch from 0 is {other:?}"),
        }
    }
    firsts.sort_by(f64::total_cmp);
    println!(
        "first event of a new watch: median {:.2} ms, max {:.2} ms over {} watches",
        firsts[firsts.len() / 2],
        firsts[firsts.len() - 1],
        firsts.len()
    );

    let mut live = api.watch(&WatchParams::default(), "0").await?.boxed();
    let rss_before = rss_bytes();
    let stored_before = dev.stored_bytes();
    let started = Instant::now();
    for i in 0..objects {
        api.create(&PostParams::default(), &configmap(i)?).await?;
    }
    let create_secs = started.elapsed().as_secs_f64();
    let mut seen = 0;
    while seen < objects {
        match live.next().await.context("watch ended")?? {
            WatchEvent::Added(_) => seen += 1,
            WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
            _ => {}
        }
    }
    let live_secs = started.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    println!(
        "created {objects} ConfigMaps in {create_secs:.2}s ({:.0}/s)",
        objects as f64 / create_secs
    );
    println!(
        "live watch delivered {objects} ADDED events within {live_secs:.2}s of the first create"
    );
    println!(
        "memory: {:.0} bytes of encoded JSON per object, {:.0} bytes of resident memory per object \
         (store, indexes and watch history)",
        (dev.stored_bytes() - stored_before) as f64 / objects as f64,
        rss_after.saturating_sub(rss_before) as f64 / objects as f64,
    );

    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        let list = api.list(&ListParams::default()).await?;
        // Every namespace also holds the cluster's `kube-root-ca.crt`.
        assert_eq!(list.items.len(), objects + 1);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "list: {rounds} full lists of {objects} in {secs:.2}s ({:.0} objects/s)",
        (rounds * objects) as f64 / secs
    );

    let started = Instant::now();
    let pages = {
        let mut pages = 0;
        let mut params = ListParams::default().limit(500);
        loop {
            let page = api.list(&params).await?;
            pages += 1;
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break pages,
            }
        }
    };
    println!(
        "paginated list: {pages} pages of 500 in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut replay = api.watch(&WatchParams::default(), "0").await?.boxed();
    let mut seen = 0;
    while seen < objects {
        if let WatchEvent::Added(_) = replay.next().await.context("watch ended")?? {
            seen += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "watch from 0: {objects} initial events in {secs:.2}s ({:.0} events/s)",
        objects as f64 / secs
    );
    let namespaces: Api<Namespace> = Api::all(api.clone().into_client());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bulk"}}))?,
        )
        .await?;
    let bulk: Api<ConfigMap> = Api::namespaced(api.clone().into_client(), "bulk");
    for i in 0..objects {
        bulk.create(&PostParams::default(), &configmap(i)?).await?;
    }
    let started = Instant::now();
    namespaces.delete("bulk", &DeleteParams::default()).await?;
    while namespaces.get_opt("bulk").await?.is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    println!(
        "namespace deletion with {objects} objects: {:.2}s",
        started.elapsed().as_secs_f64()
    );

    // Built-in writes that carry more structure: creates, then a merge patch of each.
    let count = (objects / 5).max(1);
    let deployments: Api<Deployment> = Api::namespaced(api.clone().into_client(), "default");
    let started = Instant::now();
    for i in 0..count {
        deployments
            .create(&PostParams::default(), &deployment(i)?)
            .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "created {count} Deployments in {secs:.2}s ({:.0}/s)",
        count as f64 / secs
    );
    let started = Instant::now();
    let patch = json!({"metadata": {"annotations": {"bench": "1"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}});
    for i in 0..count {
        deployments
            .patch(
                &format!("web-{i:05}"),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "patched {count} Deployments (strategic merge) in {secs:.2}s ({:.0}/s)",
        count as f64 / secs
    );
    dev.shutdown().await;
    Ok(())
}
