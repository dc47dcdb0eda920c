//! `paddock new` makes a project in each language that `paddock build`
//! builds (and `--push` publishes to a registry) and that passes its own
//! fixtures straight away: a reconcile that reads the cache, and a `map`
//! that looks Deployments up by an index. A failing fixture shows a diff,
//! and `paddock test --map` maps one object offline.
//!
//! The builds reuse what the test suite already has: the Rust scaffold
//! builds in the guests' target folder (its dependencies are compiled
//! there), and the Python and JavaScript ones use the toolchains that
//! `cargo xtask setup` installed into `.venv` and `node_modules`.

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{cache_dir, root};

fn paddock(args: &[&std::ffi::OsStr], dir: &Path) -> Output {
    let root = root();
    let componentize_py = root.join(".venv/bin/componentize-py");
    let componentize_js = root.join("node_modules/.bin/componentize-js");
    for tool in [&componentize_py, &componentize_js] {
        assert!(
            tool.is_file(),
            "{} is missing: run `cargo xtask setup` (`cargo xtask test` does it)",
            tool.display()
        );
    }
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", root.join("target/guests"))
        .env("PADDOCK_COMPONENTIZE_PY", componentize_py)
        .env("PADDOCK_COMPONENTIZE_JS", componentize_js)
        .env("PADDOCK_CACHE_DIR", cache_dir())
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("paddock runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeds(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// `paddock test` passes the scaffold's two fixtures.
fn passes_its_fixtures(component: &Path, project: &Path) {
    let tested = succeeds(
        &paddock(
            &[
                "test".as_ref(),
                component.as_os_str(),
                "--fixture".as_ref(),
                "fixtures".as_ref(),
            ],
            project,
        ),
        "paddock test",
    );
    assert!(tested.contains("2 passed, 0 failed"), "{tested}");
}

/// Scaffolds, builds and tests a project in `language`.
fn scaffold_builds_and_passes(language: &str) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let name = format!("hello-{language}");
    succeeds(
        &paddock(
            &[
                "new".as_ref(),
                "--lang".as_ref(),
                language.as_ref(),
                name.as_ref(),
            ],
            dir.path(),
        ),
        "paddock new",
    );
    let project = dir.path().join(&name);
    // A registry to publish to, as a guest author would with `--push`.
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let registry = runtime
        .block_on(devcluster::OciRegistry::start(devcluster::OciOptions::new()))
        .expect("the registry starts");
    let reference = format!("{}/scaffolds/{name}:v1", registry.host());
    let build = paddock(
        &[
            "build".as_ref(),
            "--push".as_ref(),
            reference.as_ref(),
            "--plain-http".as_ref(),
        ],
        &project,
    );
    let built = succeeds(&build, "paddock build --push");
    assert!(
        !text(&build.stderr).contains("predates contract"),
        "a new project builds against the newest world: {}",
        text(&build.stderr)
    );
    let component = project.join(format!("{name}.wasm"));
    let mut printed = built.lines();
    assert_eq!(
        printed.next(),
        Some(component.display().to_string().as_str())
    );
    assert!(component.is_file(), "the component is built");
    let pinned = printed.next().unwrap_or_default();
    assert!(
        pinned.starts_with(&format!("{}/scaffolds/{name}@sha256:", registry.host())),
        "the pushed reference, pinned: {built}"
    );
    let registries = paddock::oci::Registries::new(vec![registry.host()], Default::default());
    let pulled = runtime
        .block_on(registries.pull(&reference, &paddock::oci::RegistryAuth::Anonymous))
        .expect("the pushed component pulls");
    assert_eq!(
        *pulled.bytes,
        *std::fs::read(&component).expect("the component"),
        "the registry holds the component built"
    );

    passes_its_fixtures(&component, &project);

    let mapped = succeeds(
        &paddock(
            &[
                "test".as_ref(),
                component.as_os_str(),
                "--map".as_ref(),
                "--object".as_ref(),
                "fixtures/configmap-changed/object.yaml".as_ref(),
                "--cache".as_ref(),
                "fixtures/configmap-changed/cache".as_ref(),
            ],
            &project,
        ),
        "paddock test --map",
    );
    let expected_primaries =
        std::fs::read_to_string(project.join("fixtures/configmap-changed/expected.yaml"))
            .expect("the map fixture");
    assert_eq!(
        mapped.trim(),
        expected_primaries.trim(),
        "`--map` prints the primaries as the fixture holds them"
    );

    // A wrong expectation fails with a diff of the one line that differs.
    let rollout = project.join("fixtures/rollout/expected.yaml");
    let right = std::fs::read_to_string(&rollout).expect("the rollout fixture");
    std::fs::write(&rollout, right.replace("settings=41", "settings=40")).expect("edit");
    let failed = paddock(
        &[
            "test".as_ref(),
            component.as_os_str(),
            "--fixture".as_ref(),
            "fixtures".as_ref(),
        ],
        &project,
    );
    let report = text(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{report}");
    assert!(report.contains("1 passed, 1 failed"), "{report}");
    let changed: Vec<&str> = report
        .lines()
        .filter(|line| {
            (line.starts_with('-') || line.starts_with('+'))
                && !line.starts_with("---")
                && !line.starts_with("+++")
        })
        .collect();
    assert_eq!(
        changed,
        [
            "-              example.com/config-versions: features=7,settings=40",
            "+              example.com/config-versions: features=7,settings=41",
        ],
        "{report}"
    );

    let described = succeeds(
        &paddock(&["describe".as_ref(), component.as_os_str()], &project),
        "paddock describe",
    );
    assert!(described.contains(&format!("name: {name}")), "{described}");
    assert!(
        described.contains("name: by-configmap")
            && described.contains(".spec.template.spec.volumes[*].configMap.name"),
        "describe shows the index: {described}"
    );
}

#[test]
fn a_rust_scaffold_builds_and_passes_its_fixture() {
    scaffold_builds_and_passes("rust");
}

#[test]
fn a_python_scaffold_builds_and_passes_its_fixture() {
    scaffold_builds_and_passes("python");
}

#[test]
fn a_js_scaffold_builds_and_passes_its_fixture() {
    scaffold_builds_and_passes("js");
}

/// A JavaScript project made before contract 0.1.5 (its `wit/` has no
/// world `controller-json`) still builds, against `controller`, saying
/// so; its fixtures still pass.
#[test]
fn a_js_project_from_before_0_1_5_builds_against_controller() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    succeeds(
        &paddock(
            &[
                "new".as_ref(),
                "--lang".as_ref(),
                "js".as_ref(),
                "old".as_ref(),
            ],
            dir.path(),
        ),
        "paddock new",
    );
    let project = dir.path().join("old");
    let wit = project.join("wit/controller.wit");
    let contract = std::fs::read_to_string(&wit).expect("the contract");
    let world = contract
        .find("/// `controller`, with `reconcile` also answered as JSON.")
        .expect("the world controller-json is documented");
    std::fs::write(&wit, &contract[..world]).expect("the contract, as it was");
    let built = paddock(&["build".as_ref()], &project);
    succeeds(&built, "paddock build");
    assert!(
        text(&built.stderr).contains("predates contract 0.1.5"),
        "{}",
        text(&built.stderr)
    );
    let component = project.join("old.wasm");
    passes_its_fixtures(&component, &project);
}

#[test]
fn new_refuses_a_folder_that_exists() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir(dir.path().join("taken")).expect("a folder");
    let output = paddock(
        &[
            "new".as_ref(),
            "--lang".as_ref(),
            "python".as_ref(),
            "taken".as_ref(),
        ],
        dir.path(),
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("taken already exists: choose another name, or remove it first"),
        "{stderr}"
    );
}

#[test]
fn build_names_what_a_project_needs() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let output = paddock(&["build".as_ref()], dir.path());
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("expected Cargo.toml (Rust), app.py (Python) or app.js (JavaScript)"),
        "{stderr}"
    );
}
