//! On-disk cache of compiled components, keyed by content digest.
//!
//! Compiling a component with Cranelift takes from milliseconds (a small
//! Rust guest) to seconds (an interpreter-carrying Python or JavaScript
//! guest). The serialized artifact is stored as
//! `<cache-dir>/<sha256 of the component>-<engine fingerprint>.cwasm`, so a
//! second load of the same bytes by a compatible engine skips compilation.
//! Artifacts are written to a temporary file and renamed into place, so a
//! crash never leaves a half-written entry behind. Loads of the same bytes
//! take turns on a lock file beside the entry, so that threads or processes
//! (test binaries, two hosts) loading one component at the same time compile
//! it once, not once each.

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The sha256 digest of a component's bytes, as lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The default cache directory: `$PADDOCK_CACHE_DIR`, else
/// `<user cache dir>/paddock/components`, else a `paddock` folder in the
/// system temporary directory.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PADDOCK_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("paddock")
        .join("components")
}

/// Whether a load compiled the component or found it in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Served from the cache: no compilation.
    Hit,
    /// Compiled, and stored for next time.
    Miss,
    /// Compiled; no cache is configured, or storing failed (logged).
    Uncached,
}

/// An error of the compile cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The component did not compile.
    #[error("compiling the component failed")]
    Compile(#[source] wasmtime::Error),
}

/// The compile cache of one engine.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    fingerprint: String,
}

impl CompileCache {
    /// A cache in `dir` (created on first store), or no cache for `None`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            fingerprint: format!("{:016x}", hasher.finish()),
        }
    }

    /// The cache directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.fingerprint)))
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`), from
    /// the cache when present, else compiled and stored. A load waits for
    /// another thread's or process's load of the same digest to finish
    /// first, and then finds its artifact in the cache.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Component, CacheStatus), CacheError> {
        // Held until this load has stored its artifact; without a lock file
        // (no cache, or an unwritable one) loads simply do not wait.
        let _turn = self.entry(digest).and_then(|entry| lock_beside(&entry));
        let entry = self.entry(digest);
        if let Some(path) = entry.as_deref().filter(|path| path.is_file()) {
            match deserialize(engine, path) {
                Ok(component) => return Ok((component, CacheStatus::Hit)),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    error = %error,
                    "ignoring an unreadable compile cache entry; recompiling"
                ),
            }
        }
        let started = std::time::Instant::now();
        let component = Component::new(engine, bytes).map_err(CacheError::Compile)?;
        tracing::debug!(digest, elapsed = ?started.elapsed(), "compiled component");
        let Some(path) = entry else {
            return Ok((component, CacheStatus::Uncached));
        };
        let stored = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|artifact| store(&path, &artifact));
        match stored {
            Ok(()) => Ok((component, CacheStatus::Miss)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not store a compiled component");
                Ok((component, CacheStatus::Uncached))
            }
        }
    }
}

/// Takes the exclusive lock on `<entry>.lock`, waiting for whoever holds it.
fn lock_beside(entry: &Path) -> Option<File> {
    let dir = entry.parent()?;
    std::fs::create_dir_all(dir).ok()?;
    let file = File::create(entry.with_extension("lock")).ok()?;
    file.lock().ok()?;
    Some(file)
}

fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(artifact)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// Loads a compiled artifact written by [`store`].
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires that the file be an artifact it produced
    // with a compatible configuration (it checks the version and settings
    // itself). The cache directory is written only by this host, through
    // `store`, under a name that includes the engine's fingerprint; it must
    // not be writable by untrusted users, as the docs of the `--cache-dir`
    // option say.
    unsafe { Component::deserialize_file(engine, path) }
}
