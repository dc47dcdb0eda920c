//! Helpers shared by the end-to-end tests: where the built guests are, and
//! an engine that shares one compile cache across test binaries.

use std::path::PathBuf;
use std::sync::OnceLock;

use paddock::wasm::{EngineOptions, WasmEngine};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    tests_dir.parent().map(PathBuf::from).unwrap_or(tests_dir)
}

/// Where `cargo xtask build-guests` puts the guest components:
/// `$PADDOCK_GUESTS_DIR`, else `target/guests/wasm32-wasip2/release`.
pub fn guests_dir() -> PathBuf {
    std::env::var_os("PADDOCK_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/guests/wasm32-wasip2/release"))
}

/// The path of a built guest component, by crate name (`replica-floor`).
///
/// # Panics
/// When the component has not been built, with the command that builds it.
pub fn guest(crate_name: &str) -> PathBuf {
    let path = guests_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the guests with `cargo xtask build-guests` \
         (`cargo xtask test` does it for you)",
        path.display()
    );
    path
}

/// The compile cache the test suite shares, so that each guest is compiled
/// once per build rather than once per test.
pub fn shared_cache_dir() -> PathBuf {
    std::env::var_os("PADDOCK_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/paddock-cache"))
}

/// One engine per test binary, using the shared compile cache.
///
/// # Panics
/// When the engine cannot be created.
pub fn engine() -> WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            WasmEngine::new(EngineOptions::default().cache_dir(Some(shared_cache_dir())))
                .expect("the wasm engine starts")
        })
        .clone()
}

/// A fresh embedded cluster and a client for it, as a user's kubeconfig
/// would give.
///
/// # Panics
/// When the cluster does not start or its kubeconfig is unusable.
pub async fn cluster() -> (devcluster::DevCluster, kube::Client) {
    cluster_with(devcluster::Options::new()).await
}

/// Like [`cluster`], started with `options` (and the workload simulator).
///
/// # Panics
/// When the cluster does not start.
pub async fn cluster_with(options: devcluster::Options) -> (devcluster::DevCluster, kube::Client) {
    let cluster = devcluster::DevCluster::start(options.workload_simulator(true))
        .await
        .expect("the embedded cluster starts");
    let client = client_for(&cluster.kubeconfig_yaml()).await;
    (cluster, client)
}

/// A client as the host builds it ([`paddock::cluster::client`]) from a
/// kubeconfig's text.
///
/// # Panics
/// When the kubeconfig is unusable.
pub async fn client_for(kubeconfig: &str) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(kubeconfig).expect("the kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("the kubeconfig is usable");
    paddock::cluster::client(config).expect("a client")
}

/// Waits until `check` answers `Some`, polling every 20 ms, for at most
/// `seconds`.
///
/// # Panics
/// With `what` when the condition is not met in time.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until a supervisor's status of controller `name` passes `check`
/// (60 s at most; a reload compiles from the shared cache).
///
/// # Panics
/// With `what` when it does not in time.
pub async fn status_where(
    board: &paddock::reload::StatusBoard,
    name: &str,
    what: &str,
    check: impl Fn(&paddock::reload::EntryStatus) -> bool,
) -> paddock::reload::EntryStatus {
    eventually(60, what, || async {
        board.get(name).filter(|status| check(status))
    })
    .await
}

/// The `App` custom resource of the app-operator example.
pub fn app_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "examples.paddock.dev".into(),
        version: "v1".into(),
        api_version: "examples.paddock.dev/v1".into(),
        kind: "App".into(),
        plural: "apps".into(),
    }
}

/// Applies the app-operator example's CRD (`App`).
///
/// # Panics
/// When the CRD does not parse or is refused.
pub async fn apply_app_crd(client: &kube::Client) {
    let path = workspace_root().join("guest-examples/app-operator/deploy/crd.yaml");
    let crd = paddock::harness::read_object(&path).expect("the CRD parses");
    let resource = kube::core::ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(client.clone(), &resource);
    crds.patch(
        "apps.examples.paddock.dev",
        &kube::api::PatchParams::apply("paddock-tests"),
        &kube::api::Patch::Apply(&crd),
    )
    .await
    .expect("the CRD is applied");
}
