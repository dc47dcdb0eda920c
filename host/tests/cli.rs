//! The `paddock` command: `test` and `describe` on the example guests.

// Shared with the tests that run hosts; stopping one is not used here.
#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{cache_dir, module, root};
fn fixture(example: &str, case: &str) -> PathBuf {
    root()
        .join("guest-examples")
        .join(example)
        .join("fixtures")
        .join(case)
}

fn paddock(args: &[&std::ffi::OsStr]) -> Output {
    let cache = cache_dir();
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("paddock runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn test_prints_the_actions_as_json() {
    let case = fixture("replica-floor", "below-floor");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--object".as_ref(),
        case.join("object.yaml").as_os_str(),
        "-o".as_ref(),
        "json".as_ref(),
    ]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let outcome: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the output is JSON");
    assert_eq!(outcome["actions"][0]["scale"]["replicas"], 3);
    assert_eq!(outcome["actions"][1]["event"]["reason"], "ScaledUp");
}

#[test]
fn test_prints_yaml_by_default() {
    let case = fixture("replica-floor", "below-floor");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--object".as_ref(),
        case.join("object.yaml").as_os_str(),
    ]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("actions:"), "{stdout}");
    assert!(stdout.contains("replicas: 3"), "{stdout}");
}

#[test]
fn test_exits_non_zero_with_the_guest_error() {
    let case = fixture("label-policy", "namespace-not-cached");
    let output = paddock(&[
        "test".as_ref(),
        module("label_policy").as_os_str(),
        "--object".as_ref(),
        case.join("object.yaml").as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(
            "guest `label-policy` failed (transient): namespace payments is not in the cache yet"
        ),
        "stderr: {}",
        text(&output.stderr)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn test_checks_fixture_folders() {
    let fixtures = root().join("guest-examples/label-policy/fixtures");
    let output = paddock(&[
        "test".as_ref(),
        module("label_policy").as_os_str(),
        "--fixture".as_ref(),
        fixtures.as_os_str(),
    ]);
    assert!(output.status.success(), "stdout: {}", text(&output.stdout));
    assert!(text(&output.stdout).contains("6 passed, 0 failed"));
}

#[test]
fn a_failing_fixture_shows_expected_and_actual() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let case = dir.path().join("wrong");
    std::fs::create_dir_all(&case).expect("mkdir");
    std::fs::copy(
        fixture("replica-floor", "below-floor").join("object.yaml"),
        case.join("object.yaml"),
    )
    .expect("copy");
    std::fs::write(case.join("expected.yaml"), "actions: []\n").expect("write");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--fixture".as_ref(),
        case.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
    // A unified diff: the expected line taken away, the answer's added.
    assert!(stdout.contains("--- expected.yaml\n+++ got\n"), "{stdout}");
    assert!(
        stdout.lines().any(|line| line == "-actions: []"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line.starts_with("+actions:")),
        "{stdout}"
    );
}

#[test]
fn describe_prints_the_watches() {
    let output = paddock(&["describe".as_ref(), module("app_operator").as_os_str()]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("name: app-operator"), "{stdout}");
    assert!(stdout.contains("kind: App"), "{stdout}");
    assert!(stdout.contains("relation: owned"), "{stdout}");
}

#[test]
fn a_malformed_object_file_is_named() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let object = dir.path().join("broken.yaml");
    std::fs::write(&object, "apiVersion: v1\nkind: [\n").expect("write");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--object".as_ref(),
        object.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("broken.yaml is not valid YAML"), "{stderr}");
    // The snippet is headed with the file, the line and the column.
    assert!(
        stderr.contains(&format!(" --> {}:2:7", object.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("<input>"), "{stderr}");
}

/// The replica-floor guest's object of `below-floor`, at `api_version`.
fn floor_object(dir: &std::path::Path, api_version: &str, kind: &str) -> PathBuf {
    let object =
        std::fs::read_to_string(fixture("replica-floor", "below-floor").join("object.yaml"))
            .expect("read the object")
            .replace("apiVersion: apps/v1", &format!("apiVersion: {api_version}"))
            .replace("kind: Deployment", &format!("kind: {kind}"));
    let path = dir.join("object.yaml");
    std::fs::write(&path, object).expect("write");
    path
}

#[test]
fn an_action_on_an_unserved_kind_is_a_warning_and_fails_its_fixture() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let case = dir.path().join("apps-v2");
    std::fs::create_dir(&case).expect("mkdir");
    let object = floor_object(&case, "apps/v2", "Deployment");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--object".as_ref(),
        object.as_os_str(),
    ]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "warning: action #0 (scale) targets kind `Deployment` of `apps/v2`, which is not \
             served; `Deployment` is served as `apps/v1`\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: action #1 (record-event) targets kind `Deployment` of `apps/v2`"),
        "{stderr}"
    );

    // Expecting exactly what the guest answers does not make the kind right.
    std::fs::write(case.join("expected.yaml"), &output.stdout).expect("write");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--fixture".as_ref(),
        case.as_os_str(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "FAILED  {}\n  action #0 (scale) targets kind `Deployment` of `apps/v2`, which is not \
             served; `Deployment` is served as `apps/v1`\n",
            case.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn a_custom_kind_is_known_from_its_definition() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let object = floor_object(dir.path(), "example.com/v1", "Widget");
    let test = |extra: &[&std::ffi::OsStr]| {
        let module = module("replica_floor");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "test".as_ref(),
            module.as_os_str(),
            "--object".as_ref(),
            object.as_os_str(),
        ];
        args.extend_from_slice(extra);
        paddock(&args)
    };
    let output = test(&[]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "warning: action #0 (scale) targets kind `Widget` of `example.com/v1`, which is not \
             served; it is not a built-in kind, nor defined by a CustomResourceDefinition given, \
             nor declared by the guest; give its definition with `paddock test --crd FILE`, or \
             check the apiVersion and kind"
        ),
        "{stderr}"
    );

    let crds = dir.path().join("crds.yaml");
    std::fs::write(
        &crds,
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions: [{name: v1, served: true, storage: true}]
",
    )
    .expect("write");
    let output = test(&["--crd".as_ref(), crds.as_os_str()]);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert!(
        !text(&output.stderr).contains("warning"),
        "{}",
        text(&output.stderr)
    );

    std::fs::write(
        &crds,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    )
    .expect("write");
    let output = test(&["--crd".as_ref(), crds.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&format!(
            "{} holds no CustomResourceDefinition",
            crds.display()
        )),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn dev_checks_the_manifests_before_the_cluster_starts() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let config = dir.path().join("controllers.yaml");
    std::fs::write(
        &config,
        format!(
            "manifests: [crds/app.yaml]
controllers:
- name: floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
",
            module("replica_floor").display()
        ),
    )
    .expect("write");
    let dev = || {
        paddock(&[
            "dev".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--kubeconfig-out".as_ref(),
            dir.path().join("kubeconfig").as_os_str(),
        ])
    };
    let output = dev();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {}: field `manifests[0]`: {} does not exist; give the path of a YAML file of \
             objects to apply, relative to the controllers file, or remove the entry\n",
            config.display(),
            dir.path().join("crds/app.yaml").display()
        )
    );
    assert!(
        !text(&output.stdout).contains("embedded cluster"),
        "{}",
        text(&output.stdout)
    );

    std::fs::create_dir(dir.path().join("crds")).expect("mkdir");
    std::fs::write(dir.path().join("crds/app.yaml"), "kind: [unclosed\n").expect("write");
    let output = dev();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}: field `manifests[0]`: fix the manifest it names, or remove the entry: \
             {} is not valid YAML",
            config.display(),
            dir.path().join("crds/app.yaml").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            " --> {}:1:",
            dir.path().join("crds/app.yaml").display()
        )),
        "{stderr}"
    );
    assert!(
        !text(&output.stdout).contains("embedded cluster"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn a_bad_now_names_the_option() {
    let case = fixture("replica-floor", "below-floor");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--object".as_ref(),
        case.join("object.yaml").as_os_str(),
        "--now".as_ref(),
        "tomorrow".as_ref(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("option --now"), "{stderr}");
}

#[test]
fn dev_once_runs_the_demo_to_convergence() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let output = paddock(&[
        "dev".as_ref(),
        "--config".as_ref(),
        root()
            .join("guest-examples/demo/controllers.yaml")
            .as_os_str(),
        "--once".as_ref(),
        "--ops-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--kubeconfig-out".as_ref(),
        dir.path().join("kubeconfig").as_os_str(),
        "--record".as_ref(),
        dir.path().join("recordings").as_os_str(),
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        text(&output.stderr)
    );
    assert!(
        dir.path().join("kubeconfig").is_file(),
        "the kubeconfig is written"
    );
    for controller in ["replica-floor", "label-policy", "app-operator"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(controller))
            .unwrap_or_else(|| panic!("no summary row for {controller}: {stdout}"));
        let numbers: Vec<u64> = row
            .split_whitespace()
            .skip(1)
            .map(|cell| cell.parse().expect("a number"))
            .collect();
        assert!(numbers[0] > 0, "{controller} reconciled: {row}");
        // A reconcile may meet a conflict (a status update racing its own
        // watch event) and be retried; none may fail in the guest.
        assert!(numbers[1] > 0, "{controller} succeeded: {row}");
        assert_eq!(numbers[3], 0, "no guest errors for {controller}: {row}");
        assert_eq!(numbers[4], 0, "nothing denied for {controller}: {row}");
    }
    replay_the_demo(&dir.path().join("recordings"));
}

/// The demo's recording of replica-floor replays against its own module
/// with no difference, and against `floor-next` (floors above 2 count as
/// 2) with a difference on exactly the reconciles of shop/web while it had
/// fewer than its 3 replicas.
fn replay_the_demo(recordings: &std::path::Path) {
    let recording = recordings.join("replica-floor");
    for controller in ["replica-floor", "label-policy", "app-operator"] {
        assert!(
            recordings.join(controller).is_dir(),
            "{controller} is recorded"
        );
    }
    let replay = |module: &str, extra: &[&str]| {
        let module = common::module(module);
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "test".as_ref(),
            module.as_os_str(),
            "--replay".as_ref(),
            recording.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        paddock(&args)
    };
    let same = replay("replica_floor", &[]);
    let stdout = text(&same.stdout);
    assert!(same.status.success(), "{stdout}{}", text(&same.stderr));
    assert!(stdout.contains(" same, 0 differ"), "{stdout}");

    // What differs, by the recording itself.
    let mut expected = std::collections::BTreeSet::new();
    for file in std::fs::read_dir(&recording).expect("the recording") {
        let file = file.expect("an entry").path();
        let name = file
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let lines = std::fs::read_to_string(&file).expect("a segment");
        for (index, line) in lines.lines().enumerate() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let web = entry["object"]["metadata"]["name"] == "web";
            let below = entry["object"]["spec"]["replicas"].as_i64().unwrap_or(1) < 3;
            if web && below {
                expected.insert(format!("{name}:{}", index + 1));
            }
        }
    }
    assert!(
        !expected.is_empty(),
        "shop/web was recorded below its floor"
    );
    let changed = replay("floor_next", &[]);
    let stdout = text(&changed.stdout);
    assert_eq!(
        changed.status.code(),
        Some(1),
        "{stdout}{}",
        text(&changed.stderr)
    );
    let differing: std::collections::BTreeSet<String> = stdout
        .lines()
        .filter(|line| line.starts_with("DIFFERS  reconcile Deployment shop/web ("))
        .filter_map(|line| Some(line.split_once('(')?.1.split_once(')')?.0.to_owned()))
        .collect();
    assert_eq!(differing, expected, "{stdout}");
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("DIFFERS"))
            .count(),
        expected.len(),
        "{stdout}"
    );
    assert!(
        stdout.contains("-    replicas: 3") && stdout.contains("+    replicas: 2"),
        "{stdout}"
    );
    let allowed = replay("floor_next", &["--allow-diff"]);
    assert!(allowed.status.success(), "{}", text(&allowed.stdout));

    // label-policy's and app-operator's recordings replay the same too
    // (whether label-policy's holds maps depends on when the Namespace's
    // events came; tests/tests/shadow.rs replays maps for certain).
    for (controller, module) in [
        ("label-policy", "label_policy"),
        ("app-operator", "app_operator"),
    ] {
        let module = common::module(module);
        let output = paddock(&[
            "test".as_ref(),
            module.as_os_str(),
            "--replay".as_ref(),
            recordings.join(controller).as_os_str(),
        ]);
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{controller}: {stdout}");
        assert!(stdout.contains(" same, 0 differ"), "{stdout}");
    }
}

#[test]
fn replay_names_the_fix_for_a_folder_of_several_controllers() {
    let dir = tempfile::tempdir().expect("temporary dir");
    for controller in ["a", "b"] {
        let folder = dir.path().join(controller);
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::write(folder.join("00000001.jsonl"), "").expect("write");
    }
    std::fs::write(dir.path().join("a/00000001.jsonl"), "{\"version\": 1}\n").expect("write");
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--replay".as_ref(),
        dir.path().as_os_str(),
    ]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("holds the recordings of several controllers (a, b)")
            && stderr.contains(&format!("--replay {}", dir.path().join("a").display())),
        "{stderr}"
    );
    let output = paddock(&[
        "test".as_ref(),
        module("replica_floor").as_os_str(),
        "--replay".as_ref(),
        dir.path().join("a").as_os_str(),
    ]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("00000001.jsonl:1: not a recorded call")
            && stderr.contains("paddock run --record"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_resource_definitions_are_current() {
    let output = paddock(&["crd".as_ref()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let shipped =
        std::fs::read_to_string(root().join("deploy/crds.yaml")).expect("deploy/crds.yaml");
    assert!(
        text(&output.stdout) == shipped,
        "deploy/crds.yaml is stale: regenerate it with `cargo run -p paddock -- crd > deploy/crds.yaml`"
    );
}

#[test]
fn the_shipped_host_rbac_is_current() {
    let output = paddock(&[
        "rbac".as_ref(),
        "--from-cluster".as_ref(),
        "--lease-namespace=paddock-system".as_ref(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let shipped =
        std::fs::read_to_string(root().join("deploy/rbac.yaml")).expect("deploy/rbac.yaml");
    assert!(
        text(&output.stdout) == shipped,
        "deploy/rbac.yaml is stale: regenerate it with `cargo run -p paddock -- rbac --from-cluster --lease-namespace=paddock-system > deploy/rbac.yaml`"
    );
}

#[test]
fn promote_makes_the_shadow_candidate_the_module_in_the_controllers_file() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let config = dir.path().join("controllers.yaml");
    let live = module("replica_floor");
    let candidate = module("floor_next");
    let file = format!(
        "controllers:
- name: floor   # the replica floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
  shadow:
    module: {}
",
        live.display(),
        candidate.display()
    );
    std::fs::write(&config, &file).expect("write");
    let output = paddock(&[
        "promote".as_ref(),
        "floor".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let promoted = std::fs::read_to_string(&config).expect("read");
    assert_eq!(
        promoted,
        format!(
            "controllers:
- name: floor   # the replica floor
  module: {}
  grant:
  - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}}
",
            candidate.display()
        )
    );
    let again = paddock(&[
        "promote".as_ref(),
        "floor".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr)
            .contains("controller `floor`: field `shadow`: the entry declares no shadow candidate"),
        "{}",
        text(&again.stderr)
    );
}
