//! Hot reload: keeps the running controllers equal to what their sources
//! (the controllers file, `WasmController` resources) declare.
//!
//! Each declared controller has one task that applies its latest
//! declaration: it loads the module (compile cache first), validates it (the
//! world, `describe`, the grant, a trial instance) and then starts the
//! controller or swaps the new version in ([`RunningController::reload`]).
//! A version that fails any step is not swapped in: the old one keeps
//! serving, and the failure goes to the log, the metrics and the
//! controller's status. A declaration that disappears stops its controller.

mod board;
pub mod cluster;
pub mod files;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use board::{EntryStatus, Phase, SourceStatus, StatusBoard};

use crate::cluster::error_chain;
use crate::config::LimitsSpec;
use crate::controller::{
    ControllerConfig, LastError, Observe, RunningController, Runtime, Shadow, StartError,
};
use crate::grants::Grant;
use crate::identity::ServiceAccount;
use crate::oci::{DockerConfig, PullLimits, Registries};
use crate::queue::QueueConfig;
use crate::record::Recordings;
use crate::wasm::slots::Flow;
use crate::wasm::{Guest, Instances, LoadOptions, WasmEngine};

/// How long a controller that stops may take to reconcile the keys still
/// queued and let in-flight reconciles finish.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where a module's bytes come from.
#[derive(Clone)]
pub enum ModuleSource {
    /// A file, read when the module is loaded, once it holds the bytes
    /// whose digest its declaration read (see [`files`]: a file being
    /// written may be read half written).
    File(PathBuf),
    /// Bytes already read (from a ConfigMap or an inline field); `origin`
    /// names them in errors and logs.
    Bytes {
        /// Where they came from, e.g. `configmap team-a/floor key module.wasm`.
        origin: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
    /// An OCI image, pulled when the module is loaded.
    Image {
        /// `registry/repository:tag` or `...@sha256:<digest>`.
        reference: String,
        /// The credentials for its registry (the host's Docker config).
        credentials: Arc<DockerConfig>,
        /// `kubernetes.io/dockerconfigjson` Secrets, `(namespace, name)`,
        /// read when the module is loaded as the controller's
        /// ServiceAccount; their credentials win over `credentials`.
        pull_secrets: Vec<(String, String)>,
        /// How often to check whether a tag names another manifest, and
        /// load it when it does; `None`: never (a digest never changes).
        poll: Option<Duration>,
    },
}

/// How often an image's tag is checked for a new version: every `seconds`
/// (0: never); a digest reference never changes.
pub(crate) fn poll_interval(reference: &str, seconds: u64) -> Option<Duration> {
    (seconds > 0 && !reference.contains("@sha256:")).then(|| Duration::from_secs(seconds))
}

impl std::fmt::Debug for ModuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Bytes { origin, bytes } => f
                .debug_struct("Bytes")
                .field("origin", origin)
                .field("len", &bytes.len())
                .finish(),
            Self::Image { reference, .. } => f.debug_tuple("Image").field(reference).finish(),
        }
    }
}

impl ModuleSource {
    /// How the module is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Bytes { origin, .. } => origin.clone(),
            Self::Image { reference, .. } => format!("image {reference}"),
        }
    }
}

/// Told about every change of a controller's status (the cluster source
/// writes it into the `WasmController`'s status).
pub trait StatusSink: Send + Sync + std::fmt::Debug {
    /// The status changed.
    fn publish(&self, status: &EntryStatus);
}

/// One controller as a source declares it.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Its unique name.
    pub name: String,
    /// Where it is declared, for messages: `controllers.yaml`,
    /// `WasmController team-a/floor`.
    pub origin: String,
    /// Its module.
    pub module: ModuleSource,
    /// The module's sha256 digest when the source read it; a change of
    /// digest is a new version.
    pub module_digest: String,
    /// The effective grant.
    pub grant: Grant,
    /// Its namespaces; empty for all.
    pub namespaces: Vec<String>,
    /// Sandbox and concurrency limits.
    pub limits: LimitsSpec,
    /// Queue settings.
    pub queue: QueueConfig,
    /// Periodic re-queue of every primary object.
    pub resync: Option<Duration>,
    /// Whether instances serve more than one call.
    pub instances: Instances,
    /// The declaring resource's `metadata.generation`, if any.
    pub generation: Option<i64>,
    /// What tenancy removed from the declared grant or namespaces.
    pub cut: Vec<String>,
    /// Why the source's latest declaration could not be used, when this is
    /// the last one that could (which keeps serving).
    pub problem: Option<String>,
    /// Where status changes go besides the status board.
    pub sink: Option<Arc<dyn StatusSink>>,
    /// The tenant's namespace when a tenant declared it (a
    /// `WasmController`); `None` when the operator did.
    pub tenant: Option<String>,
    /// The ServiceAccount it acts as; `None`: as the host.
    pub service_account: Option<ServiceAccount>,
    /// A candidate version run in its shadow.
    pub shadow: Option<ShadowModule>,
}

/// The module of a shadow candidate.
#[derive(Debug, Clone)]
pub struct ShadowModule {
    /// Where it is.
    pub module: ModuleSource,
    /// Its digest when the source read it, as [`Declared::module_digest`].
    pub digest: String,
}

impl Declared {
    /// Whether `other` declares the same version: same module and settings.
    fn same_version(&self, other: &Self) -> bool {
        self.module_digest == other.module_digest
            && self.grant == other.grant
            && self.namespaces == other.namespaces
            && self.limits == other.limits
            && self.queue == other.queue
            && self.resync == other.resync
            && self.instances == other.instances
            && self.cut == other.cut
            && self.service_account == other.service_account
            && self.module_location() == other.module_location()
            && self
                .shadow
                .as_ref()
                .map(|s| (&s.digest, s.module.describe()))
                == other
                    .shadow
                    .as_ref()
                    .map(|s| (&s.digest, s.module.describe()))
    }

    fn module_location(&self) -> String {
        self.module.describe()
    }

    fn config(&self, guest: Guest, observe: Observe) -> ControllerConfig {
        ControllerConfig {
            observe,
            guest,
            grant: self.grant.clone(),
            namespaces: self.namespaces.clone(),
            concurrency: self.limits.concurrency,
            queue: self.queue.clone(),
            resync: self.resync,
            tenant: self.tenant.clone(),
            service_account: self.service_account.clone(),
        }
    }
}

struct Entry {
    source: String,
    declared: watch::Sender<Option<Arc<Declared>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    engine: WasmEngine,
    runtime: Runtime,
    board: StatusBoard,
    entries: Mutex<HashMap<String, Entry>>,
    /// Set by `shutdown`: controllers stop because the host does, not
    /// because they were removed, so they keep their finalizers.
    stopping: std::sync::atomic::AtomicBool,
    /// Where images are pulled from; set once, else the defaults (HTTPS
    /// only, 64 MiB).
    registries: std::sync::OnceLock<Registries>,
    /// Where the controllers' calls are recorded, if they are.
    recordings: std::sync::OnceLock<Arc<Recordings>>,
}

/// Keeps the running controllers equal to their declarations. Cheap to
/// clone; every clone drives the same controllers.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with no controller yet.
    pub fn new(engine: WasmEngine, runtime: Runtime) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                runtime,
                board: StatusBoard::default(),
                entries: Mutex::default(),
                stopping: std::sync::atomic::AtomicBool::new(false),
                registries: std::sync::OnceLock::new(),
                recordings: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Pulls images through `registries` (its plain-HTTP registries and
    /// limits). Call it before the first image is declared; later calls
    /// are ignored.
    pub fn set_registries(&self, registries: Registries) {
        let _ = self.inner.registries.set(registries);
    }

    /// Records every controller's calls into `recordings` (its own
    /// folder each). Call it before the first declaration; later calls are
    /// ignored.
    pub fn set_recordings(&self, recordings: Arc<Recordings>) {
        let _ = self.inner.recordings.set(recordings);
    }

    /// Where images are pulled from.
    pub fn registries(&self) -> &Registries {
        self.inner
            .registries
            .get_or_init(|| Registries::new(Vec::new(), PullLimits::default()))
    }

    /// The status of every declared controller.
    pub fn board(&self) -> &StatusBoard {
        &self.inner.board
    }

    /// The runtime the controllers run on.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Makes `source`'s controllers exactly `declared`: new names start,
    /// changed ones reload, missing ones stop. A name another source
    /// already declares is refused (its status says so). Answers how many
    /// controllers this changes (started, reloaded or stopped): 0 when the
    /// declarations are the ones already running, and once [`shutdown`]
    /// began (a controller started then would outlive it, and keep working
    /// after the host gave its ring Lease up).
    ///
    /// [`shutdown`]: Supervisor::shutdown
    pub fn apply(&self, source: &str, declared: Vec<Declared>) -> usize {
        let mut changes = 0;
        let mut entries = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // `shutdown` sets the flag before it takes the lock: either it
        // drains what this call adds, or this call sees the flag.
        if self
            .inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            tracing::debug!(%source, "the host is stopping; declarations are not applied");
            return 0;
        }
        entries.retain(|_, entry| !entry.task.is_finished());
        let mut wanted = std::collections::HashSet::new();
        for declared in declared {
            let name = declared.name.clone();
            if let Some(entry) = entries.get(&name)
                && entry.source != source
            {
                let message = format!(
                    "the name `{name}` is already used by a controller from {}; rename one of them",
                    entry.source
                );
                tracing::error!(controller = %name, origin = %declared.origin, "{message}");
                if let Some(sink) = &declared.sink {
                    let mut status = EntryStatus::new(&name, &declared.origin);
                    status.phase = Phase::Failed;
                    status.last_reload_error = Some(LastError {
                        at: jiff::Timestamp::now(),
                        message,
                    });
                    status.observed_generation = declared.generation;
                    sink.publish(&status);
                }
                continue;
            }
            wanted.insert(name.clone());
            let declared = Arc::new(declared);
            match entries.get(&name) {
                Some(entry) => {
                    changes += usize::from(entry.declared.send_if_modified(|current| {
                        let changed = current.as_ref().is_none_or(|current| {
                            !current.same_version(&declared)
                                || current.generation != declared.generation
                                || current.problem != declared.problem
                        });
                        *current = Some(Arc::clone(&declared));
                        changed
                    }));
                }
                None => {
                    changes += 1;
                    // On the board at once, loading: whoever waits for the
                    // declared controllers to settle sees this one before its
                    // task first runs.
                    self.inner
                        .board
                        .update(&name, &declared, |status| status.phase = Phase::Loading);
                    let (sender, receiver) = watch::channel(Some(declared));
                    let task = tokio::spawn(manage(self.clone(), name.clone(), receiver));
                    entries.insert(
                        name,
                        Entry {
                            source: source.to_owned(),
                            declared: sender,
                            task,
                        },
                    );
                }
            }
        }
        for (name, entry) in entries.iter() {
            if entry.source == source && !wanted.contains(name) {
                changes += usize::from(entry.declared.send_replace(None).is_some());
            }
        }
        changes
    }

    /// Stops every controller, letting in-flight reconciles finish; later
    /// declarations start nothing.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let tasks: Vec<_> = {
            let mut entries = self
                .inner
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            entries
                .drain()
                .map(|(_, entry)| {
                    entry.declared.send_replace(None);
                    entry.task
                })
                .collect()
        };
        for task in tasks {
            let _ = task.await;
        }
    }

    /// The credentials to pull with: `credentials`, and over them those
    /// of each pull secret, read as the controller's identity (so that a
    /// tenant uses only Secrets its ServiceAccount may read).
    async fn pull_credentials(
        &self,
        declared: &Declared,
        credentials: &DockerConfig,
        pull_secrets: &[(String, String)],
    ) -> Result<DockerConfig, String> {
        use k8s_openapi::api::core::v1::Secret;
        let mut merged = credentials.clone();
        let client = self
            .inner
            .runtime
            .identities()
            .client_for(declared.service_account.as_ref());
        let who = declared.service_account.as_ref().map_or_else(
            || "the host".to_owned(),
            |account| format!("ServiceAccount {account}"),
        );
        for (index, (namespace, name)) in pull_secrets.iter().enumerate() {
            let field = format!("spec.module.imagePullSecrets[{index}]");
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
            let secret = api.get(name).await.map_err(|error| match &error {
                kube::Error::Api(status) if status.code == 404 => format!(
                    "{field}: Secret {namespace}/{name} does not exist; create it with `kubectl create secret docker-registry {name} -n {namespace} --docker-server=... --docker-username=... --docker-password=...`"
                ),
                kube::Error::Api(status) if status.code == 403 => format!(
                    "{field}: {who} may not get Secret {namespace}/{name}; grant it `get` on that Secret"
                ),
                _ => format!("{field}: reading Secret {namespace}/{name}: {error}"),
            })?;
            let origin = format!("{field}: Secret {namespace}/{name}");
            if secret.type_.as_deref() != Some("kubernetes.io/dockerconfigjson") {
                return Err(format!(
                    "{origin} is of type {:?}, not kubernetes.io/dockerconfigjson (as `kubectl create secret docker-registry` makes it)",
                    secret.type_.as_deref().unwrap_or("Opaque")
                ));
            }
            let json = secret
                .data
                .as_ref()
                .and_then(|data| data.get(".dockerconfigjson"))
                .ok_or_else(|| format!("{origin} has no `.dockerconfigjson` key"))?;
            let config =
                DockerConfig::parse(&origin, &json.0).map_err(|error| error.to_string())?;
            merged.merge(config);
        }
        Ok(merged)
    }

    /// Whether the tag of an image module names another manifest than
    /// `serving` (`registry/repository@sha256:...`): a new version was
    /// pushed. `false` when the registry cannot be asked (the next check
    /// tries again).
    async fn tag_moved(&self, declared: &Declared, serving: &str) -> bool {
        let ModuleSource::Image {
            reference,
            credentials,
            pull_secrets,
            ..
        } = &declared.module
        else {
            return false;
        };
        let credentials = match self
            .pull_credentials(declared, credentials, pull_secrets)
            .await
        {
            Ok(credentials) => credentials,
            Err(error) => {
                tracing::warn!(controller = %declared.name, image = %reference, %error, "cannot check the tag for a new version");
                return false;
            }
        };
        match self
            .registries()
            .resolve(reference, &credentials.auth_for(reference))
            .await
        {
            Ok(digest) => {
                let moved = !serving.ends_with(&format!("@{digest}"));
                if moved {
                    tracing::info!(controller = %declared.name, image = %reference, %digest, serving, "the tag names a new version; loading it");
                }
                moved
            }
            Err(error) => {
                tracing::warn!(controller = %declared.name, image = %reference, error = %error_chain(&error), "cannot check the tag for a new version");
                false
            }
        }
    }

    /// Loads a declared module in the background; the error names the
    /// module.
    async fn load(&self, declared: &Declared) -> Result<Loaded, LoadFailure> {
        self.load_module(
            declared,
            &declared.module,
            &declared.module_digest,
            declared.name.clone(),
        )
        .await
    }

    /// Loads a declared controller's shadow candidate, if it has one,
    /// under the controller's limits; the error names the candidate.
    async fn load_shadow(&self, declared: &Declared) -> Result<Option<Guest>, LoadFailure> {
        let Some(shadow) = &declared.shadow else {
            return Ok(None);
        };
        let name = format!("{}.shadow", declared.name);
        match self
            .load_module(declared, &shadow.module, &shadow.digest, name)
            .await
        {
            Ok(loaded) => Ok(Some(loaded.guest)),
            Err(failure) => Err(LoadFailure {
                message: format!("shadow candidate: {}", failure.message),
                pulling: failure.pulling,
            }),
        }
    }

    /// What else is done with a version's calls: its recording (the
    /// controller's, kept across versions) and its shadow candidate.
    fn observe(&self, declared: &Declared, shadow: Option<Guest>) -> Observe {
        let record = self.inner.recordings.get().and_then(|recordings| {
            if !recordings.records(&declared.name) {
                return None;
            }
            recordings
                .recorder(&declared.name)
                .map_err(|error| {
                    tracing::error!(controller = %declared.name, dir = %recordings.dir_of(&declared.name).display(), %error, "cannot record the controller's calls");
                })
                .ok()
        });
        Observe {
            record,
            shadow: shadow.map(|guest| {
                Arc::new(Shadow::new(guest).with_concurrency(declared.limits.concurrency))
            }),
        }
    }

    /// Loads one module of a declared controller in the background;
    /// `digest` is the module's as its source read it.
    async fn load_module(
        &self,
        declared: &Declared,
        module: &ModuleSource,
        digest: &str,
        name: String,
    ) -> Result<Loaded, LoadFailure> {
        let engine = self.inner.engine.clone();
        let options = LoadOptions::default()
            .name(name)
            .limits(declared.limits.sandbox())
            .instances(declared.instances);
        // What to load: a file, or bytes named by their origin.
        let mut resolved = None;
        let (path, bytes) = match module {
            ModuleSource::File(path) => {
                let read = files::read_declared(
                    || tokio::fs::read(path.clone()),
                    digest,
                    files::MODULE_SETTLE,
                )
                .await
                .map_err(|error| LoadFailure {
                    message: format!("{}: {error}", path.display()),
                    pulling: false,
                })?;
                (path.clone(), Some(read))
            }
            ModuleSource::Bytes { origin, bytes } => {
                (PathBuf::from(origin), Some(Arc::clone(bytes)))
            }
            ModuleSource::Image {
                reference,
                credentials,
                pull_secrets,
                ..
            } => {
                let pull_failed = |message: String| LoadFailure {
                    message,
                    pulling: true,
                };
                let credentials = self
                    .pull_credentials(declared, credentials, pull_secrets)
                    .await
                    .map_err(|message| pull_failed(format!("image {reference}: {message}")))?;
                let pulled = self
                    .registries()
                    .pull(reference, &credentials.auth_for(reference))
                    .await
                    // It names the image.
                    .map_err(|error| pull_failed(error_chain(&error)))?;
                tracing::info!(controller = %declared.name, image = %reference, resolved = %pulled.resolved, digest = %pulled.digest, bytes = pulled.bytes.len(), "pulled the module");
                let path = PathBuf::from(format!("image {reference} ({})", pulled.resolved));
                resolved = Some(pulled.resolved);
                (path, Some(pulled.bytes))
            }
        };
        // A load compiles (no deadline), then calls `describe` (under the
        // guest's deadline); it waits for a slot of its tenant's like any
        // call, so a storm of edits cannot take more threads than that.
        let flow = Flow::of(&declared.name, declared.tenant.as_deref());
        let loaded = self
            .inner
            .runtime
            .slots()
            .run(&flow, None, move || match &bytes {
                None => engine.load(&path, options),
                Some(bytes) => engine.load_bytes(&path, bytes, options),
            })
            .await;
        let named = module.describe();
        let failed = |message| LoadFailure {
            message,
            pulling: false,
        };
        match loaded {
            Ok(Ok(guest)) => Ok(Loaded { guest, resolved }),
            Ok(Err(error)) => Err(failed(format!("{named}: {}", error_chain(&error)))),
            Err(error) => Err(failed(format!("{named}: the loading task failed: {error}"))),
        }
    }
}

/// A module loaded.
struct Loaded {
    guest: Guest,
    /// The image it came from, pinned to the manifest pulled.
    resolved: Option<String>,
}

/// Why a module could not be loaded.
struct LoadFailure {
    /// What went wrong, naming the module.
    message: String,
    /// Whether pulling its image failed (rather than the module itself).
    pulling: bool,
}

/// Applies the declarations of one controller, latest first, until it is
/// no longer declared.
async fn manage(
    supervisor: Supervisor,
    name: String,
    mut declared: watch::Receiver<Option<Arc<Declared>>>,
) {
    let board = supervisor.board().clone();
    let mut running: Option<RunningController> = None;
    let mut serving: Option<Arc<Declared>> = None;
    // Set when the tag of the serving image names a new manifest.
    let mut tag_moved = false;
    loop {
        let current = declared.borrow_and_update().clone();
        let Some(wanted) = current else {
            break;
        };
        let up_to_date = !std::mem::take(&mut tag_moved)
            && serving
                .as_ref()
                .is_some_and(|serving| serving.same_version(&wanted));
        if up_to_date {
            board.update(&name, &wanted, |status| {
                status.observed_generation = wanted.generation;
                match &wanted.problem {
                    Some(problem) => {
                        let known = status.phase == Phase::Degraded
                            && status
                                .last_reload_error
                                .as_ref()
                                .is_some_and(|error| error.message == *problem);
                        if !known {
                            status.reload_failures += 1;
                            status.last_reload_error = Some(LastError {
                                at: jiff::Timestamp::now(),
                                message: problem.clone(),
                            });
                        }
                        status.phase = Phase::Degraded;
                    }
                    // The declaration is back to the version serving.
                    None => status.phase = Phase::Running,
                }
            });
        } else {
            let applied = tokio::select! {
                applied = apply_version(&supervisor, &name, &wanted, &mut running) => applied,
                // A newer declaration (or removal) wins over this one.
                changed = declared.changed() => {
                    if changed.is_err() { break; }
                    continue;
                }
            };
            if applied {
                serving = Some(Arc::clone(&wanted));
            }
        }
        let polled = match &wanted.module {
            ModuleSource::Image {
                poll: Some(every), ..
            } => Some(*every),
            _ => None,
        };
        let changed = match polled {
            None => declared.changed().await,
            Some(every) => loop {
                tokio::select! {
                    changed = declared.changed() => break changed,
                    () = tokio::time::sleep(every) => {
                        let resolved = board.get(&name).and_then(|status| status.resolved_image);
                        if let Some(resolved) = resolved
                            && supervisor.tag_moved(&wanted, &resolved).await
                        {
                            tag_moved = true;
                            break Ok(());
                        }
                    }
                }
            },
        };
        if changed.is_err() {
            break;
        }
    }
    if let Some(controller) = running.take() {
        let removed = !supervisor
            .inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst);
        if removed {
            tracing::info!(controller = %name, "no longer declared; stopping");
            let released = controller.remove(STOP_GRACE).await;
            if released > 0 {
                tracing::info!(controller = %name, released, "finalizers released");
            }
        } else {
            controller.shutdown(STOP_GRACE).await;
        }
    }
    board.remove(&name);
}

/// Loads, validates and starts or swaps in one version. Returns whether it
/// serves now.
async fn apply_version(
    supervisor: &Supervisor,
    name: &str,
    wanted: &Arc<Declared>,
    running: &mut Option<RunningController>,
) -> bool {
    let board = supervisor.board();
    let started = Instant::now();
    let reloading = running.is_some();
    board.update(name, wanted, |status| {
        status.phase = if reloading {
            Phase::Reloading
        } else {
            Phase::Loading
        };
        status.cut.clone_from(&wanted.cut);
    });
    let fail = |message: String, pulling: bool| {
        tracing::error!(
            controller = %name,
            origin = %wanted.origin,
            module = %wanted.module.describe(),
            "{}: {message}",
            if reloading { "the new version is not swapped in; the old one keeps serving" } else { "not started" }
        );
        board.update(name, wanted, |status| {
            status.phase = if reloading {
                Phase::Degraded
            } else {
                Phase::Failed
            };
            status.reload_failures += 1;
            status.last_reload_error = Some(LastError {
                at: jiff::Timestamp::now(),
                message,
            });
            status.pull_failed = pulling;
            status.observed_generation = wanted.generation;
        });
    };
    let Loaded { guest, resolved } = match supervisor.load(wanted).await {
        Ok(loaded) => loaded,
        Err(failure) => {
            fail(failure.message, failure.pulling);
            return false;
        }
    };
    let shadow = match supervisor.load_shadow(wanted).await {
        Ok(shadow) => shadow,
        Err(failure) => {
            fail(failure.message, failure.pulling);
            return false;
        }
    };
    let digest = guest.digest().to_owned();
    let config = wanted.config(guest, supervisor.observe(wanted, shadow));
    let result = match running {
        Some(controller) => controller.reload(config).await.map(|()| None),
        None => start(supervisor, name, wanted, config).await.map(Some),
    };
    match result {
        Ok(started_now) => {
            if let Some(controller) = started_now {
                *running = Some(controller);
            }
            let handle = running.as_ref().map(RunningController::handle);
            let elapsed = started.elapsed();
            tracing::info!(controller = %name, %digest, elapsed_ms = elapsed.as_millis() as u64, "serving");
            board.update(name, wanted, |status| {
                if status.digest.is_some() {
                    status.reloads += 1;
                }
                status.phase = Phase::Running;
                status.digest = Some(digest.clone());
                status.resolved_image.clone_from(&resolved);
                status.pull_failed = false;
                status.handle = handle;
                status.observed_generation = wanted.generation;
                status.last_swap = Some(elapsed);
            });
            true
        }
        Err(error) => {
            fail(error_chain(&error), false);
            false
        }
    }
}

/// Starts a controller, waiting (and saying so) while a watched kind is
/// not served yet or the API server cannot be used: an outage or a
/// credential being rotated must not leave a declared controller stopped
/// until someone edits it. Problems of the declaration itself (its grant,
/// its scope, its queue settings) end the start at once.
async fn start(
    supervisor: &Supervisor,
    name: &str,
    wanted: &Declared,
    config: ControllerConfig,
) -> Result<RunningController, StartError> {
    crate::retry::retry_while(
        || supervisor.runtime().start(config.clone()),
        |error| {
            matches!(
                error,
                StartError::Discovery { .. }
                    | StartError::Cluster { .. }
                    | StartError::NotSynced { .. }
                    | StartError::ServiceAccountLacksPermission { .. }
                    | StartError::Review { .. }
            )
        },
        |error, delay| {
            let (phase, message) = match error {
                StartError::Discovery { source, .. } => (
                    Phase::WaitingForKind,
                    format!("waiting for a watched kind to be served: {source}"),
                ),
                StartError::ServiceAccountLacksPermission { .. } => (
                    Phase::LacksPermission,
                    format!(
                        "{other}; starting again in {delay:?}",
                        other = error_chain(error)
                    ),
                ),
                other => (
                    Phase::WaitingForCluster,
                    format!(
                        "waiting for the cluster: {}; starting again in {delay:?}",
                        error_chain(other)
                    ),
                ),
            };
            tracing::info!(controller = %name, ?delay, "{message}");
            supervisor.board().update(name, wanted, |status| {
                status.phase = phase;
                status.last_reload_error = Some(LastError {
                    at: jiff::Timestamp::now(),
                    message: message.clone(),
                });
            });
        },
    )
    .await
}
