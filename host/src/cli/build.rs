//! `paddock build`: build a guest project into a component, with the
//! toolchain of its language: cargo (Rust), componentize-py (Python) or
//! componentize-js (JavaScript).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};

use super::new::{JS_ENTRY, Language, controller_name};

/// Arguments of `paddock build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The project folder (as `paddock new` makes it): a Rust crate
    /// (`Cargo.toml`), a Python app (`app.py`) or a JavaScript module (`app.js`).
    #[arg(default_value = ".")]
    path: PathBuf,

    /// Where to write the component. Default: `<project>/<folder name>.wasm`.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Then publish it to an OCI registry as `paddock push` does
    /// (`registry/repository:tag`).
    #[arg(long, value_name = "REF")]
    push: Option<String>,

    /// With `--push`: speak plain HTTP to the registry.
    #[arg(long, requires = "push")]
    plain_http: bool,
}

/// Builds the project and prints the component's path.
pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let project = std::path::absolute(&args.path)
        .with_context(|| format!("cannot resolve {}", args.path.display()))?;
    if !project.is_dir() {
        bail!(
            "{} is not a folder: give the guest project's folder",
            project.display()
        );
    }
    let language = detect(&project)?;
    let output = match args.output {
        Some(output) => std::path::absolute(output)?,
        None => project.join(format!("{}.wasm", controller_name(&project)?)),
    };
    let wit = project.join("wit");
    if language != Language::Rust && !wit.join("controller.wit").is_file() {
        bail!(
            "{} is missing: the project needs the contract (`paddock new` writes it)",
            wit.join("controller.wit").display()
        );
    }
    match language {
        Language::Rust => build_rust(&project, &output)?,
        Language::Python => run(Command::new(toolchain(&project, Language::Python)?)
            .args([
                "-d",
                "wit",
                "-w",
                "controller",
                "componentize",
                "app",
                "-p",
                ".",
            ])
            .arg("-o")
            .arg(&output)
            .current_dir(&project))?,
        Language::Js => build_js(&project, &output)?,
    }
    println!("{}", output.display());
    if let Some(reference) = args.push {
        return super::push::push_file(&output, &reference, args.plain_http);
    }
    Ok(ExitCode::SUCCESS)
}

fn detect(project: &Path) -> anyhow::Result<Language> {
    let found = [
        ("Cargo.toml", Language::Rust),
        ("app.py", Language::Python),
        ("app.js", Language::Js),
    ]
    .into_iter()
    .find(|(file, _)| project.join(file).is_file());
    match found {
        Some((_, language)) => Ok(language),
        None => bail!(
            "{} holds no guest project: expected Cargo.toml (Rust), app.py (Python) or app.js \
             (JavaScript); create one with `paddock new --lang rust|python|js NAME`",
            project.display()
        ),
    }
}

/// The componentize tool of a language: `$PADDOCK_COMPONENTIZE_PY` or
/// `$PADDOCK_COMPONENTIZE_JS`, else the project's `.venv` or `node_modules`,
/// else the one on PATH.
fn toolchain(project: &Path, language: Language) -> anyhow::Result<PathBuf> {
    let (variable, tool, local, install) = match language {
        Language::Python => (
            "PADDOCK_COMPONENTIZE_PY",
            "componentize-py",
            project.join(".venv/bin/componentize-py"),
            "python3 -m venv .venv && .venv/bin/pip install --require-hashes -r requirements.txt",
        ),
        Language::Js => (
            "PADDOCK_COMPONENTIZE_JS",
            "componentize-js",
            project.join("node_modules/.bin/componentize-js"),
            "npm install",
        ),
        Language::Rust => unreachable!("Rust builds with cargo"),
    };
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{variable} is {}, which is not a file: point it at {tool}",
                path.display()
            );
        }
        return Ok(path);
    }
    if local.is_file() {
        return Ok(local);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    on_path.with_context(|| {
        format!(
            "{tool} is not installed: run `{install}` in {}, or set {variable} to its path",
            project.display()
        )
    })
}

/// Runs a toolchain command; what it prints goes to stderr, so that
/// stdout holds only the component's path.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let line = format!("{command:?}");
    let status = command
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

/// `cargo build --release --target wasm32-wasip2`, then copies the cdylib
/// cargo reports to `output`.
fn build_rust(project: &Path, output: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(project)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo: install Rust with rustup (https://rustup.rs)")?;
    if !built.status.success() {
        bail!(
            "cargo build failed with {}; if the target is missing, run \
             `rustup target add wasm32-wasip2`",
            built.status
        );
    }
    let component = String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|kind| kind == "cdylib"))
        })
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|file| file.as_str().map(PathBuf::from))
        .find(|file| {
            file.extension()
                .is_some_and(|extension| extension == "wasm")
        })
        .with_context(|| {
            format!(
                "cargo built no component: {} needs `crate-type = [\"cdylib\"]` under [lib]",
                project.join("Cargo.toml").display()
            )
        })?;
    std::fs::copy(&component, output).with_context(|| {
        format!(
            "cannot copy {} to {}",
            component.display(),
            output.display()
        )
    })?;
    Ok(())
}

/// The world a JavaScript project builds against: `controller-json` when
/// its contract and its SDK have it (since 0.1.5), else `controller`, so
/// that a project made by an older `paddock new` still builds (and is
/// reconciled through `reconcile`, as before).
fn js_world(project: &Path) -> anyhow::Result<&'static str> {
    let read = |file: &str| {
        let path = project.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let contract = read("wit/controller.wit")?;
    let sdk = read("paddock.js")?;
    if contract.contains("world controller-json") && sdk.contains("reconcileJson(") {
        return Ok("controller-json");
    }
    eprintln!(
        "note: {} predates contract 0.1.5: building against the world `controller`; copy \
         wit/controller.wit and paddock.js from a new `paddock new --lang js` project to answer \
         reconciles as JSON, which the bindings hand over several times faster",
        project.display()
    );
    Ok("controller")
}

/// componentize-js builds one module and what it imports by relative path:
/// the project's JavaScript files are staged in `build/` beside the entry
/// point that wraps `app.js` into the exports of the world `controller-json`
/// (the host reconciles through `reconcile-json`). WASI stdio, clocks
/// and random stay (the host grants them empty or fixed); HTTP is dropped.
fn build_js(project: &Path, output: &Path) -> anyhow::Result<()> {
    let tool = toolchain(project, Language::Js)?;
    let stage = project.join("build");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot clear {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create {}", stage.display()))?;
    for entry in std::fs::read_dir(project)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "js" || extension == "mjs")
        {
            let target = stage.join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &target)
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    if !stage.join("paddock.js").is_file() {
        bail!(
            "{} is missing: the project needs the SDK (`paddock new` writes it)",
            project.join("paddock.js").display()
        );
    }
    std::fs::write(stage.join("entry.js"), JS_ENTRY)?;
    let world = js_world(project)?;
    run(Command::new(tool)
        .arg(stage.join("entry.js"))
        .args([
            "--wit",
            "wit",
            "-n",
            world,
            "-d",
            "http",
            "fetch-event",
            "-o",
        ])
        .arg(output)
        .current_dir(project))
}
