//! One loaded guest: its compiled component, its description and its
//! sandbox, and the three calls of the contract.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self as wit, Controller, ControllerPre};
use super::compile_cache::{CacheStatus, digest};
use super::engine::{WasmEngine, deadline_ticks};
use super::error::{GuestError, LoadError};
use super::host_imports::{EmptyCache, SharedCache};
use super::limits::{Limits, MemoryLimiter};
use super::wasi::{Clock, GuestOutput, empty_context};
use crate::actions::{self, MalformedOutput, ObjectRef, Outcome};

/// The exports the `controller` world requires.
const REQUIRED_EXPORTS: [&str; 3] = ["describe", "reconcile", "map"];

/// Import namespaces a guest may use: the contract's own interfaces and
/// WASI 0.2 (satisfied with an empty context).
const ALLOWED_IMPORT_PREFIXES: [&str; 2] = ["paddock:controller/", "wasi:"];

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

/// What a guest's `describe` answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The guest's own name for itself.
    pub name: String,
    /// Its watches; exactly one is primary.
    pub watches: Vec<Watch>,
}

impl Info {
    /// The primary watch.
    pub fn primary(&self) -> &Watch {
        self.watches
            .iter()
            .find(|watch| watch.relation == Relation::Primary)
            .unwrap_or(&self.watches[0])
    }

    fn from_guest(info: wit::Info) -> Result<Self, String> {
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
        for (index, watch) in watches.iter().enumerate() {
            if watch.api_version.is_empty() || watch.kind.is_empty() {
                return Err(format!(
                    "watch #{index}: `api-version` and `kind` must be set"
                ));
            }
        }
        let primaries = watches
            .iter()
            .filter(|watch| watch.relation == Relation::Primary)
            .count();
        if primaries != 1 {
            return Err(format!(
                "exactly one watch must be `primary`, found {primaries}"
            ));
        }
        Ok(Self {
            name: info.name,
            watches,
        })
    }
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

/// The state of one store: one call's sandbox.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    pub(crate) cache: SharedCache,
    pub(crate) guest: Arc<str>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A loaded guest, ready to be called. Each call runs in a fresh instance
/// (a new store from the pre-instantiated component), so no state survives
/// from one call to the next, and a trapped call leaves nothing broken.
/// Cheap to clone.
#[derive(Clone)]
pub struct Guest {
    inner: Arc<GuestInner>,
}

struct GuestInner {
    name: Arc<str>,
    path: PathBuf,
    digest: String,
    info: Info,
    limits: Limits,
    clock: Clock,
    cache_status: CacheStatus,
    engine: WasmEngine,
    pre: ControllerPre<HostState>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .field("digest", &self.inner.digest)
            .field("limits", &self.inner.limits)
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
        let (component, cache_status) = self
            .inner
            .cache
            .load(&self.inner.engine, bytes, &digest)
            .map_err(|error| LoadError::Compile {
            path: path.clone(),
            source: match error {
                super::compile_cache::CacheError::Compile(source) => source,
            },
        })?;
        tracing::debug!(path = %path.display(), %digest, cache = ?cache_status,
            elapsed = ?started.elapsed(), "loaded component");
        self.check_shape(&path, &component)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|source| LoadError::Contract {
                path: path.clone(),
                source,
            })?;
        let pre = ControllerPre::new(instance_pre).map_err(|source| LoadError::Contract {
            path: path.clone(),
            source,
        })?;
        let describe_name: Arc<str> = options.name.as_deref().unwrap_or("<loading>").into();
        let raw_info = call(
            &self.inner.engine,
            &pre,
            CallContext {
                guest: &describe_name,
                limits: options.limits,
                clock: options.clock,
                cache: Arc::new(EmptyCache),
            },
            |controller, store| controller.call_describe(store),
        )
        .map_err(|source| LoadError::Describe {
            path: path.clone(),
            source: Box::new(source),
        })?;
        let info = Info::from_guest(raw_info).map_err(|problem| LoadError::InvalidInfo {
            path: path.clone(),
            problem,
        })?;
        let name: Arc<str> = options.name.unwrap_or_else(|| info.name.clone()).into();
        Ok(Guest {
            inner: Arc::new(GuestInner {
                name,
                path,
                digest,
                info,
                limits: options.limits,
                clock: options.clock,
                cache_status,
                engine: self.clone(),
                pre,
            }),
        })
    }

    /// Checks exports and imports by name, so that the error names exactly
    /// what is missing or unsupported.
    fn check_shape(&self, path: &Path, component: &Component) -> Result<(), LoadError> {
        let engine = &self.inner.engine;
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
        &self.inner.name
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
        self.inner.limits
    }

    /// Whether loading it compiled the component or took it from the cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.inner.cache_status
    }

    /// Calls `describe` again, in a fresh sandbox.
    pub fn describe(&self) -> Result<Info, GuestError> {
        let info = self.call(Arc::new(EmptyCache), |controller, store| {
            controller.call_describe(store)
        })?;
        Info::from_guest(info).map_err(|problem| GuestError::Malformed {
            guest: self.inner.name.to_string(),
            source: MalformedOutput {
                index: 0,
                verb: "describe",
                problem,
            },
        })
    }

    /// Reconciles one object (its JSON) in a fresh sandbox, reading `cache`.
    pub fn reconcile(
        &self,
        object: &str,
        change: Change,
        attempt: u32,
        cache: SharedCache,
    ) -> Result<Outcome, GuestError> {
        let request = wit::Request {
            object: object.to_owned(),
            change: match change {
                Change::Applied => wit::Change::Applied,
                Change::Deleted => wit::Change::Deleted,
            },
            attempt,
        };
        let answer = self.call(cache, |controller, store| {
            controller.call_reconcile(store, &request)
        })?;
        let guest = || self.inner.name.to_string();
        match answer {
            Ok(outcome) => {
                actions::outcome_from_guest(outcome).map_err(|source| GuestError::Malformed {
                    guest: guest(),
                    source,
                })
            }
            Err(wit::GuestFailure::Transient(message)) => Err(GuestError::Transient {
                guest: guest(),
                message,
            }),
            Err(wit::GuestFailure::Permanent(message)) => Err(GuestError::Permanent {
                guest: guest(),
                message,
            }),
        }
    }

    /// Maps a changed object of a `mapped` watch to the primary objects to
    /// reconcile.
    pub fn map(&self, changed: &str, cache: SharedCache) -> Result<Vec<ObjectRef>, GuestError> {
        let changed = changed.to_owned();
        let refs = self.call(cache, |controller, store| {
            controller.call_map(store, &changed)
        })?;
        actions::refs_from_guest(refs).map_err(|source| GuestError::Malformed {
            guest: self.inner.name.to_string(),
            source,
        })
    }

    fn call<R>(
        &self,
        cache: SharedCache,
        body: impl FnOnce(&Controller, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestError> {
        let inner = &*self.inner;
        call(
            &inner.engine.inner.engine,
            &inner.pre,
            CallContext {
                guest: &inner.name,
                limits: inner.limits,
                clock: inner.clock,
                cache,
            },
            body,
        )
    }
}

struct CallContext<'a> {
    guest: &'a Arc<str>,
    limits: Limits,
    clock: Clock,
    cache: SharedCache,
}

/// Runs one call in a fresh store and instance, under the guest's limits,
/// and turns a failure into a [`GuestError`] that says which limit was hit.
fn call<R>(
    engine: &wasmtime::Engine,
    pre: &ControllerPre<HostState>,
    context: CallContext<'_>,
    body: impl FnOnce(&Controller, &mut Store<HostState>) -> wasmtime::Result<R>,
) -> Result<R, GuestError> {
    let CallContext {
        guest,
        limits,
        clock,
        cache,
    } = context;
    let output = GuestOutput::default();
    let state = HostState {
        wasi: empty_context(&output, clock),
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(limits.memory_bytes),
        cache,
        guest: Arc::clone(guest),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(deadline_ticks(limits.deadline));

    let result = pre
        .instantiate(&mut store)
        .and_then(|controller| body(&controller, &mut store));
    let printed = output.text();
    forward_output(guest, &printed);
    result.map_err(|source| classify(guest, limits, store.data(), source, printed))
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
    } else if source.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
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

/// Writes what a guest printed to stdout or stderr into the host's log.
fn forward_output(guest: &str, printed: &str) {
    for line in printed.lines().filter(|line| !line.trim().is_empty()) {
        tracing::info!(guest, output = line, "guest output");
    }
}
