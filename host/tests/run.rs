//! `paddock run` against a cluster given by a kubeconfig file, as a user
//! would run it: the embedded cluster's kubeconfig, a controllers file, the
//! operations endpoint, and a clean exit on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{cache_dir, module};

/// GET a path of the operations endpoint: (status code, body).
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconciles_through_a_kubeconfig_and_stops_on_sigterm() {
    let cluster = devcluster::DevCluster::start(devcluster::Options::new())
        .await
        .expect("the embedded cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("write the kubeconfig");
    let config = dir.path().join("controllers.yaml");
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
            module("replica_floor").display()
        ),
    )
    .expect("write the controllers file");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let cache = cache_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--ops-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cache-dir")
        .arg(cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("paddock starts");

    wait_for("/readyz to answer 200", || async {
        http_get(port, "/readyz")
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    let (status, body) = http_get(port, "/healthz").await.expect("healthz answers");
    assert_eq!((status, body.as_str()), (200, "ok"));

    let kube_config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(kube_config).expect("client");
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"paddock.dev/min-replicas": "4"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
    }))
    .expect("a Deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create");
    wait_for("web to be scaled to 4", || async {
        let replicas = deployments.get("web").await.ok()?.spec?.replicas;
        (replicas == Some(4)).then_some(())
    })
    .await;

    let (status, metrics) = http_get(port, "/metrics").await.expect("metrics answer");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|line| Ok(line.to_owned())))
        .expect("the metrics parse");
    let digest = paddock::wasm::compile_cache::digest(
        &std::fs::read(module("replica_floor")).expect("read the module"),
    );
    // The value of the one sample of `metric` whose labels include `labels`.
    let value = |metric: &str, labels: &[(&str, &str)]| {
        let found: Vec<&prometheus_parse::Sample> = scrape
            .samples
            .iter()
            .filter(|sample| {
                sample.metric == metric
                    && labels
                        .iter()
                        .all(|(name, value)| sample.labels.get(name) == Some(*value))
            })
            .collect();
        assert_eq!(found.len(), 1, "one {metric} {labels:?} in:\n{metrics}");
        found[0].value.clone()
    };
    let floor = [("controller", "floor"), ("digest", digest.as_str())];
    assert!(matches!(
        value("paddock_reconciles_total", &floor),
        prometheus_parse::Value::Counter(count) if count >= 1.0
    ));
    let performed = [floor[0], floor[1], ("result", "performed")];
    assert_eq!(
        value("paddock_actions_total", &performed),
        prometheus_parse::Value::Counter(2.0)
    );
    assert_eq!(
        value("paddock_guest_info", &floor),
        prometheus_parse::Value::Gauge(1.0)
    );
    let deployments = [
        ("resource", "deployments"),
        ("namespace", ""),
        ("group", "apps"),
        ("version", "v1"),
    ];
    assert_eq!(
        value("paddock_informer_objects", &deployments),
        prometheus_parse::Value::Gauge(1.0)
    );
    let prometheus_parse::Value::Histogram(buckets) =
        value("paddock_reconcile_duration_seconds", &floor)
    else {
        panic!("a latency histogram for the guest in:\n{metrics}");
    };
    let total = buckets
        .iter()
        .find(|bucket| bucket.less_than.is_infinite())
        .map(|bucket| bucket.count);
    assert!(total.is_some_and(|count| count >= 1.0), "{metrics}");

    // `paddock status` reads the same host.
    let status = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["status", "--addr", &format!("127.0.0.1:{port}")])
        .output()
        .expect("paddock status runs");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let row = table
        .lines()
        .find(|line| line.starts_with("floor "))
        .unwrap_or_else(|| panic!("a row for floor in:\n{table}"));
    assert!(
        row.contains("Running") && row.contains(&digest[..12]),
        "{table}"
    );
    let json = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args([
            "status",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "-o",
            "json",
        ])
        .output()
        .expect("paddock status -o json runs");
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(report["controllers"][0]["digest"], digest.as_str());
    assert_eq!(report["controllers"][0]["running"]["queueDepth"], 0);

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("paddock exits");
    assert!(exit.success(), "paddock exits cleanly on SIGTERM: {exit:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_from_cluster_runs_the_wasm_controllers_kubectl_applies() {
    let cluster = devcluster::DevCluster::start(devcluster::Options::new())
        .await
        .expect("the embedded cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("write the kubeconfig");
    let kubectl = |args: &[&str]| {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    kubectl(&[
        "apply",
        "-f",
        &common::root()
            .join("deploy/crds.yaml")
            .display()
            .to_string(),
    ]);
    let module = std::fs::read(module("replica_floor")).expect("read the module");
    let resource = dir.path().join("floor.yaml");
    std::fs::write(
        &resource,
        format!(
            "apiVersion: paddock.dev/v1alpha1
kind: WasmController
metadata: {{name: floor, namespace: default}}
spec:
  serviceAccountName: floor
  module: {{inline: {}}}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
  - {{apiGroups: [\"\"], resources: [events], verbs: [create, patch]}}
",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &module)
        ),
    )
    .expect("write the resource");
    // The controller acts as this ServiceAccount, which `edit` lets watch
    // and scale Deployments and record events.
    kubectl(&["create", "serviceaccount", "floor"]);
    kubectl(&[
        "create",
        "rolebinding",
        "floor-edit",
        "--clusterrole=edit",
        "--serviceaccount=default:floor",
    ]);
    kubectl(&["apply", "-f", &resource.display().to_string()]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("run")
        .arg("--from-cluster")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--ops-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--cache-dir")
        .arg(cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("paddock starts");
    let digest = paddock::wasm::compile_cache::digest(&module);
    wait_for(
        "the WasmController's status to show the module serving",
        || async {
            let printed = kubectl(&[
                "get",
                "wasmctl",
                "floor",
                "-o",
                "jsonpath={.status.moduleDigest} {.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (printed == format!("{digest} True")).then_some(())
        },
    )
    .await;
    let web = dir.path().join("web.yaml");
    std::fs::write(
        &web,
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, annotations: {paddock.dev/min-replicas: \"3\"}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: \"web:1\"}]}
",
    )
    .expect("write the Deployment");
    kubectl(&["apply", "-f", &web.display().to_string()]);
    wait_for("web to be scaled to 3", || async {
        (kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ]) == "3")
            .then_some(())
    })
    .await;
    let (_, body) = http_get(port, "/status").await.expect("/status answers");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(report["controllers"][0]["name"], "default/floor");
    assert_eq!(
        report["controllers"][0]["origin"],
        "WasmController default/floor"
    );
    assert_eq!(report["controllers"][0]["phase"], "running");
    assert_eq!(
        report["controllers"][0]["identity"],
        "serviceaccount default/floor"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("paddock exits");
    assert!(exit.success(), "paddock exits cleanly on SIGTERM: {exit:?}");
    cluster.shutdown().await;
}
