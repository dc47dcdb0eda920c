//! `cargo xtask`: Paddock's project tasks.
//!
//! Every task installs what it needs first (the wasm32-wasip2 Rust target,
//! and the Python and JavaScript guest toolchains into `.venv` and
//! `node_modules`), so a fresh machine needs nothing done by hand.

mod gen_extensions;
mod gen_protobuf;
mod toolchains;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// The Rust target guests are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Folders whose subfolders are guest crates.
const GUEST_FOLDERS: [&str; 2] = ["guest-examples", "tests/guests"];

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Paddock's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the toolchain pieces the project needs: the wasm32-wasip2
    /// target, componentize-py into `.venv` and componentize-js into
    /// `node_modules`, from the pinned `toolchains/requirements.txt` and
    /// `package-lock.json`.
    Setup,
    /// Build every guest component into target/guests/wasm32-wasip2/release.
    BuildGuests,
    /// Set up, build the guests, check the generated protobuf tables are current and the Rust
    /// SDK's reference builds without warnings, and run the whole test suite.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build the guests, and run the three examples on the embedded
    /// cluster with sample objects (until Ctrl-C).
    Demo {
        /// Exit once the samples have converged (always on when CI is set).
        #[arg(long)]
        once: bool,
    },
    /// Set up, build the guests, and run the benchmarks in release mode.
    Bench,
    /// Check formatting and run clippy with warnings denied.
    Lint,
    /// Write devcluster's protobuf message tables from the sources of k8s-pb and k8s-openapi.
    GenProtobuf {
        /// Fail when the committed table differs from what would be written, instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Write devcluster's tables of built-in kinds from a Kubernetes source tree: the OpenAPI
    /// extensions (list types, map keys, map types, patch merge keys, defaults) from its
    /// OpenAPI v3 documents, and the fields Go's JSON leaves out when empty from its Go types.
    GenExtensions {
        /// The root of a Kubernetes source tree (holding `api/openapi-spec/v3` and
        /// `staging/src/k8s.io`).
        kubernetes_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)
        .with_context(|| format!("cannot enter the workspace at {}", root.display()))?;
    match cli.task {
        Task::Setup => setup(&root),
        Task::BuildGuests => {
            setup(&root)?;
            build_guests(&root)
        }
        Task::Test { args } => {
            setup(&root)?;
            build_guests(&root)?;
            test(&root, &args)
        }
        Task::Demo { once } => {
            setup(&root)?;
            build_guests(&root)?;
            demo(&root, once || std::env::var_os("CI").is_some())
        }
        Task::Bench => {
            setup(&root)?;
            build_guests(&root)?;
            bench(&root)
        }
        Task::Lint => lint(),
        Task::GenProtobuf { check } => gen_protobuf::run(&root, check),
        Task::GenExtensions { kubernetes_dir } => gen_extensions::run(&root, &kubernetes_dir),
    }
}

fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or(manifest_dir.clone(), Path::to_path_buf)
}

/// Where built guest components land.
fn guests_dir(root: &Path) -> PathBuf {
    root.join("target/guests")
        .join(GUEST_TARGET)
        .join("release")
}

/// Runs a command, failing with its command line when it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    // The program, its arguments and the variables set for it (not the
    // ones removed, see `cargo`).
    let mut line = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            line.push_str(&format!("{}={value:?} ", key.to_string_lossy()));
        }
    }
    line.push_str(&format!("{:?}", command.get_program()));
    for arg in command.get_args() {
        line.push_str(&format!(" {arg:?}"));
    }
    eprintln!("xtask: {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

/// A cargo command without the variables `cargo run` set for this task.
///
/// Cargo tells `cargo xtask` its own package (`CARGO_PKG_NAME=xtask`,
/// `CARGO_MANIFEST_DIR`, ...); a child cargo that inherited them would see
/// them as changed since a build run by hand, and every build script that
/// reruns on them (ring's does) would rebuild its crate and everything
/// above it: a second 25-minute release build of the host after `cargo
/// build --release`, and the other way round.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(key);
        }
    }
    command
}

/// Whether `cargo run` sets `key` for the program it runs (`CARGO`, the
/// path of cargo itself, is kept).
fn set_by_cargo_run(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_MANIFEST_")
        || matches!(
            key,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
        )
}

fn setup(root: &Path) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup; install Rust with rustup (https://rustup.rs)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    if !installed.lines().any(|line| line.trim() == GUEST_TARGET) {
        run(Command::new("rustup").args(["target", "add", GUEST_TARGET]))?;
    }
    toolchains::setup(root)
}

/// The package names of every guest crate.
fn guest_packages(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut packages = Vec::new();
    for folder in GUEST_FOLDERS {
        let entries = std::fs::read_dir(root.join(folder))
            .with_context(|| format!("cannot list {folder}"))?;
        for entry in entries {
            let dir = entry?.path();
            if dir.join("Cargo.toml").is_file() {
                let name = dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .context("guest folder names are UTF-8")?;
                packages.push(name.to_owned());
            }
        }
    }
    packages.sort();
    Ok(packages)
}

fn build_guests(root: &Path) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args([
        "build",
        "--release",
        "--target",
        GUEST_TARGET,
        "--target-dir",
    ]);
    command.arg(root.join("target/guests"));
    for package in guest_packages(root)? {
        command.args(["--package", &package]);
    }
    run(&mut command)?;
    toolchains::build_guests(root, &guests_dir(root))
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    gen_protobuf::run(root, true)?;
    doc_sdk()?;
    let mut command = cargo();
    command
        .args(["test", "--workspace"])
        .args(args)
        .env("PADDOCK_GUESTS_DIR", guests_dir(root))
        .env("PADDOCK_CACHE_DIR", root.join("target/paddock-cache"));
    // A fresh clone is built once: incremental state would only double the
    // workspace's share of the build's disk use (1.6 GiB) for no later build.
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        command.env("CARGO_INCREMENTAL", "0");
    }
    run(&mut command)
}

/// Builds the Rust SDK's reference (`cargo doc`, the crate alone, every
/// feature), where guest authors look things up: a broken link, any other
/// rustdoc warning or a public item without documentation fails it.
fn doc_sdk() -> anyhow::Result<()> {
    run(cargo()
        .args([
            "doc",
            "--package",
            "paddock-guest",
            "--no-deps",
            "--all-features",
        ])
        .env("RUSTDOCFLAGS", "-D warnings -D missing_docs"))
}

fn demo(root: &Path, once: bool) -> anyhow::Result<()> {
    run(cargo().args(["build", "--package", "paddock"]))?;
    let mut command = Command::new(root.join("target/debug/paddock"));
    command
        .arg("dev")
        .arg("--config")
        .arg(root.join("guest-examples/demo/controllers.yaml"))
        .arg("--kubeconfig-out")
        .arg(root.join("target/demo/kubeconfig"))
        .arg("--cache-dir")
        .arg(root.join("target/paddock-cache"));
    if once {
        command.arg("--once");
    }
    run(&mut command)
}

fn bench(root: &Path) -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--bins",
        "--package",
        "paddock",
        "--package",
        "paddock-bench",
        "--package",
        "devcluster",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release");
    // Each writes target/bench/<name>.json; `summary` reads them all.
    for bench in [
        "dispatch",
        "convergence",
        "memory",
        "footprint",
        "startup",
        "reload",
        "tenants",
        "identity",
        "scaleout",
        "pull",
        "shadow",
        // The embedded cluster's own list and watch throughput, and memory
        // per object.
        "cluster",
        "summary",
    ] {
        run(Command::new(bin.join(bench))
            .env("PADDOCK_GUESTS_DIR", guests_dir(root))
            .env("PADDOCK_BENCH_BIN_DIR", &bin))?;
    }
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

#[cfg(test)]
mod tests {
    use super::set_by_cargo_run;

    #[test]
    fn child_cargo_drops_what_cargo_run_set_for_the_task() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(
                set_by_cargo_run(key),
                "{key} should not reach a child cargo"
            );
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CI",
        ] {
            assert!(!set_by_cargo_run(key), "{key} should reach a child cargo");
        }
    }
}
