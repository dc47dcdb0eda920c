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
    /// Instances' memory from a pool of slots reserved up front instead of
    /// mapped per instance; `None` (the default) maps it per instance.
    pub pooling: Option<Pooling>,
}

/// The pool an engine's instances take their memory and tables from, when
/// it has one ([`EngineOptions::pooling`]): wasmtime's pooling allocator.
/// Slots are reserved when the engine starts, and an instance's memory is
/// reset in place when it ends, so a new instance maps nothing and, within
/// `keep_resident` bytes, takes no page fault. Instantiating beyond the
/// pool's `instances` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// Component instances alive at once, across every guest of the engine
    /// (idle reused instances count).
    pub instances: u32,
    /// The largest linear memory a guest may grow to: its `memoryBytes`
    /// limit caps it lower.
    pub max_memory_bytes: usize,
    /// Bytes of each memory (and of each table) kept resident when its
    /// instance ends, zeroed in place rather than given back.
    pub keep_resident: usize,
}

impl Default for Pooling {
    fn default() -> Self {
        Self {
            instances: 256,
            max_memory_bytes: 512 << 20,
            keep_resident: 64 << 10,
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_dir: Some(super::compile_cache::default_dir()),
            pooling: None,
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

    /// Takes instances' memory from a pool (`None`: maps it per instance).
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

/// The engine every guest of one host shares: one wasmtime [`Engine`], one
/// [`Linker`] with the host imports and an empty WASI, the compile cache,
/// and a ticker thread that advances the epoch every [`EPOCH_TICK`] so that
/// per-call deadlines fire. Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: CompileCache,
    /// Components live guests loaded, by digest.
    pub(crate) loaded: Mutex<HashMap<String, Weak<SharedComponent>>>,
    /// How the components loaded so far got their compiled code.
    pub(crate) loads: LoadCounts,
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
            .field("cache_dir", &self.inner.cache.dir())
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
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        if std::env::var_os(PERF_MAP_VARIABLE).is_some_and(|value| value == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(pooling) = options.pooling {
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

        start_ticker(&engine).map_err(EngineError::Ticker)?;
        let cache = CompileCache::new(&engine, options.cache_dir);
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                cache,
                loaded: Mutex::default(),
                loads: LoadCounts::default(),
            }),
        })
    }

    /// The compile cache.
    pub fn compile_cache(&self) -> &CompileCache {
        &self.inner.cache
    }

    /// How the components loaded so far got their compiled code.
    pub fn loads(&self) -> &LoadCounts {
        &self.inner.loads
    }
}

/// wasmtime's pool for `pooling`. A component carries several core
/// instances (an interpreter's, its libc's, the WASI adapter's) and each
/// may have a memory and a table: the pool holds eight of each per
/// component instance, and tables of 64 Ki elements (an interpreter's
/// table holds tens of thousands of functions).
fn pool_config(pooling: Pooling) -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(pooling.instances)
        .total_core_instances(pooling.instances.saturating_mul(8))
        .total_memories(pooling.instances.saturating_mul(8))
        .total_tables(pooling.instances.saturating_mul(8))
        .total_stacks(pooling.instances)
        .table_elements(64 << 10)
        .max_memory_size(pooling.max_memory_bytes)
        .linear_memory_keep_resident(pooling.keep_resident)
        .table_keep_resident(pooling.keep_resident);
    pool
}

/// Advances the epoch every tick for as long as the engine lives; the
/// thread holds only a weak reference and ends with the engine.
fn start_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("paddock-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
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
