//! The Python and JavaScript guest toolchains: installed into the project
//! (`.venv`, `node_modules`) from pinned, committed lockfiles, and used to
//! build the Python and JavaScript guests.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::run;

/// The pinned Python toolchain, with hashes.
const REQUIREMENTS: &str = "toolchains/requirements.txt";
/// Written into `.venv` after a successful install: a copy of the
/// requirements it was installed from.
const VENV_STAMP: &str = ".venv/paddock-requirements.txt";
/// Written into `node_modules` after a successful `npm ci`: a copy of the
/// lockfile it was installed from.
const NODE_STAMP: &str = "node_modules/.paddock-package-lock.json";

/// Folders whose `python/<name>/app.py` and `js/<name>/app.js` are guests.
const GUEST_FOLDERS: [&str; 2] = ["guest-examples", "tests/guests"];

/// The language of a guest that is not a Rust crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Python,
    Js,
}

impl Language {
    fn folder(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Js => "js",
        }
    }

    fn entry(self) -> &'static str {
        match self {
            Self::Python => "app.py",
            Self::Js => "app.js",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Python => "py",
            Self::Js => "js",
        }
    }
}

/// `componentize-py` in the project's virtual environment.
pub fn componentize_py(root: &Path) -> PathBuf {
    if cfg!(windows) {
        root.join(".venv/Scripts/componentize-py.exe")
    } else {
        root.join(".venv/bin/componentize-py")
    }
}

/// `componentize-js` in the project's `node_modules`.
pub fn componentize_js(root: &Path) -> PathBuf {
    root.join("node_modules/.bin/componentize-js")
}

/// Installs componentize-py into `.venv` and the npm tools into
/// `node_modules`, unless what is there was installed from the same
/// lockfiles.
pub fn setup(root: &Path) -> anyhow::Result<()> {
    let requirements = read(&root.join(REQUIREMENTS))?;
    if !is_current(&root.join(VENV_STAMP), &requirements) || !componentize_py(root).is_file() {
        let python = if cfg!(windows) { "python" } else { "python3" };
        run(Command::new(python).args(["-m", "venv", ".venv"]))
            .context("the Python guest toolchain needs Python 3.9 or later with venv")?;
        let pip = if cfg!(windows) {
            ".venv/Scripts/pip"
        } else {
            ".venv/bin/pip"
        };
        run(Command::new(root.join(pip)).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "-r",
            REQUIREMENTS,
        ]))?;
        write(&root.join(VENV_STAMP), &requirements)?;
    }
    let lock = read(&root.join("package-lock.json"))?;
    if !is_current(&root.join(NODE_STAMP), &lock) || !componentize_js(root).is_file() {
        // `npm install --no-save` installs exactly the locked versions and
        // never rewrites the lockfile. `npm ci` would be the usual choice,
        // but it refuses this lock: some optional native binaries of other
        // platforms (rolldown's, jco's) are not published at the locked
        // versions, so npm leaves them out of the lock and `ci` calls that
        // out of sync.
        run(Command::new(npm()).args(["install", "--no-save", "--no-audit", "--no-fund"]))
            .context("the JavaScript guest toolchain needs Node.js 20 or later with npm")?;
        write(&root.join(NODE_STAMP), &lock)?;
    }
    Ok(())
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn is_current(stamp: &Path, expected: &[u8]) -> bool {
    std::fs::read(stamp).is_ok_and(|stamp| stamp == expected)
}

/// One Python or JavaScript guest to build.
#[derive(Debug)]
struct Guest {
    language: Language,
    dir: PathBuf,
    output: PathBuf,
    /// Whether it is built with its language's SDK: whether its `app.py`
    /// imports `paddock`, or its `app.js` imports `./paddock.js` (and is
    /// then wrapped by the SDK's `entry.js`). The others show that a guest
    /// needs none.
    uses_sdk: bool,
}

/// Every Python and JavaScript guest, with where its component goes:
/// `<guests dir>/<name>_py.wasm` and `<name>_js.wasm`.
fn guests(root: &Path, out: &Path) -> anyhow::Result<Vec<Guest>> {
    let mut guests = Vec::new();
    for folder in GUEST_FOLDERS {
        for language in [Language::Python, Language::Js] {
            let parent = root.join(folder).join(language.folder());
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries {
                let dir = entry?.path();
                if !dir.join(language.entry()).is_file() {
                    continue;
                }
                let name = dir
                    .file_name()
                    .and_then(|name| name.to_str())
                    .context("guest folder names are UTF-8")?
                    .replace('-', "_");
                let output = out.join(format!("{name}_{}.wasm", language.suffix()));
                let uses_sdk = imports_sdk(language, &read(&dir.join(language.entry()))?);
                guests.push(Guest {
                    language,
                    dir,
                    output,
                    uses_sdk,
                });
            }
        }
    }
    guests.sort_by(|a, b| a.output.cmp(&b.output));
    Ok(guests)
}

/// Whether a guest's entry module imports its language's SDK: in Python a
/// line starting `import paddock` or `from paddock`, in JavaScript an
/// import from `./paddock.js`.
fn imports_sdk(language: Language, source: &[u8]) -> bool {
    String::from_utf8_lossy(source).lines().any(|line| {
        let line = line.trim_start();
        match language {
            Language::Python => ["import paddock", "from paddock"].iter().any(|start| {
                line.strip_prefix(start)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '.', ',']))
            }),
            Language::Js => {
                !line.starts_with("//")
                    && ["\"./paddock.js\"", "'./paddock.js'"]
                        .iter()
                        .any(|module| line.contains(module))
            }
        }
    })
}

/// Builds every Python and JavaScript guest whose inputs changed since its
/// last build, the two languages side by side.
pub fn build_guests(root: &Path, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (python, js): (Vec<Guest>, Vec<Guest>) = guests(root, out)?
        .into_iter()
        .partition(|guest| guest.language == Language::Python);
    std::thread::scope(|scope| {
        let python = scope.spawn(|| build_all(root, &python));
        let js = build_all(root, &js);
        python
            .join()
            .map_err(|_| anyhow::anyhow!("building the Python guests panicked"))??;
        js
    })
}

fn build_all(root: &Path, guests: &[Guest]) -> anyhow::Result<()> {
    for guest in guests {
        let stamp = guest.output.with_extension("wasm.inputs");
        let fingerprint = inputs_fingerprint(root, guest)?;
        if guest.output.is_file() && is_current(&stamp, fingerprint.as_bytes()) {
            continue;
        }
        match guest.language {
            Language::Python => build_python(root, guest)?,
            Language::Js => build_js(root, guest)?,
        }
        write(&stamp, fingerprint.as_bytes())?;
    }
    Ok(())
}

/// A fingerprint of everything a guest's component is built from: its
/// folder, its SDK (when it uses it), the contract and the toolchain
/// lockfiles.
fn inputs_fingerprint(root: &Path, guest: &Guest) -> anyhow::Result<String> {
    let mut dirs = vec![guest.dir.clone(), root.join("wit")];
    if guest.uses_sdk {
        dirs.push(match guest.language {
            Language::Python => root.join("sdk/python"),
            Language::Js => root.join("sdk/js"),
        });
    }
    let mut files = Vec::new();
    for dir in &dirs {
        collect_files(dir, &mut files)?;
    }
    files.push(root.join(REQUIREMENTS));
    files.push(root.join("package-lock.json"));
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in &files {
        file.hash(&mut hasher);
        read(file)?.hash(&mut hasher);
    }
    Ok(format!("{:016x}\n", hasher.finish()))
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        if name == "__pycache__" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn build_python(root: &Path, guest: &Guest) -> anyhow::Result<()> {
    let mut command = Command::new(componentize_py(root));
    command
        .args(["-d", "wit", "-w", "controller", "componentize", "app", "-p"])
        .arg(&guest.dir);
    if guest.uses_sdk {
        command.arg("-p").arg(root.join("sdk/python"));
    }
    run(command.arg("-o").arg(&guest.output))
}

/// componentize-js builds one module and what it imports by relative path:
/// the guest's files, and for a guest that uses the SDK the SDK and the
/// entry point that wraps the guest, are staged side by side first; a guest
/// without the SDK is its own entry point. The build keeps the WASI
/// interfaces the host satisfies with an empty context (stdio, clocks,
/// random) and drops the HTTP ones.
fn build_js(root: &Path, guest: &Guest) -> anyhow::Result<()> {
    let stage = root.join("target/guests/js-stage").join(
        guest
            .output
            .file_stem()
            .context("guest outputs have a file name")?,
    );
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot clear {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create {}", stage.display()))?;
    let mut files = Vec::new();
    collect_files(&guest.dir, &mut files)?;
    for file in files.iter().filter(|file| {
        file.extension()
            .is_some_and(|extension| extension == "js" || extension == "mjs")
    }) {
        let relative = file.strip_prefix(&guest.dir).unwrap_or(file);
        let target = stage.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(file, &target).with_context(|| format!("cannot copy {}", file.display()))?;
    }
    // The SDK's entry point exports `reconcile-json` as well: its world is
    // `controller-json`. A guest without the SDK exports `controller`.
    let (entry, world) = if guest.uses_sdk {
        for sdk_file in ["paddock.js", "entry.js"] {
            std::fs::copy(root.join("sdk/js").join(sdk_file), stage.join(sdk_file))
                .with_context(|| format!("cannot copy sdk/js/{sdk_file}"))?;
        }
        ("entry.js", "controller-json")
    } else {
        (Language::Js.entry(), "controller")
    };
    run(Command::new(componentize_js(root))
        .arg(stage.join(entry))
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
        .arg(&guest.output))
}

#[cfg(test)]
mod tests {
    use super::{Language, imports_sdk};

    #[test]
    fn knows_which_python_guests_import_the_sdk() {
        for source in [
            "import paddock\n",
            "import json\nfrom paddock import Action, Info\n",
            "    import paddock.cache\n",
            "from paddock.objects import name\n",
        ] {
            assert!(
                imports_sdk(Language::Python, source.as_bytes()),
                "{source:?}"
            );
        }
        for source in [
            "from wit_world.imports import cache, types\n",
            "import paddocks\n",
            "# import paddock, once\n",
            "from paddock_extra import x\n",
        ] {
            assert!(
                !imports_sdk(Language::Python, source.as_bytes()),
                "{source:?}"
            );
        }
    }

    #[test]
    fn knows_which_javascript_guests_import_the_sdk() {
        for source in [
            "import { Action, Watch } from \"./paddock.js\";\n",
            "import {\n  Action, Index,\n} from './paddock.js';\n",
        ] {
            assert!(imports_sdk(Language::Js, source.as_bytes()), "{source:?}");
        }
        for source in [
            "import { get, byIndex } from \"paddock:controller/cache@0.1.5\";\n",
            "// not \"./paddock.js\"\n",
        ] {
            assert!(!imports_sdk(Language::Js, source.as_bytes()), "{source:?}");
        }
    }
}
