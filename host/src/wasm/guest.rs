//! One loaded guest: its compiled component, its description and its
//! sandbox, and the three calls of the contract.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{
    self as wit, Controller, ControllerPre, FINALIZES_EXPORT, INDEXES_EXPORT, PROJECTIONS_EXPORT,
    READS_EXPORT, RECONCILE_JSON_EXPORT, ReconcileJson,
};
use super::compile_cache::{CacheStatus, digest};
use super::engine::{Runtime, WasmEngine, deadline_ticks};
use super::error::{GuestError, LoadError};
use super::guest_log::GuestLog;
use super::host_imports::{EmptyCache, SharedCache};
use super::limits::{LimitHitCounts, LimitHits, Limits, MemoryLimiter};
use super::wasi::{
    BlockedPastDeadline, CallClock, CallDeadline, Clock, GuestOutput, empty_context,
};
use crate::actions::{self, MalformedOutput, ObjectRef, Outcome};
use crate::cluster::{Projection, Projections};

/// The exports the `controller` world requires.
const REQUIRED_EXPORTS: [&str; 3] = ["describe", "reconcile", "map"];

/// Import namespaces a guest may use: the contract's own interfaces and
/// WASI 0.2 (satisfied with an empty context).
const ALLOWED_IMPORT_PREFIXES: [&str; 2] = ["paddock:controller/", "wasi:"];

/// Whether a guest's instances serve one call each or are reused.
///
/// Instantiating costs microseconds for a Rust guest but a millisecond or
/// more for an interpreter-carrying Python guest, so by default an instance
/// is kept after a successful call and serves the next call of the same
/// guest. What is per call stays per call: the deadline, the memory-cap
/// verdict, the captured output and the cache the call reads are reset
/// before every call.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Instances {
    /// Reuse instances (the default): each [`Guest`] keeps a pool of idle
    /// instances, at most one per caller running at the same time. An
    /// instance belongs to one `Guest` only, so no state crosses from one
    /// guest or tenant to another; it is discarded after any failed call
    /// (trap, deadline, memory cap, malformed output), so the next call
    /// starts fresh. Globals the guest sets in one call are still there in
    /// the next call of the same guest: guests must not depend on them.
    #[default]
    Reused,
    /// A fresh instance for every call: nothing survives from one call to
    /// the next, at the cost of one instantiation per call. Its memory
    /// comes from the engine's pool when it has one
    /// ([`EngineOptions::pooling`](super::EngineOptions::pooling), on by
    /// default) and the guest's `memoryBytes` fits the pool's slots.
    FreshPerCall,
}

/// How to load a guest.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The name the operator gave the guest; default: the name its
    /// `describe` answers.
    pub name: Option<String>,
    /// Its sandbox limits.
    pub limits: Limits,
    /// The wall clock it reads.
    pub clock: Clock,
    /// Whether instances are reused across calls. Default:
    /// [`Instances::Reused`].
    pub instances: Instances,
    /// Hand the guest whole objects, whatever projections it declared
    /// (default: `false`, objects are narrowed to them). For comparing a
    /// guest's answers with and without its projections.
    pub whole_objects: bool,
}

impl LoadOptions {
    /// Sets the guest's name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets whether instances are reused across calls.
    #[must_use]
    pub fn instances(mut self, instances: Instances) -> Self {
        self.instances = instances;
        self
    }

    /// Hands the guest whole objects, ignoring its projections.
    #[must_use]
    pub fn whole_objects(mut self) -> Self {
        self.whole_objects = true;
        self
    }
}

/// How a watched resource relates to the primary objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    /// Reconciled objects.
    Primary,
    /// Objects owned by primary objects.
    Owned,
    /// Objects mapped to primary objects by the guest's `map`.
    Mapped,
}

/// A resource a guest watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    /// `group/version`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// How it relates to the primary objects.
    pub relation: Relation,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only objects matching this label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

/// A resource a guest reads from the cache without watching it (`reads`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Read {
    /// `group/version`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// An index of the cache a guest looks objects up by (`indexes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Its name, unique within the guest.
    pub name: String,
    /// `group/version` of the indexed resource.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// JSONPath expressions, in kubectl's syntax.
    pub paths: Vec<String>,
}

/// The fields of one kind a guest reads (`projections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionDecl {
    /// `group/version` of the resource.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// JSONPath expressions of field names and `[*]`.
    pub paths: Vec<String>,
}

/// What a guest declared at load: its `describe`, and its optional
/// declarations (the exports `controller` added after 0.1.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The guest's own name for itself.
    pub name: String,
    /// Its watches; exactly one is primary.
    pub watches: Vec<Watch>,
    /// Whether it finalizes its primary objects (`finalizes`; `false` for
    /// a guest without that export).
    #[serde(default)]
    pub finalizes: bool,
    /// The resources it reads without watching them (`reads`; none for a
    /// guest without that export).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Read>,
    /// The indexes it looks objects up by (`indexes`; none for a guest
    /// without that export).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    /// The fields it reads, per kind (`projections`; none for a guest
    /// without that export: it sees whole objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projections: Vec<ProjectionDecl>,
}

impl Info {
    /// The primary watch.
    pub fn primary(&self) -> &Watch {
        self.watches
            .iter()
            .find(|watch| watch.relation == Relation::Primary)
            .unwrap_or(&self.watches[0])
    }

    fn from_guest(declared: Declarations) -> Result<Self, String> {
        let Declarations {
            info,
            finalizes,
            reads,
            indexes,
            projections,
        } = declared;
        if info.name.trim().is_empty() {
            return Err("`name` is empty".into());
        }
        let watches: Vec<Watch> = info
            .watches
            .into_iter()
            .map(|watch| Watch {
                api_version: watch.api_version,
                kind: watch.kind,
                relation: match watch.relation {
                    wit::Relation::Primary => Relation::Primary,
                    wit::Relation::Owned => Relation::Owned,
                    wit::Relation::Mapped => Relation::Mapped,
                },
                namespace: watch.namespace,
                label_selector: watch.label_selector,
            })
            .collect();
        kinds_named(
            "watch",
            watches
                .iter()
                .map(|watch| (&watch.api_version, &watch.kind)),
        )?;
        let reads: Vec<Read> = reads
            .into_iter()
            .map(|read| Read {
                api_version: read.api_version,
                kind: read.kind,
                namespace: read.namespace,
            })
            .collect();
        kinds_named(
            "`reads` entry",
            reads.iter().map(|read| (&read.api_version, &read.kind)),
        )?;
        let primaries = watches
            .iter()
            .filter(|watch| watch.relation == Relation::Primary)
            .count();
        if primaries != 1 {
            return Err(format!(
                "exactly one watch must be `primary`, found {primaries}"
            ));
        }
        let indexes: Vec<Index> = indexes
            .into_iter()
            .map(|index| Index {
                name: index.name,
                api_version: index.api_version,
                kind: index.kind,
                paths: index.paths,
            })
            .collect();
        check_indexes(&indexes, &watches, &reads)?;
        let projections: Vec<ProjectionDecl> = projections
            .into_iter()
            .map(|projection| ProjectionDecl {
                api_version: projection.api_version,
                kind: projection.kind,
                paths: projection.paths,
            })
            .collect();
        check_projections(&projections, &watches, &reads)?;
        Ok(Self {
            name: info.name,
            watches,
            finalizes,
            reads,
            indexes,
            projections,
        })
    }

    /// The parsed projections.
    fn parsed_projections(&self) -> Projections {
        Projections::parse(self.projections.iter().map(|declared| {
            (
                declared.api_version.as_str(),
                declared.kind.as_str(),
                declared.paths.as_slice(),
            )
        }))
        // Checked at load: they parse.
        .unwrap_or_default()
    }
}

/// Whether `api_version` `kind` is one the guest watches or reads.
fn declares_kind(watches: &[Watch], reads: &[Read], api_version: &str, kind: &str) -> bool {
    watches
        .iter()
        .map(|watch| (&watch.api_version, &watch.kind))
        .chain(reads.iter().map(|read| (&read.api_version, &read.kind)))
        .any(|(declared_version, declared_kind)| {
            declared_version == api_version && declared_kind == kind
        })
}

/// Checks a guest's projections: each of a kind it watches or reads, each
/// kind once, with paths a projection can keep.
fn check_projections(
    projections: &[ProjectionDecl],
    watches: &[Watch],
    reads: &[Read],
) -> Result<(), String> {
    let mut kinds = std::collections::BTreeSet::new();
    for projection in projections {
        let (api_version, kind) = (&projection.api_version, &projection.kind);
        if !declares_kind(watches, reads, api_version, kind) {
            return Err(format!(
                "the projection of `{api_version}` `{kind}` is of a kind the controller \
                 neither watches nor reads: watch it, add it to `reads`, or drop the projection"
            ));
        }
        if !kinds.insert((api_version, kind)) {
            return Err(format!(
                "`{api_version}` `{kind}` has two projections: list all its paths in one"
            ));
        }
        Projection::parse(&projection.paths)
            .map_err(|error| format!("the projection of `{api_version}` `{kind}`: {error}"))?;
    }
    Ok(())
}

/// Checks a guest's indexes: each named once, of a kind it watches or
/// reads, with expressions that parse.
fn check_indexes(indexes: &[Index], watches: &[Watch], reads: &[Read]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for index in indexes {
        let name = &index.name;
        if name.trim().is_empty() {
            return Err(format!(
                "an index of {} `{}` has no name: name it, for `cache.by-index`",
                index.api_version, index.kind
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(format!(
                "two indexes are named `{name}`: give each its own name"
            ));
        }
        if !declares_kind(watches, reads, &index.api_version, &index.kind) {
            return Err(format!(
                "index `{name}` is of `{}` `{}`, which the controller neither watches nor \
                 reads: watch it, or add it to `reads`",
                index.api_version, index.kind
            ));
        }
        crate::cluster::IndexPaths::parse(&index.paths)
            .map_err(|error| format!("index `{name}`: {error}"))?;
    }
    Ok(())
}

/// Checks that every declared resource (`what` #index) names its `api-version` and `kind`.
fn kinds_named<'a>(
    what: &str,
    declared: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    for (index, (api_version, kind)) in declared.enumerate() {
        if api_version.is_empty() || kind.is_empty() {
            return Err(format!(
                "{what} #{index}: `api-version` and `kind` must be set"
            ));
        }
    }
    Ok(())
}

/// Whether the reconciled object exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It exists; this is its latest state.
    #[default]
    Applied,
    /// It was deleted; this is its last known state.
    Deleted,
}

/// The state of one store: one instance's sandbox.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    output: GuestOutput,
    pub(crate) cache: SharedCache,
    /// What the guest reads of each kind, which its cache reads narrow to.
    pub(crate) projections: Arc<Projections>,
    pub(crate) guest: Arc<str>,
    /// The wall clock the guest reads; a call may stop it at its instant.
    clock: CallClock,
    /// When the current call must end; blocking WASI waits give up then.
    deadline_at: Instant,
    /// The guest's log budget, and the log bytes the current call wrote.
    pub(crate) log: Arc<GuestLog>,
    pub(crate) logged: u64,
    pub(crate) hits: Arc<LimitHits>,
}

impl CallDeadline for HostState {
    fn call_deadline(&self) -> Instant {
        self.deadline_at
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A compiled component shared by the guests that load it: its code is in
/// memory once, however many controllers run it.
pub(crate) struct SharedComponent(Component);

/// A loaded guest, ready to be called. Each call runs in an instance of
/// this guest alone: a reused one or a fresh one, as
/// [`LoadOptions::instances`] says; a failed call's instance is discarded,
/// so a trapped call leaves nothing broken. Cheap to clone (clones share
/// the pool of idle instances).
#[derive(Clone)]
pub struct Guest {
    inner: Arc<GuestInner>,
}

struct GuestInner {
    /// Keeps the compiled code shared with other guests of the same
    /// component registered while this guest lives.
    _component: Arc<SharedComponent>,
    path: PathBuf,
    digest: String,
    info: Info,
    cache_status: CacheStatus,
    /// Keeps the engine (and its epoch ticker) alive.
    _engine: WasmEngine,
    /// The wasmtime engine its instances run on (the pooled one for
    /// fresh-per-call guests, where there is a pool).
    runtime: wasmtime::Engine,
    sandbox: Sandbox,
}

/// One guest's compiled component, limits and idle instances.
struct Sandbox {
    name: Arc<str>,
    limits: Limits,
    log: Arc<GuestLog>,
    hits: Arc<LimitHits>,
    clock: Clock,
    instances: Instances,
    /// The fields it reads of each kind: what its cache reads hand it.
    projections: Arc<Projections>,
    pre: ControllerPre<HostState>,
    /// `reconcile-json`, when the guest exports it: then its reconciles
    /// go through it.
    reconcile_json: Option<wasmtime::component::ComponentExportIndex>,
    idle: Mutex<Vec<Instance>>,
}

/// An instance that served a call successfully, waiting for the next one.
struct Instance {
    store: Store<HostState>,
    instance: wasmtime::component::Instance,
    exports: Exports,
}

/// The exports of one instance the host calls: the `base` world's, and
/// `reconcile-json` when the guest exports it (world `controller-json`).
struct Exports {
    base: Controller,
    reconcile_json: Option<ReconcileJson>,
}

/// What a guest answered a reconcile with: the contract's records, or the
/// outcome's JSON (`reconcile-json`).
enum Answer {
    Records(Result<wit::Outcome, wit::GuestFailure>),
    Json(Result<Vec<u8>, wit::GuestFailure>),
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("name", &self.inner.sandbox.name)
            .field("path", &self.inner.path)
            .field("digest", &self.inner.digest)
            .field("limits", &self.inner.sandbox.limits)
            .field("instances", &self.inner.sandbox.instances)
            .finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// Loads the component at `path`: reads it, compiles it (or takes it from
    /// the compile cache), checks that it implements the `controller` world
    /// and imports nothing else than the contract and WASI, pre-instantiates
    /// it and calls `describe`.
    pub fn load(&self, path: &Path, options: LoadOptions) -> Result<Guest, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(path, &bytes, options)
    }

    /// Loads a component from bytes; `path` names it in errors and logs.
    pub fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        options: LoadOptions,
    ) -> Result<Guest, LoadError> {
        let path = path.to_owned();
        check_header(&path, bytes)?;
        let digest = digest(bytes);
        let started = Instant::now();
        let runtime = self.inner.runtime(
            options.instances == Instances::FreshPerCall,
            options.limits.memory_bytes,
        );
        let loaded = loaded_component(runtime, &digest);
        let shared_here = loaded.is_some();
        let (component, cache_status) = match loaded {
            // Another guest of this process runs the same component: share
            // its compiled code.
            Some(shared) => (shared, CacheStatus::Hit),
            None => {
                let (component, status) = runtime
                    .cache
                    .load(&runtime.engine, bytes, &digest)
                    .map_err(|error| LoadError::Compile {
                        path: path.clone(),
                        source: match error {
                            super::compile_cache::CacheError::Compile(source) => source,
                        },
                    })?;
                (remember_component(runtime, &digest, component), status)
            }
        };
        let counter = match cache_status {
            CacheStatus::Hit if shared_here => &self.inner.loads.shared,
            CacheStatus::Hit => &self.inner.loads.cached,
            CacheStatus::Miss | CacheStatus::Uncached => &self.inner.loads.compiled,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(path = %path.display(), %digest, cache = ?cache_status, shared_here,
            elapsed = ?started.elapsed(), "loaded component");
        check_shape(&runtime.engine, &path, &component.0)?;
        check_reconcile_json(&runtime.engine, &path, &component.0)?;
        let instance_pre = runtime
            .linker
            .instantiate_pre(&component.0)
            .map_err(|source| LoadError::Contract {
                path: path.clone(),
                source,
            })?;
        let pre = ControllerPre::new(instance_pre).map_err(|source| LoadError::Contract {
            path: path.clone(),
            source,
        })?;
        // `describe` runs in an instance of its own, under the operator's
        // name if there is one: the guest's own name is not known yet.
        let loading = Sandbox {
            name: options.name.as_deref().unwrap_or("<loading>").into(),
            limits: options.limits,
            log: Arc::new(GuestLog::new(&options.limits)),
            hits: Arc::default(),
            clock: options.clock,
            instances: Instances::FreshPerCall,
            projections: Projections::none(),
            reconcile_json: component.0.get_export_index(None, RECONCILE_JSON_EXPORT),
            pre,
            idle: Mutex::default(),
        };
        let declared = loading
            .call(
                &runtime.engine,
                Arc::new(EmptyCache),
                None,
                declarations,
                Ok,
            )
            .map_err(|source| LoadError::Describe {
                path: path.clone(),
                source: Box::new(source),
            })?;
        let info = Info::from_guest(declared).map_err(|problem| LoadError::InvalidInfo {
            path: path.clone(),
            problem,
        })?;
        let name: Arc<str> = options.name.unwrap_or_else(|| info.name.clone()).into();
        let projections = if options.whole_objects {
            Projections::none()
        } else {
            Arc::new(info.parsed_projections())
        };
        Ok(Guest {
            inner: Arc::new(GuestInner {
                _component: component,
                path,
                digest,
                info,
                cache_status,
                _engine: self.clone(),
                runtime: runtime.engine.clone(),
                sandbox: Sandbox {
                    name,
                    instances: options.instances,
                    projections,
                    ..loading
                },
            }),
        })
    }
}

/// The component of `digest` if a live guest of this runtime loaded it.
fn loaded_component(runtime: &Runtime, digest: &str) -> Option<Arc<SharedComponent>> {
    runtime
        .loaded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(digest)
        .and_then(std::sync::Weak::upgrade)
}

/// Registers a freshly loaded component so that later guests of the same
/// digest share its code; entries of components no guest holds any more
/// are dropped.
fn remember_component(
    runtime: &Runtime,
    digest: &str,
    component: Component,
) -> Arc<SharedComponent> {
    let shared = Arc::new(SharedComponent(component));
    let mut loaded = runtime
        .loaded
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loaded.retain(|_, known| known.strong_count() > 0);
    loaded.insert(digest.to_owned(), Arc::downgrade(&shared));
    shared
}

/// Checks, before anything runs, that a `reconcile-json` export takes what
/// `reconcile` takes and answers `result<list<u8>, error>` with
/// `reconcile`'s error: the host calls it instead of `reconcile`.
fn check_reconcile_json(
    engine: &wasmtime::Engine,
    path: &Path,
    component: &Component,
) -> Result<(), LoadError> {
    use wasmtime::component::types::Type;
    let ty = component.component_type();
    let Some(export) = ty.get_export(engine, RECONCILE_JSON_EXPORT) else {
        return Ok(());
    };
    let reconcile = ty.get_export(engine, "reconcile").map(|export| export.ty);
    let fits = match (export.ty, reconcile) {
        (ComponentItem::ComponentFunc(json), Some(ComponentItem::ComponentFunc(reconcile))) => {
            let error = reconcile.results().next().and_then(|result| match result {
                Type::Result(result) => result.err(),
                _ => None,
            });
            let answer: Vec<Type> = json.results().collect();
            json.params()
                .map(|(_, ty)| ty)
                .eq(reconcile.params().map(|(_, ty)| ty))
                && matches!(answer.as_slice(), [Type::Result(result)]
                    if matches!(result.ok(), Some(Type::List(list)) if list.ty() == Type::U8)
                        && result.err() == error)
        }
        _ => false,
    };
    if fits {
        return Ok(());
    }
    Err(LoadError::Contract {
        path: path.to_owned(),
        source: wasmtime::Error::msg(format!(
            "the export `{RECONCILE_JSON_EXPORT}` is not \
             `func(req: request) -> result<list<u8>, error>`"
        )),
    })
}

/// Checks exports and imports by name, so that the error names exactly
/// what is missing or unsupported.
fn check_shape(
    engine: &wasmtime::Engine,
    path: &Path,
    component: &Component,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let exported: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let missing: Vec<String> = REQUIRED_EXPORTS
        .iter()
        .filter(|name| !exported.iter().any(|export| export == *name))
        .map(|name| (*name).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::MissingExports {
            path: path.to_owned(),
            missing,
        });
    }
    for (import, item) in ty.imports(engine) {
        let allowed = ALLOWED_IMPORT_PREFIXES
            .iter()
            .any(|prefix| import.starts_with(prefix))
            && matches!(item.ty, ComponentItem::ComponentInstance(_));
        if !allowed {
            return Err(LoadError::UnsupportedImport {
                path: path.to_owned(),
                import: import.to_owned(),
            });
        }
    }
    Ok(())
}

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    if &bytes[4..8] == CORE_VERSION {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

impl Guest {
    /// The guest's name (the operator's, else its own).
    pub fn name(&self) -> &str {
        &self.inner.sandbox.name
    }

    /// The module file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The sha256 digest of its component, as hex.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// What its `describe` answered at load.
    pub fn info(&self) -> &Info {
        &self.inner.info
    }

    /// Its sandbox limits.
    pub fn limits(&self) -> Limits {
        self.inner.sandbox.limits
    }

    /// Whether its instances are reused across calls.
    pub fn instances(&self) -> Instances {
        self.inner.sandbox.instances
    }

    /// How many idle instances wait for the next call.
    pub fn idle_instances(&self) -> usize {
        self.inner.sandbox.idle_instances().len()
    }

    /// How often its calls hit the bounds on what they answer and log.
    pub fn limit_hits(&self) -> LimitHitCounts {
        self.inner.sandbox.hits.snapshot()
    }

    /// Whether loading it compiled the component or took it from the cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.inner.cache_status
    }

    /// The guest's projections: the fields it reads of each kind.
    pub fn projections(&self) -> &Arc<Projections> {
        &self.inner.sandbox.projections
    }

    /// The guest's projection of `api_version` `kind`: the fields it reads
    /// of such objects; `None` when it reads them whole.
    pub fn projection(&self, api_version: &str, kind: &str) -> Option<&Arc<Projection>> {
        self.inner.sandbox.projections.of(api_version, kind)
    }

    /// Calls `describe` (and the optional declarations) again.
    pub fn describe(&self) -> Result<Info, GuestError> {
        self.call(Arc::new(EmptyCache), None, declarations, |declared| {
            Info::from_guest(declared).map_err(|problem| GuestError::Malformed {
                guest: self.name().to_owned(),
                source: MalformedOutput {
                    index: 0,
                    verb: "describe",
                    problem,
                },
            })
        })
    }

    /// Reconciles one object (its JSON), reading `cache`.
    pub fn reconcile(
        &self,
        object: &str,
        change: Change,
        attempt: u32,
        cache: SharedCache,
    ) -> Result<Outcome, GuestError> {
        self.reconcile_at(object, change, attempt, cache, None)
    }

    /// Reconciles one object as [`Guest::reconcile`] does, with the guest's
    /// wall clock stopped at `now` for this call if it is given (a
    /// recorded reconcile replayed at the instant it first ran).
    pub fn reconcile_at(
        &self,
        object: &str,
        change: Change,
        attempt: u32,
        cache: SharedCache,
        now: Option<SystemTime>,
    ) -> Result<Outcome, GuestError> {
        let request = wit::Request {
            object: object.to_owned(),
            change: match change {
                Change::Applied => wit::Change::Applied,
                Change::Deleted => wit::Change::Deleted,
            },
            attempt,
        };
        let guest = || self.name().to_owned();
        let limits = self.limits();
        let answer = self.call(
            cache,
            now,
            |exports, _, store| match &exports.reconcile_json {
                Some(reconcile_json) => reconcile_json
                    .call(store, (request,))
                    .map(|(answer,)| Answer::Json(answer)),
                None => exports
                    .base
                    .call_reconcile(store, &request)
                    .map(Answer::Records),
            },
            |answer| match self.records_of(answer)? {
                Ok(outcome) => {
                    self.check_answer(
                        outcome.actions.len(),
                        outcome.actions.iter().map(action_bytes).sum(),
                    )?;
                    let mut outcome = actions::outcome_from_guest(outcome).map_err(|source| {
                        GuestError::Malformed {
                            guest: guest(),
                            source,
                        }
                    })?;
                    if let Some(delay) = &mut outcome.requeue_after
                        && *delay < limits.min_requeue_after
                    {
                        LimitHits::bump(&self.inner.sandbox.hits.requeue_raised);
                        *delay = limits.min_requeue_after;
                    }
                    Ok(Ok(outcome))
                }
                // The guest answered: its instance is sound and may be reused.
                Err(failure) => Ok(Err(failure)),
            },
        )?;
        answer.map_err(|failure| match failure {
            wit::GuestFailure::Transient(message) => GuestError::Transient {
                guest: guest(),
                message,
            },
            wit::GuestFailure::Permanent(message) => GuestError::Permanent {
                guest: guest(),
                message,
            },
        })
    }

    /// Maps a changed object of a `mapped` watch to the primary objects to
    /// reconcile.
    pub fn map(&self, changed: &str, cache: SharedCache) -> Result<Vec<ObjectRef>, GuestError> {
        self.map_at(changed, cache, None)
    }

    /// Maps a changed object as [`Guest::map`] does, with the guest's wall
    /// clock stopped at `now` for this call if it is given.
    pub fn map_at(
        &self,
        changed: &str,
        cache: SharedCache,
        now: Option<SystemTime>,
    ) -> Result<Vec<ObjectRef>, GuestError> {
        let changed = changed.to_owned();
        self.call(
            cache,
            now,
            |exports, _, store| exports.base.call_map(store, &changed),
            |refs| {
                self.check_answer(0, refs.iter().map(ref_bytes).sum())?;
                actions::refs_from_guest(refs).map_err(|source| GuestError::Malformed {
                    guest: self.name().to_owned(),
                    source,
                })
            },
        )
    }

    /// The outcome a guest answered, read from its JSON when it answered
    /// through `reconcile-json`: an answer of more bytes than
    /// `maxAnswerBytes` is refused unread, one that is not an outcome's
    /// JSON is malformed.
    fn records_of(
        &self,
        answer: Answer,
    ) -> Result<Result<wit::Outcome, wit::GuestFailure>, GuestError> {
        match answer {
            Answer::Records(answer) => Ok(answer),
            Answer::Json(Err(failure)) => Ok(Err(failure)),
            Answer::Json(Ok(json)) => {
                self.check_answer(0, json.len())?;
                actions::outcome_from_json(&json)
                    .map(Ok)
                    .map_err(|source| GuestError::Malformed {
                        guest: self.name().to_owned(),
                        source,
                    })
            }
        }
    }

    /// Refuses an answer of more actions or bytes than the limits allow.
    fn check_answer(&self, actions: usize, bytes: usize) -> Result<(), GuestError> {
        let limits = self.limits();
        let hits = &self.inner.sandbox.hits;
        let (limit, problem) = if actions > limits.max_actions as usize {
            LimitHits::bump(&hits.actions);
            (
                "maxActions",
                format!(
                    "answered {actions} actions, more than the {} allowed",
                    limits.max_actions
                ),
            )
        } else if bytes as u64 > limits.max_answer_bytes {
            LimitHits::bump(&hits.answer_bytes);
            (
                "maxAnswerBytes",
                format!(
                    "answered {bytes} bytes, more than the {} allowed",
                    limits.max_answer_bytes
                ),
            )
        } else {
            return Ok(());
        };
        Err(GuestError::OutputLimit {
            guest: self.name().to_owned(),
            limit,
            problem,
        })
    }

    fn call<R, T>(
        &self,
        cache: SharedCache,
        now: Option<SystemTime>,
        body: impl FnOnce(
            &Exports,
            &wasmtime::component::Instance,
            &mut Store<HostState>,
        ) -> wasmtime::Result<R>,
        check: impl FnOnce(R) -> Result<T, GuestError>,
    ) -> Result<T, GuestError> {
        let inner = &*self.inner;
        inner.sandbox.call(&inner.runtime, cache, now, body, check)
    }
}

impl Sandbox {
    fn idle_instances(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one call under the guest's limits, in an idle instance when
    /// instances are reused, else in a fresh one; `check` validates the
    /// answer. The instance goes back to the pool only when the call and the
    /// check succeeded. A failure becomes a [`GuestError`] that says which
    /// limit was hit.
    fn call<R, T>(
        &self,
        engine: &wasmtime::Engine,
        cache: SharedCache,
        now: Option<SystemTime>,
        body: impl FnOnce(
            &Exports,
            &wasmtime::component::Instance,
            &mut Store<HostState>,
        ) -> wasmtime::Result<R>,
        check: impl FnOnce(R) -> Result<T, GuestError>,
    ) -> Result<T, GuestError> {
        let reuse = self.instances == Instances::Reused;
        let idle = if reuse {
            self.idle_instances().pop()
        } else {
            None
        };
        let (mut store, reused) = match idle {
            Some(Instance {
                store,
                instance,
                exports,
            }) => (store, Some((instance, exports))),
            None => (self.new_store(engine), None),
        };
        // What is per call: the cache it reads, the memory-cap verdict, the
        // captured output and the deadline.
        let state = store.data_mut();
        state.cache = cache;
        state.clock.set_call(now);
        state.limiter.reset();
        state.output.clear();
        state.logged = 0;
        state.deadline_at = Instant::now() + self.limits.deadline;
        store.set_epoch_deadline(deadline_ticks(self.limits.deadline));

        let result = match reused {
            Some(reused) => Ok(reused),
            None => self.instantiate(&mut store),
        }
        .and_then(|(instance, exports)| {
            body(&exports, &instance, &mut store).map(|answer| (answer, instance, exports))
        });
        let printed = store.data().output.text();
        forward_output(store.data_mut(), &printed);
        let (answer, instance, exports) = result
            .map_err(|source| classify(&self.name, self.limits, store.data(), source, printed))?;
        let checked = check(answer)?;
        if reuse {
            // Drop what this call's cache handle holds on to until the next call.
            store.data_mut().cache = Arc::new(EmptyCache);
            self.idle_instances().push(Instance {
                store,
                instance,
                exports,
            });
        }
        Ok(checked)
    }

    /// A new instance, and the contract's bindings of it.
    fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<(wasmtime::component::Instance, Exports)> {
        let instance = self.pre.instance_pre().instantiate(&mut *store)?;
        let base = Controller::new(&mut *store, &instance)?;
        let reconcile_json = match &self.reconcile_json {
            Some(export) => Some(instance.get_typed_func(&mut *store, export).map_err(
                |error| {
                    error.context(format!(
                        "the export `{RECONCILE_JSON_EXPORT}` is not \
                     `func(req: request) -> result<list<u8>, error>`"
                    ))
                },
            )?),
            None => None,
        };
        Ok((
            instance,
            Exports {
                base,
                reconcile_json,
            },
        ))
    }

    fn new_store(&self, engine: &wasmtime::Engine) -> Store<HostState> {
        let output = GuestOutput::default();
        let clock = CallClock::new(self.clock);
        let state = HostState {
            wasi: empty_context(&output, clock.clone()),
            clock,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
            output,
            cache: Arc::new(EmptyCache),
            projections: Arc::clone(&self.projections),
            guest: Arc::clone(&self.name),
            deadline_at: Instant::now(),
            log: Arc::clone(&self.log),
            logged: 0,
            hits: Arc::clone(&self.hits),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        store
    }
}

/// What a guest answers at load: `describe`, and the optional exports of
/// `controller` (defaulted for a guest built against a version without
/// them).
struct Declarations {
    info: wit::Info,
    finalizes: bool,
    reads: Vec<wit::Read>,
    indexes: Vec<wit::Index>,
    projections: Vec<wit::Projection>,
}

/// Calls `describe`, then the optional `finalizes`, `reads`, `indexes` and
/// `projections` when the guest exports them (a guest built against 0.1.0
/// exports none: it does not finalize, reads only what it watches, has no
/// index and sees whole objects).
fn declarations(
    exports: &Exports,
    instance: &wasmtime::component::Instance,
    store: &mut Store<HostState>,
) -> wasmtime::Result<Declarations> {
    let info = exports.base.call_describe(&mut *store)?;
    let finalizes = optional_export::<bool>(instance, store, FINALIZES_EXPORT, "func() -> bool")?
        .unwrap_or(false);
    let reads =
        optional_export::<Vec<wit::Read>>(instance, store, READS_EXPORT, "func() -> list<read>")?
            .unwrap_or_default();
    let indexes = optional_export::<Vec<wit::Index>>(
        instance,
        store,
        INDEXES_EXPORT,
        "func() -> list<index>",
    )?
    .unwrap_or_default();
    let projections = optional_export::<Vec<wit::Projection>>(
        instance,
        store,
        PROJECTIONS_EXPORT,
        "func() -> list<projection>",
    )?
    .unwrap_or_default();
    Ok(Declarations {
        info,
        finalizes,
        reads,
        indexes,
        projections,
    })
}

/// Calls the optional export `name`, a function without parameters
/// answering `R`; `None` when the guest does not export it.
fn optional_export<R>(
    instance: &wasmtime::component::Instance,
    store: &mut Store<HostState>,
    name: &str,
    signature: &str,
) -> wasmtime::Result<Option<R>>
where
    R: wasmtime::component::ComponentType + wasmtime::component::Lift + Send + Sync + 'static,
{
    let Some(export) = instance.get_export_index(&mut *store, None, name) else {
        return Ok(None);
    };
    let function = instance
        .get_typed_func::<(), (R,)>(&mut *store, &export)
        .map_err(|error| error.context(format!("the export `{name}` is not `{signature}`")))?;
    Ok(Some(function.call(&mut *store, ())?.0))
}

fn classify(
    name: &str,
    limits: Limits,
    state: &HostState,
    source: wasmtime::Error,
    output: String,
) -> GuestError {
    let guest = name.to_owned();
    let error = if let Some(requested) = state.limiter.hit() {
        GuestError::MemoryLimit {
            guest,
            limit: limits.memory_bytes,
            requested: u64::try_from(requested).unwrap_or(u64::MAX),
        }
    } else if source.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
        || source.downcast_ref::<BlockedPastDeadline>().is_some()
    {
        GuestError::Deadline {
            guest,
            deadline: limits.deadline,
        }
    } else {
        GuestError::Trap {
            guest,
            output,
            source,
        }
    };
    tracing::warn!(guest = name, error.type = error.kind(), error = %error, "guest call failed");
    error
}

/// Writes what a guest printed to stdout or stderr into the host's log,
/// within its log budget.
fn forward_output(state: &mut HostState, printed: &str) {
    for line in printed.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(line) = state.log.admit(&mut state.logged, line, &state.hits) {
            tracing::info!(guest = &*state.guest, output = &*line, "guest output");
        }
    }
}

/// The bytes one action of an answer carries.
fn action_bytes(action: &wit::Action) -> usize {
    match action {
        wit::Action::Create(json) | wit::Action::Update(json) | wit::Action::UpdateStatus(json) => {
            json.len()
        }
        wit::Action::Patch(patch) => ref_bytes(&patch.target) + patch.body.len(),
        wit::Action::Delete(target) => ref_bytes(target),
        wit::Action::Scale(scale) => ref_bytes(&scale.target) + 4,
        wit::Action::RecordEvent(event) => {
            ref_bytes(&event.regarding) + event.reason.len() + event.message.len()
        }
    }
}

/// The bytes one object reference carries.
fn ref_bytes(target: &wit::ObjectRef) -> usize {
    target.api_version.len()
        + target.kind.len()
        + target.namespace.as_ref().map_or(0, String::len)
        + target.name.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, kind: &str, paths: &[&str]) -> Index {
        Index {
            name: name.into(),
            api_version: "apps/v1".into(),
            kind: kind.into(),
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        }
    }

    /// A guest's declared kinds: it watches Deployments and reads
    /// `api_version` `kind`.
    fn declared(api_version: &str, kind: &str) -> ([Watch; 1], [Read; 1]) {
        let watch = Watch {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            relation: Relation::Primary,
            namespace: None,
            label_selector: None,
        };
        let read = Read {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: None,
        };
        ([watch], [read])
    }

    #[test]
    fn indexes_are_named_once_of_declared_kinds_and_parse() {
        let (watches, reads) = declared("apps/v1", "StatefulSet");
        let check = |indexes: &[Index]| check_indexes(indexes, &watches, &reads);
        let good = index(
            "by-config",
            "Deployment",
            &[".spec.template.spec.volumes[*].configMap.name"],
        );
        let read = index("sets", "StatefulSet", &[".spec.serviceName"]);
        assert_eq!(check(&[good.clone(), read]), Ok(()));

        let error = check(&[good.clone(), good.clone()]).unwrap_err();
        assert!(
            error.contains("two indexes are named `by-config`"),
            "{error}"
        );
        let error = check(&[index("pods", "Pod", &[".spec.nodeName"])]).unwrap_err();
        assert!(
            error.contains("index `pods`")
                && error.contains("neither watches nor reads")
                && error.contains("add it to `reads`"),
            "{error}"
        );
        let error = check(&[index("broken", "Deployment", &[".spec[?"])]).unwrap_err();
        assert!(
            error.contains("index `broken`")
                && error.contains("`.spec[?`")
                && error.contains("write it as kubectl does"),
            "{error}"
        );
        let error = check(&[index("", "Deployment", &[".spec"])]).unwrap_err();
        assert!(error.contains("has no name"), "{error}");
        let error = check(&[index("none", "Deployment", &[])]).unwrap_err();
        assert!(error.contains("at least one path"), "{error}");
    }

    #[test]
    fn projections_are_of_declared_kinds_once_and_keep_whole_fields() {
        let (watches, reads) = declared("v1", "ConfigMap");
        let projection = |api_version: &str, kind: &str, paths: &[&str]| ProjectionDecl {
            api_version: api_version.into(),
            kind: kind.into(),
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        };
        let check =
            |projections: &[ProjectionDecl]| check_projections(projections, &watches, &reads);
        let deployment = projection("apps/v1", "Deployment", &[".spec.replicas"]);
        let config_map = projection("v1", "ConfigMap", &[".data"]);
        assert_eq!(check(&[deployment.clone(), config_map]), Ok(()));

        let error = check(&[deployment.clone(), deployment.clone()]).unwrap_err();
        assert!(error.contains("has two projections"), "{error}");
        let error = check(&[projection("v1", "Secret", &[".data"])]).unwrap_err();
        assert!(
            error.contains("`v1` `Secret`") && error.contains("neither watches nor reads"),
            "{error}"
        );
        let error = check(&[projection(
            "apps/v1",
            "Deployment",
            &[".spec.containers[0]"],
        )])
        .unwrap_err();
        assert!(
            error.contains("`.spec.containers[0]`") && error.contains("field names and `[*]`"),
            "{error}"
        );
        let error = check(&[projection("apps/v1", "Deployment", &[])]).unwrap_err();
        assert!(error.contains("at least one path"), "{error}");
    }
}
