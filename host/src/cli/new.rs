//! `paddock new`: scaffold a guest project in Rust, Python or JavaScript.
//!
//! Everything the project needs is embedded in this binary and written into
//! it: the contract (`wit/controller.wit`), the language's SDK, one fixture
//! and a README; so `paddock new` works offline and outside this repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::ValueEnum;

/// The languages a guest can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Language {
    /// Rust, built with cargo for wasm32-wasip2.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

/// Arguments of `paddock new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The language of the guest.
    #[arg(long, value_enum)]
    lang: Language,

    /// The project folder to create; its last component names the
    /// controller (lowercase letters, digits and `-`, starting with a letter).
    path: PathBuf,
}

/// The contract.
const WIT: &str = include_str!("../../../wit/controller.wit");

/// A file of the project: its path inside the project and its text.
type File = (&'static str, &'static str);

const COMMON: [File; 9] = [
    (
        ".gitignore",
        include_str!("../../templates/common/gitignore"),
    ),
    (
        "README.md",
        include_str!("../../templates/common/README.md"),
    ),
    (
        "fixtures/rollout/object.yaml",
        include_str!("../../templates/common/rollout/object.yaml"),
    ),
    (
        "fixtures/rollout/cache/configmaps.yaml",
        include_str!("../../templates/common/rollout/cache/configmaps.yaml"),
    ),
    (
        "fixtures/rollout/expected.yaml",
        include_str!("../../templates/common/rollout/expected.yaml"),
    ),
    (
        "fixtures/configmap-changed/case.yaml",
        include_str!("../../templates/common/configmap-changed/case.yaml"),
    ),
    (
        "fixtures/configmap-changed/object.yaml",
        include_str!("../../templates/common/configmap-changed/object.yaml"),
    ),
    (
        "fixtures/configmap-changed/cache/deployments.yaml",
        include_str!("../../templates/common/configmap-changed/cache/deployments.yaml"),
    ),
    (
        "fixtures/configmap-changed/expected.yaml",
        include_str!("../../templates/common/configmap-changed/expected.yaml"),
    ),
];

/// The project's crate, and the Rust SDK's sources beside it.
pub(crate) const RUST: [File; 12] = [
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    // Known-good versions of the SDK's dependencies; cargo drops the entries
    // the project does not use.
    ("Cargo.lock", include_str!("../../../Cargo.lock")),
    ("src/lib.rs", include_str!("../../templates/rust/lib.rs")),
    (
        "sdk/rust/Cargo.toml",
        include_str!("../../templates/rust/sdk-Cargo.toml"),
    ),
    (
        "sdk/rust/src/action.rs",
        include_str!("../../../sdk/rust/src/action.rs"),
    ),
    (
        "sdk/rust/src/cache.rs",
        include_str!("../../../sdk/rust/src/cache.rs"),
    ),
    (
        "sdk/rust/src/glue.rs",
        include_str!("../../../sdk/rust/src/glue.rs"),
    ),
    (
        "sdk/rust/src/lib.rs",
        include_str!("../../../sdk/rust/src/lib.rs"),
    ),
    (
        "sdk/rust/src/log.rs",
        include_str!("../../../sdk/rust/src/log.rs"),
    ),
    (
        "sdk/rust/src/object.rs",
        include_str!("../../../sdk/rust/src/object.rs"),
    ),
    (
        "sdk/rust/src/time.rs",
        include_str!("../../../sdk/rust/src/time.rs"),
    ),
    (
        "sdk/rust/src/types.rs",
        include_str!("../../../sdk/rust/src/types.rs"),
    ),
];

/// The Python SDK, as the package `paddock` next to `app.py`.
pub(crate) const PYTHON: [File; 11] = [
    ("app.py", include_str!("../../templates/python/app.py")),
    (
        "requirements.txt",
        include_str!("../../../toolchains/requirements.txt"),
    ),
    (
        "paddock/__init__.py",
        include_str!("../../../sdk/python/paddock/__init__.py"),
    ),
    (
        "paddock/_glue.py",
        include_str!("../../../sdk/python/paddock/_glue.py"),
    ),
    (
        "paddock/actions.py",
        include_str!("../../../sdk/python/paddock/actions.py"),
    ),
    (
        "paddock/cache.py",
        include_str!("../../../sdk/python/paddock/cache.py"),
    ),
    (
        "paddock/controller.py",
        include_str!("../../../sdk/python/paddock/controller.py"),
    ),
    (
        "paddock/errors.py",
        include_str!("../../../sdk/python/paddock/errors.py"),
    ),
    (
        "paddock/log.py",
        include_str!("../../../sdk/python/paddock/log.py"),
    ),
    (
        "paddock/objects.py",
        include_str!("../../../sdk/python/paddock/objects.py"),
    ),
    (
        "paddock/time.py",
        include_str!("../../../sdk/python/paddock/time.py"),
    ),
];

/// The JavaScript SDK, as `paddock.js` next to `app.js`.
pub(crate) const JS: [File; 3] = [
    ("app.js", include_str!("../../templates/js/app.js")),
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    ("paddock.js", include_str!("../../../sdk/js/paddock.js")),
];

/// The entry point `paddock build` wraps a JavaScript guest with.
pub(crate) const JS_ENTRY: &str = include_str!("../../../sdk/js/entry.js");

/// Creates the project and says how to build and test it.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = controller_name(&args.path)?;
    if args.path.exists() {
        bail!(
            "{} already exists: choose another name, or remove it first",
            args.path.display()
        );
    }
    let (language, source, sdk, setup) = match args.lang {
        Language::Rust => ("Rust", "src/lib.rs", "`sdk/rust`", ""),
        Language::Python => (
            "Python",
            "app.py",
            "`paddock/`",
            "python3 -m venv .venv && .venv/bin/pip install --require-hashes -r requirements.txt\n",
        ),
        Language::Js => ("JavaScript", "app.js", "`paddock.js`", "npm install\n"),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &name)
            .replace("{{language}}", language)
            .replace("{{source}}", source)
            .replace("{{sdk}}", sdk)
            .replace("{{setup}}", setup)
    };
    let mut files: Vec<File> = COMMON.to_vec();
    files.push(("wit/controller.wit", WIT));
    match args.lang {
        Language::Rust => files.extend(RUST),
        Language::Python => files.extend(PYTHON),
        Language::Js => files.extend(JS),
    }
    for (relative, text) in files {
        let path = args.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // SDK sources and the contract are written as they are; templates
        // get the controller's name.
        let text = if relative.starts_with("sdk/") || relative.starts_with("paddock") {
            text.to_owned()
        } else {
            fill(text)
        };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let dir = args.path.display();
    println!("created {dir}: a {language} controller called `{name}`");
    println!("next:\n  cd {dir}");
    for line in setup.lines() {
        println!("  {line}");
    }
    println!("  paddock build\n  paddock test {name}.wasm --fixture fixtures");
    Ok(ExitCode::SUCCESS)
}

/// The controller's name: the project folder's last component, which must
/// be a valid Kubernetes name and crate name.
pub(crate) fn controller_name(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} does not end in a folder name", path.display()))?;
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "`{name}` cannot name a controller: use lowercase letters, digits and `-`, \
             starting with a letter (e.g. `replica-floor`)"
        );
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of a folder of the repository, relative to it.
    fn files_in(dir: &str, extension: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .expect("the SDK folder exists")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(extension))
            .collect();
        names.sort();
        names
    }

    fn embedded(files: &[File], prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|(path, _)| path.strip_prefix(prefix).map(str::to_owned))
            .filter(|name| !name.contains('/'))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_sdk_file_is_embedded() {
        assert_eq!(
            embedded(&RUST, "sdk/rust/src/"),
            files_in("sdk/rust/src", ".rs")
        );
        assert_eq!(
            embedded(&PYTHON, "paddock/"),
            files_in("sdk/python/paddock", ".py")
        );
        assert_eq!(
            embedded(&JS, "")
                .into_iter()
                .filter(|name| name == "paddock.js")
                .count(),
            1
        );
    }

    #[test]
    fn controller_names_are_checked() {
        assert_eq!(
            controller_name(Path::new("/tmp/my-guest")).ok().as_deref(),
            Some("my-guest")
        );
        for bad in ["My-Guest", "1guest", "guest-", "my_guest"] {
            let error = controller_name(Path::new(bad)).expect_err(bad).to_string();
            assert!(error.contains("cannot name a controller"), "{error}");
        }
    }
}
