//! The shared wasmtime engine: configuration, the linker, the epoch ticker
//! and the compile cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::Controller;
use super::compile_cache::CompileCache;
use super::guest::{HostState, SharedComponent};

/// How often the engine's epoch advances: the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Options of a [`WasmEngine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled components are cached; `None` disables the cache.
    /// Default: [`compile_cache::default_dir`](super::compile_cache::default_dir).
    pub cache_dir: Option<PathBuf>,
    /// The pool of slots that fresh-per-call guests' instances take their
    /// memory and tables from (see [`Pooling`]); `None` maps them per
    /// instance, as for reused instances. Default: [`Pooling::default`].
    pub pooling: Option<Pooling>,
}

/// The pool that fresh-per-call guests' instances take their memory and
/// tables from ([`EngineOptions::pooling`]): wasmtime's pooling allocator,
/// on an engine of its own beside the one reused instances run on (those
/// are created once and kept, and stay out of the pool so that it never
/// caps how many of them a host keeps).
///
/// Slots are reserved when the engine starts and keep the component's
/// copy-on-write memory image mapped between instances. When an instance
/// ends, the pages it wrote are copied back from the image in place (found
/// with Linux's `PAGEMAP_SCAN`, kernel 6.7 and later; up to
/// `keep_resident` bytes of them) and stay mapped, so the next instance of
/// the same component takes no page fault on them; the rest is given back
/// to the kernel. A guest whose `memoryBytes` is above `max_memory_bytes`
/// runs fresh instances outside the pool. Instantiating beyond the pool's
/// `instances` at once fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// Fresh instances alive at once, across every guest of the engine:
    /// one per call in progress, and one per guest being loaded.
    pub instances: u32,
    /// The largest linear memory a pooled instance may grow to: guests
    /// whose `memoryBytes` is larger take their instances outside the pool.
    pub max_memory_bytes: usize,
    /// Bytes of each memory (and of each table) an ended instance may keep
    /// resident, reset in place rather than given back: the pages it wrote
    /// where `PAGEMAP_SCAN` finds them, else the lowest addresses.
    pub keep_resident: usize,
}

impl Default for Pooling {
    /// 256 instances of up to 512 MiB; 16 MiB kept resident per memory
    /// where the kernel can say which pages were written, else 64 KiB.
    fn default() -> Self {
        let keep_resident = if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            16 << 20
        } else {
            64 << 10
        };
        Self {
            instances: 256,
            max_memory_bytes: 512 << 20,
            keep_resident,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_dir: Some(super::compile_cache::default_dir()),
            pooling: Some(Pooling::default()),
        }
    }
}

impl EngineOptions {
    /// Sets the compile cache directory (`None`: no cache).
    #[must_use]
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Takes fresh-per-call instances' memory from a pool (`None`: maps it
    /// per instance).
    #[must_use]
    pub fn pooling(mut self, pooling: Option<Pooling>) -> Self {
        self.pooling = pooling;
        self
    }
}

/// An error creating the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration or the linker setup.
    #[error("setting up the WebAssembly engine failed")]
    Setup(#[source] wasmtime::Error),
    /// The epoch ticker thread could not be started.
    #[error("starting the epoch ticker thread failed")]
    Ticker(#[source] std::io::Error),
}

/// The engine every guest of one host shares: a wasmtime [`Engine`] for
/// reused instances and, with [`EngineOptions::pooling`], one whose
/// fresh-per-call instances come from a pool; each with a [`Linker`]
/// holding the host imports and an empty WASI, and the compile cache; and
/// a ticker thread that advances their epochs every [`EPOCH_TICK`] so that
/// per-call deadlines fire. Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    /// Where reused instances run, and fresh ones without a pool.
    pub(crate) mapped: Runtime,
    /// Where fresh-per-call instances run, with the pool's size.
    pub(crate) pooled: Option<(Runtime, Pooling)>,
    /// How the components loaded so far got their compiled code.
    pub(crate) loads: LoadCounts,
}

/// One wasmtime engine, its linker, its compile cache and the components
/// loaded on it.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: CompileCache,
    /// Components live guests loaded, by digest.
    pub(crate) loaded: Mutex<HashMap<String, Weak<SharedComponent>>>,
}

impl EngineInner {
    /// Where a guest's instances run: fresh-per-call ones in the pool when
    /// there is one and the guest's memory cap fits its slots.
    pub(crate) fn runtime(&self, fresh_per_call: bool, memory_bytes: u64) -> &Runtime {
        match &self.pooled {
            Some((runtime, pooling))
                if fresh_per_call
                    && usize::try_from(memory_bytes)
                        .is_ok_and(|bytes| bytes <= pooling.max_memory_bytes) =>
            {
                runtime
            }
            _ => &self.mapped,
        }
    }
}

/// How the components an engine loaded got their compiled code.
#[derive(Debug, Default)]
pub struct LoadCounts {
    /// From a live guest of this process running the same component.
    pub shared: std::sync::atomic::AtomicU64,
    /// From the compile cache on disk (written by this process before, by
    /// another host, or by an earlier run).
    pub cached: std::sync::atomic::AtomicU64,
    /// Compiled here.
    pub compiled: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("cache_dir", &self.inner.mapped.cache.dir())
            .field(
                "pooling",
                &self.inner.pooled.as_ref().map(|(_, pooling)| pooling),
            )
            .finish_non_exhaustive()
    }
}

/// The environment variable that makes an engine write a perf map.
pub const PERF_MAP_VARIABLE: &str = "PADDOCK_PERF_MAP";

impl WasmEngine {
    /// Creates the engine and starts its epoch ticker.
    ///
    /// With `PADDOCK_PERF_MAP=1` in the environment, the engine writes
    /// `/tmp/perf-<pid>.map` as it loads guests, so that `perf report`
    /// names the guests' functions (their own names, where the component
    /// keeps them) instead of showing anonymous addresses.
    pub fn new(options: EngineOptions) -> Result<Self, EngineError> {
        let mapped = Runtime::new(None, options.cache_dir.clone())?;
        let pooled = match options.pooling {
            Some(pooling) => match Runtime::new(Some(pooling), options.cache_dir) {
                Ok(runtime) => Some((runtime, pooling)),
                // The pool reserves its address space up front; where the
                // process may not (a low `ulimit -v`), fresh instances are
                // mapped one by one, as without a pool.
                Err(error) => {
                    tracing::warn!(
                        error = crate::cluster::error_chain(&error),
                        instances = pooling.instances,
                        "could not reserve the pool of fresh-per-call instances; \
                         they are mapped one by one instead"
                    );
                    None
                }
            },
            None => None,
        };
        let mut engines = vec![mapped.engine.clone()];
        engines.extend(pooled.iter().map(|(runtime, _)| runtime.engine.clone()));
        start_ticker(&engines).map_err(EngineError::Ticker)?;
        Ok(Self {
            inner: Arc::new(EngineInner {
                mapped,
                pooled,
                loads: LoadCounts::default(),
            }),
        })
    }

    /// The compile cache. The pooled engine of fresh-per-call instances
    /// compiles alike, so it has the same fingerprint and shares the
    /// cache's artifacts.
    pub fn compile_cache(&self) -> &CompileCache {
        &self.inner.mapped.cache
    }

    /// How the components loaded so far got their compiled code.
    pub fn loads(&self) -> &LoadCounts {
        &self.inner.loads
    }

    /// Bytes the pool's unused slots keep resident (memories and tables),
    /// or `None` without a pool.
    pub fn pooled_bytes_resident(&self) -> Option<usize> {
        let (runtime, _) = self.inner.pooled.as_ref()?;
        let metrics = runtime.engine.pooling_allocator_metrics()?;
        Some(metrics.unused_memory_bytes_resident() + metrics.unused_table_bytes_resident())
    }
}

impl Runtime {
    fn new(pooling: Option<Pooling>, cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        if std::env::var_os(PERF_MAP_VARIABLE).is_some_and(|value| value == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(pooling) = pooling {
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool_config(
                pooling,
            )));
        }
        let engine = Engine::new(&config).map_err(EngineError::Setup)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(EngineError::Setup)?;
        super::wasi::bound_blocking_waits(&mut linker).map_err(EngineError::Setup)?;
        Controller::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(EngineError::Setup)?;
        let cache = CompileCache::new(&engine, cache_dir);
        Ok(Self {
            engine,
            linker,
            cache,
            loaded: Mutex::default(),
        })
    }
}

/// wasmtime's pool for `pooling`. A component carries several core
/// instances (an interpreter's, its libc's, the WASI adapter's), one
/// memory in the languages Paddock builds and a few tables: the pool holds
/// eight core instances and tables and two memories per component
/// instance, and tables of 64 Ki elements (an interpreter's table holds
/// tens of thousands of functions). Each memory slot reserves about 4 GiB
/// of address space (wasmtime's reservation, which lets compiled code
/// skip bounds checks), so 256 instances reserve about 2 TiB.
fn pool_config(pooling: Pooling) -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(pooling.instances)
        .total_core_instances(pooling.instances.saturating_mul(8))
        .total_memories(pooling.instances.saturating_mul(2))
        .total_tables(pooling.instances.saturating_mul(8))
        .total_stacks(pooling.instances)
        .table_elements(64 << 10)
        .max_memory_size(pooling.max_memory_bytes)
        .linear_memory_keep_resident(pooling.keep_resident)
        .table_keep_resident(pooling.keep_resident)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Advances the engines' epochs every tick for as long as they live; the
/// thread holds only weak references and ends with the engines.
fn start_ticker(engines: &[Engine]) -> std::io::Result<()> {
    let weak: Vec<_> = engines.iter().map(Engine::weak).collect();
    std::thread::Builder::new()
        .name("paddock-epoch".into())
        .spawn(move || {
            loop {
                let mut alive = false;
                for engine in weak.iter().filter_map(|engine| engine.upgrade()) {
                    engine.increment_epoch();
                    alive = true;
                }
                if !alive {
                    break;
                }
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

/// The number of epoch ticks that make up `deadline`, rounded up, plus one
/// because the current tick may be about to end.
pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = deadline.as_nanos().div_ceil(tick) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(250)), 51);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }
}
