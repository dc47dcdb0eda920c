//! Helpers for the tests that run `paddock` processes against the
//! embedded cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET a path of the operations endpoint: (status code, body).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

/// A fresh embedded cluster, a temporary folder, and the cluster's
/// kubeconfig written there as `file`.
pub async fn embedded_cluster(
    file: &str,
) -> (
    devcluster::DevCluster,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    embedded_cluster_with(devcluster::Options::new(), file).await
}

/// Like [`embedded_cluster`], started with `options`.
pub async fn embedded_cluster_with(
    options: devcluster::Options,
    file: &str,
) -> (
    devcluster::DevCluster,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let cluster = devcluster::DevCluster::start(options)
        .await
        .expect("the embedded cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join(file);
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("write the kubeconfig");
    (cluster, dir, kubeconfig)
}

/// Waits (at most 20 s) until `check` answers `Some`.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_within(what, Duration::from_secs(20), check).await
}

/// Waits at most `limit` until `check` answers `Some`.
pub async fn wait_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} ({limit:?})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A client of the cluster a kubeconfig file names.
pub async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// The port of the operations endpoint a `paddock run` log names, once
/// it was bound (the tests pass `--ops-addr 127.0.0.1:0`: a port found
/// free and handed to a child could be taken in between).
pub fn bound_port(log: &Path) -> Option<u16> {
    let log = std::fs::read_to_string(log).ok()?;
    let line = log
        .lines()
        .find(|line| line.contains("operations endpoint"))?;
    let addr = line.split_once("addr=")?.1.split_whitespace().next()?;
    Some(addr.parse::<std::net::SocketAddr>().ok()?.port())
}

/// A controllers file running `replica_floor` as `floor`.
pub fn controllers_file(dir: &Path) -> PathBuf {
    let config = dir.join("controllers.yaml");
    std::fs::write(
        &config,
        format!(
            "controllers:
- name: floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
  - {{apiGroups: [\"\"], resources: [events], verbs: [create, patch]}}
",
            crate::common::module("replica_floor").display()
        ),
    )
    .expect("write the controllers file");
    config
}

/// A Deployment asking `replica_floor` for at least `floor` replicas.
pub fn deployment(name: &str, floor: u32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"paddock.dev/min-replicas": floor.to_string()}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
    }))
    .expect("a Deployment")
}
