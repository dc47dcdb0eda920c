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
mod host_imports;
mod limits;
mod wasi;

pub use compile_cache::{CacheStatus, CompileCache};
pub use engine::{EPOCH_TICK, EngineError, EngineOptions, WasmEngine};
pub use error::{GuestError, LoadError};
pub use guest::{Change, Guest, Info, Instances, LoadOptions, Relation, Watch};
pub use host_imports::{CacheReader, EmptyCache, ListQuery, SharedCache};
pub use limits::{DEFAULT_DEADLINE, DEFAULT_MEMORY_BYTES, Limits};
pub use wasi::{Clock, OUTPUT_CAPACITY};
