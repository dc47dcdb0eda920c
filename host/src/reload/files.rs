//! The controllers file as a source: read at start, then watched, with
//! every module file it names. A change of the file or of a module's bytes
//! reloads what changed; touching a file without changing it does nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Declared, ModuleSource, ShadowModule, Supervisor};
use crate::config::{ConfigError, ControllerSpec, ControllersFile};
use crate::oci::DockerConfig;
use crate::wasm::compile_cache::digest;

/// How long to wait for more events after a file was closed, renamed,
/// created or removed: one save often makes several.
const SETTLE_DONE: Duration = Duration::from_millis(5);

/// How long to wait for more events after a write that may not be the last
/// one (the file is still open).
const SETTLE_WRITING: Duration = Duration::from_millis(100);

/// A watched controllers file. Dropping it stops watching; the controllers
/// keep running until the supervisor stops them.
#[derive(Debug)]
pub struct FileSource {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A controllers file that could not be read, or a watch that could not be
/// set up.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A module could not be read.
    #[error("cannot read the module {} of controller `{controller}`", path.display())]
    Module {
        /// The controller.
        controller: String,
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's file watcher failed.
    #[error("cannot watch {} for changes", path.display())]
    Watch {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// Digests of module files, recomputed only when a file's size or
/// modification time changes.
#[derive(Debug, Default)]
struct Digests {
    known: HashMap<PathBuf, (SystemTime, u64, String)>,
}

impl Digests {
    fn of(&mut self, path: &Path) -> std::io::Result<String> {
        let metadata = std::fs::metadata(path)?;
        let modified = metadata.modified()?;
        if let Some((known_modified, known_len, known_digest)) = self.known.get(path)
            && *known_modified == modified
            && *known_len == metadata.len()
        {
            return Ok(known_digest.clone());
        }
        let bytes = std::fs::read(path)?;
        let found = digest(&bytes);
        self.known.insert(
            path.to_owned(),
            (
                modified,
                u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                found.clone(),
            ),
        );
        Ok(found)
    }
}

/// Reads the controllers file at `path`, starts its controllers through
/// `supervisor`, and keeps watching the file and its modules.
///
/// # Errors
///
/// [`FileSourceError`] when the file or a module cannot be read at start,
/// or the folders cannot be watched. Later errors are reported (log,
/// metrics, status) and leave the running controllers as they are.
pub fn watch(path: &Path, supervisor: Supervisor) -> Result<FileSource, FileSourceError> {
    let path = path.to_owned();
    let source = path.display().to_string();
    let mut digests = Digests::default();
    let file = ControllersFile::load(&path)?;
    let declared = declare(&path, &file, &mut digests)?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // The receiver is gone once the source is dropped.
        let _ = events_tx.send(event);
    })
    .map_err(|source| FileSourceError::Watch {
        path: path.clone(),
        source,
    })?;
    let mut watched = Vec::new();
    rewatch(&mut watcher, &mut watched, &path, &file)?;
    // The folders are watched; only these files in them matter.
    let mut files = Files::of(&path, &file);
    let changes = supervisor.apply(&source, declared);
    supervisor.board().record_source_pass(&source, changes);
    let task = tokio::spawn(async move {
        // Keeps the watcher alive as long as the task.
        let mut watcher = watcher;
        while let Some(first) = events.recv().await {
            let Some(mut settle) = settle_after(&first).filter(|_| files.concern(&first)) else {
                continue;
            };
            loop {
                match tokio::time::timeout(settle, events.recv()).await {
                    // The latest event decides: a closed file is done,
                    // a written one may see more writes.
                    Ok(Some(event)) => {
                        if let Some(next) = settle_after(&event).filter(|_| files.concern(&event)) {
                            settle = next;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match ControllersFile::load(&path)
                .map_err(FileSourceError::from)
                .and_then(|file| {
                    let declared = declare(&path, &file, &mut digests)?;
                    Ok((file, declared))
                }) {
                Ok((file, declared)) => {
                    files = Files::of(&path, &file);
                    if let Err(error) = rewatch(&mut watcher, &mut watched, &path, &file) {
                        tracing::warn!(%error, "cannot watch a module's folder; its changes will be missed");
                    }
                    let changes = supervisor.apply(&source, declared);
                    supervisor.board().record_source_pass(&source, changes);
                }
                Err(error) => {
                    let message = super::error_chain(&error);
                    tracing::error!(file = %path.display(), "the controllers file cannot be used; the running controllers are kept: {message}");
                    supervisor.board().record_source_error(&source, message);
                }
            }
        }
    });
    Ok(FileSource { task })
}

/// The files a controllers file's source reads: the file itself and every
/// module (and shadow candidate's module) it names. Their folders are
/// watched; a change to any other file in them (a log written beside the
/// controllers file) is no reason to read it again.
struct Files(std::collections::HashSet<PathBuf>);

impl Files {
    fn of(path: &Path, file: &ControllersFile) -> Self {
        let modules = file
            .controllers
            .iter()
            .flat_map(ControllerSpec::module_files);
        Self(
            std::iter::once(path)
                .chain(modules)
                .map(comparable)
                .collect(),
        )
    }

    /// Whether `event` may change what the source reads: it names one of
    /// the files, names none, or says events were lost.
    fn concern(&self, event: &notify::Result<notify::Event>) -> bool {
        match event {
            Ok(event) => {
                event.paths.is_empty()
                    || event
                        .paths
                        .iter()
                        .any(|path| self.0.contains(&comparable(path)))
            }
            Err(_) => true,
        }
    }
}

/// A path as events and declarations can both be compared by: its folder
/// made absolute and resolved, then its name (the file itself may be gone).
fn comparable(path: &Path) -> PathBuf {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
    match path.file_name() {
        Some(name) => folder.join(name),
        None => folder,
    }
}

/// How long to wait for quiet after `event`; `None` for events that change
/// nothing (reads, including this source's own).
fn settle_after(event: &notify::Result<notify::Event>) -> Option<Duration> {
    let Ok(event) = event else {
        // The watcher lost events: look at everything again.
        return Some(SETTLE_WRITING);
    };
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(notify::event::ModifyKind::Name(_)) => Some(SETTLE_DONE),
        EventKind::Access(_) => None,
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => Some(SETTLE_WRITING),
    }
}

/// Watches the folders of the controllers file and of every module (a
/// folder, not the file: editors and build tools replace files).
fn rewatch(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut Vec<PathBuf>,
    path: &Path,
    file: &ControllersFile,
) -> Result<(), FileSourceError> {
    let folder = |file: &Path| {
        let parent = file.parent().unwrap_or(Path::new("."));
        if parent.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            parent.to_owned()
        }
    };
    let mut wanted: Vec<PathBuf> = std::iter::once(folder(path))
        .chain(
            file.controllers
                .iter()
                .flat_map(ControllerSpec::module_files)
                .map(folder),
        )
        .collect();
    wanted.sort();
    wanted.dedup();
    for old in watched.iter().filter(|old| !wanted.contains(old)) {
        let _ = watcher.unwatch(old);
    }
    for new in wanted.iter().filter(|new| !watched.contains(new)) {
        watcher
            .watch(new, RecursiveMode::NonRecursive)
            .map_err(|source| FileSourceError::Watch {
                path: new.clone(),
                source,
            })?;
    }
    *watched = wanted;
    Ok(())
}

/// How long a load waits for a module file to hold again the bytes its
/// declaration read.
pub(super) const MODULE_SETTLE: Duration = Duration::from_secs(2);

/// How often a load reads a module file again while it waits.
const REREAD_EVERY: Duration = Duration::from_millis(20);

/// A module file that does not hold the bytes its declaration read.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadDeclaredError {
    /// The file cannot be read.
    #[error("cannot read the module: {0}")]
    Read(#[source] std::io::Error),
    /// Its bytes stayed other than the declared ones.
    #[error(
        "the file changed after it was declared: it holds the bytes of sha256 {found}, \
         not {declared}; its new bytes load when the controllers file's watch reports them"
    )]
    Changed {
        /// The digest the declaration read.
        declared: String,
        /// The digest of the bytes read last.
        found: String,
    },
}

/// The bytes of a module file, once they are those whose digest its
/// declaration read (`declared`); `read` reads the file.
///
/// The watch declares a module from one read, and its load reads it again.
/// A file written in place (truncated, then written, as `cp` and most build
/// tools do) can be caught half written by the second read, and a file
/// written back with the bytes declared raises no new declaration: loading
/// what that read found would fail, or serve bytes other than those
/// declared, until the file next changes. So a load that finds other bytes
/// reads again every 20 ms. Other bytes are a newer version, which the
/// watch declares from the events its writing raised; that declaration
/// cancels this load as soon as it arrives, and if none has after
/// `settle`, this load fails, naming both digests.
pub(super) async fn read_declared<Read, Reading>(
    mut read: Read,
    declared: &str,
    settle: Duration,
) -> Result<Arc<[u8]>, ReadDeclaredError>
where
    Read: FnMut() -> Reading,
    Reading: Future<Output = std::io::Result<Vec<u8>>>,
{
    let until = tokio::time::Instant::now() + settle;
    loop {
        let bytes = read().await.map_err(ReadDeclaredError::Read)?;
        let found = digest(&bytes);
        if found == declared {
            return Ok(bytes.into());
        }
        if tokio::time::Instant::now() >= until {
            return Err(ReadDeclaredError::Changed {
                declared: declared.to_owned(),
                found,
            });
        }
        tokio::time::sleep(REREAD_EVERY).await;
    }
}

/// A module file (with its digest now) or an image (its reference stands
/// for its version until it is pulled).
fn module_source(
    controller: &str,
    module: Option<&Path>,
    image: Option<&str>,
    poll_seconds: u64,
    digests: &mut Digests,
) -> Result<(ModuleSource, String), FileSourceError> {
    if let Some(module) = module {
        let digest = digests
            .of(module)
            .map_err(|source| FileSourceError::Module {
                controller: controller.to_owned(),
                path: module.to_owned(),
                source,
            })?;
        return Ok((ModuleSource::File(module.to_owned()), digest));
    }
    // An image is pulled when its controller loads, with the host's Docker
    // config of that moment; until then the reference is its version (a
    // changed reference reloads).
    let reference = image.unwrap_or_default().to_owned();
    let credentials = DockerConfig::of_user().unwrap_or_else(|error| {
        tracing::warn!(%error, "the Docker config cannot be used; pulling anonymously");
        DockerConfig::default()
    });
    Ok((
        ModuleSource::Image {
            reference: reference.clone(),
            credentials: Arc::new(credentials),
            pull_secrets: Vec::new(),
            poll: super::poll_interval(&reference, poll_seconds),
        },
        format!("image {reference}"),
    ))
}

/// The declarations of a controllers file.
fn declare(
    path: &Path,
    file: &ControllersFile,
    digests: &mut Digests,
) -> Result<Vec<Declared>, FileSourceError> {
    file.controllers
        .iter()
        .map(|spec| {
            let (module, module_digest) = module_source(
                &spec.name,
                spec.module.as_deref(),
                spec.image.as_deref(),
                spec.poll_seconds,
                digests,
            )?;
            let shadow = match &spec.shadow {
                Some(shadow) => {
                    let (module, digest) = module_source(
                        &spec.name,
                        shadow.module.as_deref(),
                        shadow.image.as_deref(),
                        0,
                        digests,
                    )?;
                    Some(ShadowModule { module, digest })
                }
                None => None,
            };
            Ok(Declared {
                shadow,
                name: spec.name.clone(),
                origin: path.display().to_string(),
                module,
                module_digest,
                grant: spec.grant().written_in(
                    "grant",
                    format!("controller `{}` in {}", spec.name, path.display()),
                ),
                namespaces: spec.namespaces.clone(),
                limits: spec.limits,
                queue: spec.queue.clone(),
                resync: (spec.resync_seconds > 0).then(|| Duration::from_secs(spec.resync_seconds)),
                instances: spec.instances,
                generation: None,
                cut: Vec::new(),
                problem: None,
                sink: None,
                tenant: None,
                service_account: spec.service_account(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Permission;

    #[tokio::test(start_paused = true)]
    async fn a_load_waits_for_a_module_file_written_in_place_to_hold_its_declared_bytes() {
        let module = b"\0asm the declared module".to_vec();
        let declared = digest(&module);
        // Truncated, then half written, then whole: as a load may catch it.
        let mut reads = vec![Vec::new(), module[..6].to_vec(), module.clone()].into_iter();
        let mut count = 0;
        let bytes = read_declared(
            || {
                count += 1;
                std::future::ready(Ok(reads.next().expect("no read after the declared bytes")))
            },
            &declared,
            MODULE_SETTLE,
        )
        .await
        .expect("the declared bytes, once written");
        assert_eq!(&*bytes, module.as_slice());
        assert_eq!(count, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_module_file_that_stays_changed_fails_its_load_naming_both_digests() {
        let declared = digest(b"version 1");
        let started = tokio::time::Instant::now();
        let error = read_declared(
            || std::future::ready(Ok(b"version 2".to_vec())),
            &declared,
            MODULE_SETTLE,
        )
        .await
        .expect_err("version 2 is not the version declared");
        assert!(
            started.elapsed() >= MODULE_SETTLE,
            "it gave up before the settle time"
        );
        let message = error.to_string();
        assert!(
            message.contains(&declared) && message.contains(&digest(b"version 2")),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_module_file_fails_its_load_at_once() {
        let started = tokio::time::Instant::now();
        let error = read_declared(
            || std::future::ready(Err(std::io::ErrorKind::NotFound.into())),
            &digest(b"version 1"),
            MODULE_SETTLE,
        )
        .await
        .expect_err("nothing to read");
        assert!(matches!(error, ReadDeclaredError::Read(_)), "{error:?}");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_denial_names_the_entry_of_the_file_that_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("floor.wasm"), b"\0asm").expect("write module");
        let path = dir.path().join("controllers.yaml");
        let text = "controllers:
- name: floor
  module: floor.wasm
  grant:
  - {apiGroups: [apps], resources: [deployment], verbs: [list, watch]}
";
        let file = ControllersFile::parse(&path, text).expect("valid");
        let declared = declare(&path, &file, &mut Digests::default()).expect("declared");
        let denied = declared[0]
            .grant
            .check(&[Permission {
                verb: "list",
                group: "apps",
                resource: "deployments",
                subresource: None,
            }])
            .expect_err("a singular resource grants nothing");
        assert_eq!(
            denied.to_string(),
            format!(
                "not granted: verb `list` on resource `deployments` in API group apps; \
                 `grant[0]` of controller `floor` in {} names resource `deployment` in group \
                 `apps`: write `deployments` (resources are plural, lowercase)",
                path.display()
            )
        );
    }
}
