//! Hot reload from files on the embedded cluster: a module file edited
//! under a running controller swaps it live with no lost work, a broken
//! new version leaves the old one serving, and a removed entry stops its
//! guest and releases what only it watched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use paddock::controller::{ControllerStats, Runtime};
use paddock::ops::OpsState;
use paddock::reload::{Phase, Supervisor, files};
use paddock::wasm::compile_cache::digest;
use paddock_tests::{cluster, engine, eventually, guest, status_where};
use serde_json::json;

/// How long a reload may take in these tests (compiles are cached; the
/// bound is for a loaded machine).
const RELOAD_SECONDS: u64 = 60;

const STAMP_GRANT: &str =
    "  - {apiGroups: [\"\"], resources: [configmaps], verbs: [get, list, watch, patch]}
  - {apiGroups: [\"\"], resources: [events], verbs: [create, patch]}
";

fn stamp_entry(module: &str) -> String {
    format!(
        "- name: stamp\n  module: {module}\n  limits: {{concurrency: 4}}\n  grant:\n{STAMP_GRANT}"
    )
}

fn floor_entry(module: &Path) -> String {
    format!(
        "- name: floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  - {{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}}
",
        module.display()
    )
}

/// Replaces a file's bytes in place, as a build tool or `cp` does.
fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

fn module_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("read a built guest")
}

struct Setup {
    _cluster: devcluster::DevCluster,
    client: kube::Client,
    supervisor: Supervisor,
    _source: files::FileSource,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// A cluster, a controllers file with `entries` (module paths relative to
/// a temporary folder holding `stamp.wasm` = stamp-v1), and a supervisor
/// watching it.
async fn setup(entries: &str) -> Setup {
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("stamp.wasm"), &module_bytes("stamp-v1"));
    let config = dir.path().join("controllers.yaml");
    write(&config, format!("controllers:\n{entries}").as_bytes());
    let supervisor = Supervisor::new(engine(), Runtime::new(client.clone()));
    let source =
        files::watch(&config, supervisor.clone()).expect("the controllers file is watched");
    Setup {
        _cluster: cluster,
        client,
        supervisor,
        _source: source,
        dir,
        config,
    }
}

impl Setup {
    fn module(&self) -> PathBuf {
        self.dir.path().join("stamp.wasm")
    }
}

fn stamped(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"paddock.dev/stamp": "yes"}},
        "data": {"value": value},
    }))
    .expect("a ConfigMap")
}

/// The (version, value) stamps of every stamped ConfigMap, by name.
async fn stamps(api: &Api<ConfigMap>) -> BTreeMap<String, (String, String, String)> {
    api.list(&ListParams::default().labels("paddock.dev/stamp"))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|map| {
            let annotations = map.metadata.annotations.clone().unwrap_or_default();
            let value = map
                .data
                .as_ref()
                .and_then(|data| data.get("value").cloned())
                .unwrap_or_default();
            (
                map.metadata.name.clone().unwrap_or_default(),
                (
                    annotations
                        .get("stamp.paddock.dev/version")
                        .cloned()
                        .unwrap_or_default(),
                    annotations
                        .get("stamp.paddock.dev/value")
                        .cloned()
                        .unwrap_or_default(),
                    value,
                ),
            )
        })
        .collect()
}

/// Waits until every stamped ConfigMap carries `version` and its current
/// value.
async fn all_stamped(api: &Api<ConfigMap>, count: usize, version: &str) {
    eventually(
        RELOAD_SECONDS,
        &format!("{count} ConfigMaps stamped by {version}"),
        || async {
            let stamps = stamps(api).await;
            (stamps.len() == count
                && stamps
                    .values()
                    .all(|(by, seen, value)| by == version && seen == value))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_module_swaps_it_live_and_every_update_ends_in_the_new_state() {
    let setup = setup(&stamp_entry("stamp.wasm")).await;
    let v1 = module_bytes("stamp-v1");
    let v2 = module_bytes("stamp-v2");
    status_where(
        setup.supervisor.board(),
        "stamp",
        "stamp-v1 running",
        |status| status.phase == Phase::Running && status.digest.as_deref() == Some(&digest(&v1)),
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(setup.client.clone(), "default");
    const OBJECTS: usize = 30;
    for index in 0..OBJECTS {
        api.create(
            &PostParams::default(),
            &stamped(&format!("cm-{index}"), "0"),
        )
        .await
        .expect("create");
    }
    all_stamped(&api, OBJECTS, "stamp-v1").await;

    // A stream of updates; the module is replaced while it flows.
    const ROUNDS: usize = 8;
    let (halfway_tx, halfway) = tokio::sync::oneshot::channel();
    let updates = {
        let api = api.clone();
        tokio::spawn(async move {
            let mut halfway_tx = Some(halfway_tx);
            for round in 1..=ROUNDS {
                for index in 0..OBJECTS {
                    api.patch(
                        &format!("cm-{index}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"value": round.to_string()}})),
                    )
                    .await
                    .expect("update");
                }
                if round == ROUNDS / 2
                    && let Some(tx) = halfway_tx.take()
                {
                    let _ = tx.send(());
                }
            }
        })
    };
    halfway.await.expect("the updates reach halfway");
    write(&setup.module(), &v2);
    updates.await.expect("the updates finish");

    all_stamped(&api, OBJECTS, "stamp-v2").await;
    let status = status_where(
        setup.supervisor.board(),
        "stamp",
        "stamp-v2 serving",
        |status| status.digest.as_deref() == Some(&digest(&v2)),
    )
    .await;
    assert_eq!(status.phase, Phase::Running);
    assert_eq!(status.reloads, 1, "one swap: {status:?}");
    assert_eq!(status.reload_failures, 0, "{status:?}");
    let handle = status.handle.expect("a running controller");
    assert_eq!(ControllerStats::get(&handle.stats().overlaps), 0);
    assert_eq!(ControllerStats::get(&handle.stats().guest_errors), 0);
    assert_eq!(handle.reloads(), 1);
    let stamps = stamps(&api).await;
    assert!(
        stamps
            .values()
            .all(|(_, seen, _)| seen == &ROUNDS.to_string()),
        "every object ends with the last value: {stamps:?}"
    );
    setup.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_new_version_leaves_the_old_one_serving_and_says_why() {
    let setup = setup(&stamp_entry("stamp.wasm")).await;
    let v1 = digest(&module_bytes("stamp-v1"));
    status_where(
        setup.supervisor.board(),
        "stamp",
        "stamp-v1 running",
        |status| status.phase == Phase::Running,
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(setup.client.clone(), "default");

    // Not a component at all.
    write(&setup.module(), b"this is not a component");
    let status = status_where(
        setup.supervisor.board(),
        "stamp",
        "the broken module reported",
        |status| status.reload_failures >= 1,
    )
    .await;
    assert_eq!(status.phase, Phase::Degraded, "{status:?}");
    assert_eq!(
        status.digest.as_deref(),
        Some(v1.as_str()),
        "v1 still serves"
    );
    let message = status.last_reload_error.expect("an error").message;
    assert!(
        message.contains("stamp.wasm") && message.contains("not a WebAssembly component"),
        "the error names the file and the reason: {message}"
    );
    api.create(&PostParams::default(), &stamped("after-garbage", "a"))
        .await
        .expect("create");
    all_stamped(&api, 1, "stamp-v1").await;

    // A valid component whose watches exceed the grant.
    write(&setup.module(), &module_bytes("replica-floor"));
    let status = status_where(
        setup.supervisor.board(),
        "stamp",
        "the over-reaching module reported",
        |status| status.reload_failures >= 2,
    )
    .await;
    assert_eq!(status.phase, Phase::Degraded, "{status:?}");
    assert_eq!(
        status.digest.as_deref(),
        Some(v1.as_str()),
        "v1 still serves"
    );
    let message = status.last_reload_error.expect("an error").message;
    assert!(
        message.contains("beyond its grant") && message.contains("deployments"),
        "{message}"
    );
    // The fix names where the grant is written.
    assert!(
        message.contains(&format!(
            "to `grant` of controller `stamp` in {}",
            setup.config.display()
        )),
        "{message}"
    );
    let ops = OpsState::new(
        setup.supervisor.runtime().informers().clone(),
        setup.supervisor.board().clone(),
    );
    let metrics = paddock::ops::render(&ops);
    assert!(
        metrics.contains("paddock_reloads_total{controller=\"stamp\",result=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        setup
            .supervisor
            .runtime()
            .informers()
            .find("apps/v1", "Deployment", None)
            .is_empty(),
        "a refused version releases the informers it took"
    );

    // A good version then swaps in.
    let v2 = module_bytes("stamp-v2");
    write(&setup.module(), &v2);
    let status = status_where(
        setup.supervisor.board(),
        "stamp",
        "stamp-v2 serving",
        |status| status.digest.as_deref() == Some(&digest(&v2)),
    )
    .await;
    assert_eq!(status.phase, Phase::Running);
    all_stamped(&api, 1, "stamp-v2").await;

    // Touching the file without changing it does nothing: once the source
    // has read it again, nothing reloaded.
    let passes = || {
        let sources = setup.supervisor.board().sources();
        (
            sources.values().map(|source| source.passes).sum::<u64>(),
            sources.values().map(|source| source.changes).sum::<u64>(),
        )
    };
    let (before, changes) = passes();
    write(&setup.module(), &v2);
    write(
        &setup.config,
        std::fs::read(&setup.config).expect("read").as_slice(),
    );
    eventually(RELOAD_SECONDS, "the touched file read again", || async {
        (passes().0 > before).then_some(())
    })
    .await;
    assert_eq!(passes().1, changes, "the pass changed no controller");
    let after = setup.supervisor.board().get("stamp").expect("status");
    assert_eq!(after.reloads, status.reloads, "no reload without a change");
    setup.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_entry_stops_its_guest_and_unwatches_what_only_it_needed() {
    let floor = guest("replica-floor");
    let setup = setup(&format!(
        "{}{}",
        stamp_entry("stamp.wasm"),
        floor_entry(&floor)
    ))
    .await;
    for name in ["stamp", "floor"] {
        status_where(
            setup.supervisor.board(),
            name,
            &format!("{name} running"),
            |status| status.phase == Phase::Running,
        )
        .await;
    }
    let informers = setup.supervisor.runtime().informers().clone();
    assert_eq!(informers.find("apps/v1", "Deployment", None).len(), 1);
    let stamp_before = setup.supervisor.board().get("stamp").expect("stamp");

    // A broken controllers file changes nothing and is reported.
    write(&setup.config, b"controllers: [this is: not valid");
    eventually(RELOAD_SECONDS, "the broken file reported", || async {
        setup
            .supervisor
            .board()
            .sources()
            .values()
            .find_map(|source| source.error.clone())
    })
    .await;
    assert!(setup.supervisor.board().get("floor").is_some());

    write(
        &setup.config,
        format!("controllers:\n{}", stamp_entry("stamp.wasm")).as_bytes(),
    );
    eventually(RELOAD_SECONDS, "floor stopped", || async {
        setup
            .supervisor
            .board()
            .get("floor")
            .is_none()
            .then_some(())
    })
    .await;
    eventually(
        RELOAD_SECONDS,
        "the Deployment informer released",
        || async {
            informers
                .find("apps/v1", "Deployment", None)
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let stamp_after = setup
        .supervisor
        .board()
        .get("stamp")
        .expect("stamp still declared");
    assert_eq!(stamp_after.phase, Phase::Running);
    assert_eq!(
        stamp_after.reloads, stamp_before.reloads,
        "stamp was not touched"
    );
    assert!(
        setup
            .supervisor
            .board()
            .sources()
            .values()
            .all(|source| source.error.is_none()),
        "the fixed file clears the source error"
    );

    // Once the host stops, a change of the file starts nothing: a
    // controller started then would outlive the shutdown.
    setup.supervisor.shutdown().await;
    let passes = || {
        setup
            .supervisor
            .board()
            .sources()
            .values()
            .map(|source| source.passes)
            .sum::<u64>()
    };
    let before = passes();
    write(
        &setup.config,
        format!("controllers:\n{}", floor_entry(&floor)).as_bytes(),
    );
    eventually(RELOAD_SECONDS, "the file read once more", || async {
        (passes() > before).then_some(())
    })
    .await;
    assert!(
        setup.supervisor.board().all().is_empty(),
        "nothing declared"
    );
    assert!(
        informers.find("apps/v1", "Deployment", None).is_empty(),
        "nothing watched"
    );
}

/// On one thread, nothing else runs between reading the file and looking
/// at the board: a declared controller is there at once, loading, so that
/// `paddock run`, which waits for the declared controllers to settle, never
/// finds none.
#[tokio::test]
async fn a_declared_controller_is_on_the_board_before_its_task_runs() {
    let setup = setup(&stamp_entry("stamp.wasm")).await;
    let status = setup
        .supervisor
        .board()
        .get("stamp")
        .expect("stamp is on the board as soon as it is declared");
    assert_eq!(status.phase, Phase::Loading);
    status_where(
        setup.supervisor.board(),
        "stamp",
        "stamp running",
        |status| status.phase == Phase::Running,
    )
    .await;
    setup.supervisor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_files_beside_the_controllers_file_are_no_reason_to_read_it() {
    let setup = setup(&stamp_entry("stamp.wasm")).await;
    let source = setup.config.display().to_string();
    let status = || {
        setup
            .supervisor
            .board()
            .sources()
            .get(&source)
            .cloned()
            .unwrap_or_default()
    };
    eventually(RELOAD_SECONDS, "the file read once", || async {
        (status().passes >= 1).then_some(())
    })
    .await;
    // Broken: each read of it now counts an error.
    write(&setup.config, b"controllers: [oops");
    eventually(RELOAD_SECONDS, "the broken file reported", || async {
        (status().errors == 1).then_some(())
    })
    .await;
    // A log written beside it, line by line.
    let log = setup.dir.path().join("host.log");
    for line in 0..20 {
        let mut text = std::fs::read_to_string(&log).unwrap_or_default();
        text.push_str(&format!("line {line}\n"));
        write(&log, text.as_bytes());
    }
    // Nothing may happen: no condition marks that, so the check waits
    // 1 s, two hundred times the time a change takes to settle.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(status().errors, 1, "the log's writes made the file be read");
    // The file itself still counts.
    write(
        &setup.config,
        format!("controllers:\n{}", stamp_entry("stamp.wasm")).as_bytes(),
    );
    eventually(RELOAD_SECONDS, "the mended file read", || async {
        (status().error.is_none()).then_some(())
    })
    .await;
    assert_eq!(status().errors, 1);
}
