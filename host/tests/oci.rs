//! Modules from OCI registries: `paddock push` publishes a component to
//! the embedded cluster's registry, and `paddock run` runs a controller
//! that names it by `image`; pulls that cannot succeed say why.

mod common;
// Shared with the other process tests; not every helper is used here.
#[allow(dead_code)]
mod hosts;

use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use oci_client::secrets::RegistryAuth;
use paddock::oci::{OciError, PullLimits, Registries};
use sha2::Digest as _;

use common::{cache_dir, module};
use hosts::{bound_port, deployment, embedded_cluster_with, http_get, wait_for, wait_within};

/// `paddock push MODULE REF --plain-http`: what it printed.
fn push(module: &std::path::Path, reference: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("push")
        .arg(module)
        .arg(reference)
        .arg("--plain-http")
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("paddock push runs");
    assert!(
        output.status.success(),
        "paddock push failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// One controllers-file entry running `replica_floor` as `name` from
/// `image`, checking its tag every `poll_seconds` (0: never).
fn image_entry(name: &str, image: &str, poll_seconds: u64) -> String {
    format!(
        "- name: {name}
  image: {image}
  pollSeconds: {poll_seconds}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
  - {{apiGroups: [\"\"], resources: [events], verbs: [create, patch]}}
"
    )
}

/// The controllers file `controllers.yaml` in `dir`, of `entries`.
fn controllers_file(dir: &std::path::Path, entries: &[String]) -> std::path::PathBuf {
    let config = dir.join("controllers.yaml");
    std::fs::write(&config, format!("controllers:\n{}", entries.concat()))
        .expect("write the controllers file");
    config
}

/// `paddock run` of the controllers file `config`, pulling from `registry`
/// over plain HTTP, with the compile cache `cache`, logging to `log`.
fn run_host(
    config: &std::path::Path,
    kubeconfig: &std::path::Path,
    registry: &str,
    cache: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--ops-addr",
            "127.0.0.1:0",
            "--plain-http-registry",
            registry,
        ])
        .arg("--cache-dir")
        .arg(cache)
        .env("RUST_LOG", "info")
        .env("DOCKER_CONFIG", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("a log file"))
        .spawn()
        .expect("paddock starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_runs_from_an_image_pushed_with_paddock_push() {
    let options = devcluster::Options::new().oci_registry(true);
    let (cluster, dir, kubeconfig) = embedded_cluster_with(options, "kubeconfig").await;
    let registry = cluster.oci_registry().expect("a registry").host();
    let wasm = module("replica_floor");
    let bytes = std::fs::read(&wasm).expect("the component");
    let digest = hex::encode(sha2::Sha256::digest(&bytes));

    let pinned = push(&wasm, &format!("{registry}/controllers/floor:v1"));
    assert!(
        pinned.starts_with(&format!("{registry}/controllers/floor@sha256:")),
        "push prints the reference pinned to the manifest: {pinned}"
    );

    // `floor` follows its tag; `ghost` names one never pushed.
    let config = controllers_file(
        dir.path(),
        &[
            image_entry("floor", &format!("{registry}/controllers/floor:v1"), 1),
            image_entry(
                "ghost",
                &format!("{registry}/controllers/floor:never-pushed"),
                1,
            ),
        ],
    );
    let log = dir.path().join("paddock.log");
    let mut child = run_host(&config, &kubeconfig, &registry, &cache_dir(), &log);
    let port = wait_for("paddock to bind its operations port", || async {
        bound_port(&log)
    })
    .await;

    let client = hosts::client(&kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .expect("create");
    wait_for(
        "web to be scaled to 3 by the controller from the image",
        || async {
            let replicas = deployments.get("web").await.ok()?.spec?.replicas;
            (replicas == Some(3)).then_some(())
        },
    )
    .await;
    // The module serving is the component pushed: its digest is the
    // layer's, which keys the compile cache.
    let (_, status) = http_get(port, "/status").await.expect("/status answers");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    let controller = |name: &str| {
        status["controllers"]
            .as_array()
            .and_then(|controllers| controllers.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    assert_eq!(
        controller("floor")["digest"].as_str(),
        Some(digest.as_str()),
        "{status}"
    );
    // An image that is not there fails that controller alone, saying so.
    let ghost = controller("ghost");
    assert_eq!(ghost["phase"], "failed", "{ghost}");
    assert!(
        ghost.to_string().contains("was not found"),
        "the status says why: {ghost}"
    );
    assert!(
        cluster.oci_registry().expect("a registry").blob_pulls() >= 1,
        "the component was pulled from the registry"
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("pulled the module") && log_text.contains("floor@sha256:"),
        "the pull is logged with the resolved reference:\n{log_text}"
    );

    // A new version pushed under the same tag rolls out: the host sees the
    // tag move at its next check and swaps the JavaScript build in.
    let js = std::fs::read(module("replica_floor_js")).expect("the JavaScript build");
    let js_digest = hex::encode(sha2::Sha256::digest(&js));
    let repinned = push(
        &module("replica_floor_js"),
        &format!("{registry}/controllers/floor:v1"),
    );
    assert_ne!(repinned, pinned, "the tag names a new manifest");
    // The swap compiles a 12 MB JavaScript component when no test has
    // cached it yet: seconds alone, more beside a parallel build.
    let swap = std::time::Duration::from_secs(90);
    wait_within("the new version under the tag to serve", swap, || async {
        let (_, status) = http_get(port, "/status").await?;
        let status: serde_json::Value = serde_json::from_str(&status).ok()?;
        let floor = status["controllers"]
            .as_array()?
            .iter()
            .find(|controller| controller["name"] == "floor")?
            .clone();
        (floor["digest"].as_str() == Some(js_digest.as_str())
            && floor["resolvedImage"].as_str() == Some(repinned.as_str()))
        .then_some(())
    })
    .await;
    deployments
        .create(&PostParams::default(), &deployment("api", 2))
        .await
        .expect("create");
    wait_for("api to be scaled to 2 by the new version", || async {
        let replicas = deployments.get("api").await.ok()?.spec?.replicas;
        (replicas == Some(2)).then_some(())
    })
    .await;

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = common::exits(&mut child, "paddock");
    assert_eq!(
        exit.code(),
        Some(1),
        "paddock stops on SIGTERM, and its status says a controller failed at start: {exit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_that_cannot_succeed_say_why() {
    let options = devcluster::Options::new()
        .oci_registry_options(devcluster::OciOptions::new().basic_auth("tenant", "right"));
    let (cluster, _dir, _kubeconfig) = embedded_cluster_with(options, "kubeconfig").await;
    let registry = cluster.oci_registry().expect("a registry").host();
    let bytes = std::fs::read(module("replica_floor")).expect("the component");
    let right = RegistryAuth::Basic("tenant".into(), "right".into());
    let registries = Registries::new(vec![registry.clone()], PullLimits::default());
    let reference = format!("{registry}/controllers/floor:v1");
    registries
        .push(bytes.clone(), &reference, &right)
        .await
        .expect("push with the right credentials");
    let pulled = registries
        .pull(&reference, &right)
        .await
        .expect("pull with the right credentials");
    assert_eq!(&*pulled.bytes, bytes.as_slice());
    assert_eq!(
        pulled.digest,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
    );
    // Pinned by digest, it pulls the same.
    let again = registries
        .pull(&pulled.resolved, &right)
        .await
        .expect("pull by digest");
    assert_eq!(again.digest, pulled.digest);

    // The same `Registries` pulled with the right credentials just now:
    // another pull secret must not ride on them.
    let wrong = RegistryAuth::Basic("tenant".into(), "wrong".into());
    let error = registries.pull(&reference, &wrong).await.unwrap_err();
    assert!(
        matches!(error, OciError::Unauthorized { .. }),
        "wrong password: {error}"
    );
    assert!(error.to_string().contains("pull secret"), "{error}");
    let error = registries
        .pull(&reference, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(
        matches!(error, OciError::Unauthorized { .. }),
        "anonymous: {error}"
    );

    let missing = format!("{registry}/controllers/floor:v9");
    let error = registries.pull(&missing, &right).await.unwrap_err();
    assert!(
        matches!(error, OciError::NotFound { .. }),
        "missing tag: {error}"
    );
    assert!(error.to_string().contains("was not found"), "{error}");
    let unknown = format!("{registry}/controllers/floor@sha256:{}", "0".repeat(64));
    let error = registries.pull(&unknown, &right).await.unwrap_err();
    assert!(
        matches!(error, OciError::NotFound { .. }),
        "unknown digest: {error}"
    );

    // A registry that serves other bytes than the layer's digest: refused,
    // saying so.
    let mut tampered = bytes.clone();
    tampered[100] ^= 0xff;
    assert!(
        cluster.oci_registry().expect("a registry").tamper_blob(
            "controllers/floor",
            &pulled.digest,
            tampered
        ),
        "the layer is in the registry"
    );
    let error = registries.pull(&reference, &right).await.unwrap_err();
    assert!(
        matches!(error, OciError::DigestMismatch { .. }),
        "tampered layer: {error}"
    );
    assert!(error.to_string().contains(&pulled.digest), "{error}");

    let small = Registries::new(
        vec![registry.clone()],
        PullLimits {
            max_bytes: 1024,
            ..PullLimits::default()
        },
    );
    let error = small.pull(&reference, &right).await.unwrap_err();
    assert!(
        matches!(error, OciError::TooLarge { max: 1024, .. }),
        "oversized: {error}"
    );
}

/// The value of `paddock_component_loads_total{source=...}` in `metrics`.
fn loads(metrics: &str, source: &str) -> Option<u64> {
    let prefix = format!("paddock_component_loads_total{{source=\"{source}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_pulling_the_same_image_compiles_nothing() {
    let options = devcluster::Options::new().oci_registry(true);
    let (cluster, dir, kubeconfig) = embedded_cluster_with(options, "kubeconfig").await;
    let registry = cluster.oci_registry().expect("a registry").host();
    let image = format!("{registry}/controllers/floor:v1");
    push(&module("replica_floor"), &image);
    let config = controllers_file(dir.path(), &[image_entry("floor", &image, 0)]);
    // A compile cache of their own, empty at first, that both hosts share
    // (as two replicas share a volume, or one host restarts).
    let cache = dir.path().join("cache");
    let mut seen = Vec::new();
    for host in ["first", "second"] {
        let log = dir.path().join(format!("{host}.log"));
        let mut child = run_host(&config, &kubeconfig, &registry, &cache, &log);
        let port = wait_for("paddock to bind its operations port", || async {
            bound_port(&log)
        })
        .await;
        let metrics = wait_for(&format!("the {host} host to load the image"), || async {
            let (_, metrics) = http_get(port, "/metrics").await?;
            let loaded = loads(&metrics, "cache")? + loads(&metrics, "compiled")?;
            (loaded >= 1).then_some(metrics)
        })
        .await;
        seen.push((
            loads(&metrics, "compiled").unwrap_or(u64::MAX),
            loads(&metrics, "cache").unwrap_or(u64::MAX),
        ));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        common::exits(&mut child, &format!("the {host} host"));
    }
    assert_eq!(
        seen,
        vec![(1, 0), (0, 1)],
        "(compiled, from the cache) per host: the first compiles, the second pulls the same digest and compiles nothing"
    );
    assert!(
        cluster.oci_registry().expect("a registry").blob_pulls() >= 2,
        "both hosts pulled the image"
    );
}
