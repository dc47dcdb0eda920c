//! The WebAssembly side: the engine, loading and caching components, the
//! sandbox limits, and the calls into guests.
//!
//! ```no_run
//! use paddock::wasm::{EmptyCache, EngineOptions, LoadOptions, WasmEngine, Change};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = WasmEngine::new(EngineOptions::default())?;
//! let guest = engine.load("replica_floor.wasm".as_ref(), LoadOptions::default())?;
//! let object = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"}}"#;
//! let outcome = guest.reconcile(object, Change::Applied, 0, std::sync::Arc::new(EmptyCache))?;
//! println!("{} actions", outcome.actions.len());
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod compile_cache;
mod engine;
mod error;
mod guest;
mod guest_log;
mod host_imports;
mod limits;
pub mod slots;
mod wasi;

pub use compile_cache::{CacheStatus, CompileCache};
pub use engine::{EPOCH_TICK, EngineError, EngineOptions, LoadCounts, Pooling, WasmEngine};
pub use error::{GuestError, LoadError};
pub use guest::{
    Change, Guest, Index, Info, Instances, LoadOptions, ProjectionDecl, Read, Relation, Watch,
};
pub use host_imports::{CacheReader, EmptyCache, IndexQuery, ListQuery, SharedCache};
pub use limits::{
    DEFAULT_DEADLINE, DEFAULT_LOG_LINES_PER_SECOND, DEFAULT_MAX_ACTIONS, DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_MAX_LOG_BYTES_PER_CALL, DEFAULT_MAX_LOG_LINE_BYTES, DEFAULT_MEMORY_BYTES,
    DEFAULT_MIN_REQUEUE_AFTER, LimitHitCounts, LimitHits, Limits,
};
pub use wasi::{Clock, OUTPUT_CAPACITY};
