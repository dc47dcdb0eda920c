//! `paddock run` against a cluster given by a kubeconfig file, as a user
//! would run it: the embedded cluster's kubeconfig, a controllers file, the
//! operations endpoint, and a clean exit on SIGTERM.

mod common;
mod hosts;

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};

use common::{cache_dir, module};
use hosts::{bound_port, controllers_file, embedded_cluster, http_get, wait_for};

/// Waits until the `paddock run` writing `log` has bound its operations
/// port, and answers it.
async fn ops_port(log: &std::path::Path) -> u16 {
    wait_for("paddock to bind its operations port", || async {
        bound_port(log)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reconciles_through_a_kubeconfig_and_stops_on_sigterm() {
    let (cluster, dir, kubeconfig) = embedded_cluster("kubeconfig").await;
    let config = controllers_file(dir.path());
    let cache = cache_dir();
    let log = dir.path().join("paddock.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--ops-addr", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(cache)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("paddock starts");
    let port = ops_port(&log).await;

    wait_for("/readyz to answer 200", || async {
        http_get(port, "/readyz")
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    let (status, body) = http_get(port, "/healthz").await.expect("healthz answers");
    assert_eq!((status, body.as_str()), (200, "ok"));

    let client = hosts::client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deployment = hosts::deployment("web", 4);
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
        value(
            "paddock_guest_info",
            &[floor[0], floor[1], ("identity", "host")]
        ),
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
    let exit = tokio::task::spawn_blocking(move || common::exits(&mut child, "paddock"))
        .await
        .expect("join");
    assert!(exit.success(), "paddock exits cleanly on SIGTERM: {exit:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_from_cluster_runs_the_wasm_controllers_kubectl_applies() {
    let (cluster, dir, kubeconfig) = embedded_cluster("kubeconfig").await;
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
    let log = dir.path().join("paddock.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("run")
        .arg("--from-cluster")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--ops-addr", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("paddock starts");
    let port = ops_port(&log).await;
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
    let exit = tokio::task::spawn_blocking(move || common::exits(&mut child, "paddock"))
        .await
        .expect("join");
    assert!(exit.success(), "paddock exits cleanly on SIGTERM: {exit:?}");
    cluster.shutdown().await;
}

/// Waits (at most 60 s) for `check`, showing the host's `log` if it does
/// not come.
async fn wait_logged(what: &str, log: &std::path::Path, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; the host's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The demo's controllers, run by a host that holds only the rights
/// `paddock rbac` prints for them, through its ServiceAccount's token; one
/// of them acts as a ServiceAccount of its own, bound to `edit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rights_paddock_rbac_prints_are_enough_to_run_the_demo() {
    let (cluster, dir, admin) = embedded_cluster("admin.kubeconfig").await;
    let kubectl_as = |kubeconfig: &std::path::Path, args: &[&str], input: Option<&str>| {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(input) = input {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        let output = child.wait_with_output().expect("kubectl ends");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let kubectl = |args: &[&str], input: Option<&str>| {
        let (ok, out, err) = kubectl_as(&admin, args, input);
        assert!(ok, "kubectl {args:?}: {err}");
        out
    };
    let demo = common::root().join("guest-examples/demo");
    for manifest in ["../app-operator/deploy/crd.yaml", "samples.yaml"] {
        kubectl(
            &["apply", "-f", &demo.join(manifest).display().to_string()],
            None,
        );
    }

    // The demo's controllers file; replica-floor acts as shop/replica-floor.
    let demo_file = std::fs::read_to_string(demo.join("controllers.yaml")).expect("the demo");
    let mut config_text = String::new();
    for line in demo_file.lines() {
        let line = match line.trim_start().strip_prefix("module: ") {
            Some(path) => {
                let stem = std::path::Path::new(path)
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .expect("a module path");
                format!("  module: {}", module(stem).display())
            }
            None => line.to_owned(),
        };
        config_text.push_str(&line);
        config_text.push('\n');
        if line == "- name: replica-floor" {
            config_text.push_str("  serviceAccount: shop/replica-floor\n  namespaces: [shop]\n");
        }
    }
    let config = dir.path().join("controllers.yaml");
    std::fs::write(&config, &config_text).expect("write the controllers file");

    // The host's ServiceAccount, with what `paddock rbac` prints.
    kubectl(&["create", "namespace", "paddock-system"], None);
    kubectl(
        &[
            "create",
            "serviceaccount",
            "paddock",
            "-n",
            "paddock-system",
        ],
        None,
    );
    let rbac = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["rbac", "--config"])
        .arg(&config)
        .output()
        .expect("paddock rbac runs");
    assert!(
        rbac.status.success(),
        "paddock rbac: {}",
        String::from_utf8_lossy(&rbac.stderr)
    );
    let rbac = String::from_utf8(rbac.stdout).expect("UTF-8");
    kubectl(&["apply", "-f", "-"], Some(&rbac));
    kubectl(
        &["create", "serviceaccount", "replica-floor", "-n", "shop"],
        None,
    );
    kubectl(
        &[
            "create",
            "rolebinding",
            "replica-floor-edit",
            "-n",
            "shop",
            "--clusterrole=edit",
            "--serviceaccount=shop:replica-floor",
        ],
        None,
    );
    let token = kubectl(
        &["create", "token", "paddock", "-n", "paddock-system"],
        None,
    );
    let host = dir.path().join("host.kubeconfig");
    std::fs::copy(&admin, &host).expect("copy the kubeconfig");
    let set = |args: &[&str]| {
        let (ok, _, err) = kubectl_as(&host, args, None);
        assert!(ok, "kubectl {args:?}: {err}");
    };
    set(&[
        "config",
        "set-credentials",
        "paddock",
        &format!("--token={token}"),
    ]);
    set(&["config", "set-context", "--current", "--user=paddock"]);
    let (_, whoami, _) = kubectl_as(
        &host,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert_eq!(whoami, "system:serviceaccount:paddock-system:paddock");
    let (_, may, _) = kubectl_as(
        &host,
        &["auth", "can-i", "create", "secrets", "-n", "shop"],
        None,
    );
    assert_eq!(may, "no", "the host is not an admin");

    let log = dir.path().join("paddock.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&host)
        .args(["--ops-addr", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("paddock starts");
    let port = ops_port(&log).await;
    let jsonpath = |kind: &str, name: &str, path: &str| {
        let (_, out, _) = kubectl_as(
            &admin,
            &[
                "get",
                kind,
                name,
                "-n",
                "shop",
                "-o",
                &format!("jsonpath={path}"),
            ],
            None,
        );
        out
    };
    wait_logged("replica-floor to scale web to 3", &log, || {
        jsonpath("deployment", "web", "{.spec.replicas}") == "3"
    })
    .await;
    wait_logged("label-policy to label web", &log, || {
        jsonpath("deployment", "web", "{.metadata.labels.cost-center}") == "shared"
    })
    .await;
    wait_logged("app-operator to run hello", &log, || {
        jsonpath("deployment", "hello", "{.spec.replicas}") == "2"
    })
    .await;
    let (_, body) = http_get(port, "/status").await.expect("/status answers");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let controllers = report["controllers"].as_array().expect("controllers");
    assert_eq!(controllers.len(), 3, "{report}");
    for controller in controllers {
        assert_eq!(controller["phase"], "running", "{controller}");
        let expected = if controller["name"] == "replica-floor" {
            "serviceaccount shop/replica-floor"
        } else {
            "host"
        };
        assert_eq!(controller["identity"], expected, "{controller}");
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || common::exits(&mut child, "paddock"))
        .await
        .expect("join");
    assert!(exit.success(), "paddock exits cleanly on SIGTERM: {exit:?}");
    cluster.shutdown().await;
}

/// The manifests that run the host in a cluster are accepted by the API
/// server as they are (a server-side dry run: validated, defaulted and
/// authorised, not stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_manifests_apply_with_a_server_side_dry_run() {
    let (cluster, _dir, kubeconfig) = embedded_cluster("kubeconfig").await;
    let kubectl = |args: &[&str]| {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let deploy = common::root().join("deploy");
    // A dry run stores nothing, so the namespace the other objects go into
    // must exist already, as for any server-side dry run.
    let (ok, _, err) = kubectl(&["create", "namespace", "paddock-system"]);
    assert!(ok, "{err}");
    let mut args = vec!["apply", "--server-side", "--dry-run=server"];
    let files: Vec<String> = ["crds.yaml", "paddock.yaml", "rbac.yaml"]
        .iter()
        .map(|file| deploy.join(file).display().to_string())
        .collect();
    for file in &files {
        args.extend(["-f", file.as_str()]);
    }
    let (ok, out, err) = kubectl(&args);
    assert!(ok, "kubectl {args:?}: {err}");
    for applied in [
        "customresourcedefinition.apiextensions.k8s.io/wasmcontrollers.paddock.dev serverside-applied (server dry run)",
        "serviceaccount/paddock serverside-applied (server dry run)",
        "deployment.apps/paddock serverside-applied (server dry run)",
        "service/paddock-metrics serverside-applied (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/paddock serverside-applied (server dry run)",
        "clusterrolebinding.rbac.authorization.k8s.io/paddock serverside-applied (server dry run)",
    ] {
        assert!(out.contains(applied), "{applied} in:\n{out}");
    }
    let (found, _, _) = kubectl(&["get", "deployment", "paddock", "-n", "paddock-system"]);
    assert!(!found, "a dry run stores nothing");
    cluster.shutdown().await;
}
