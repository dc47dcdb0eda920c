//! Optional persistence (`--data-dir`): the store is snapshotted to one JSON file after changes
//! and loaded back at start; the cluster's identity (CA, keys, admin token) is kept beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::core::{Core, GcTask};
use crate::json::meta;
use crate::shared::Shared;
use crate::tls::Identity;

/// The snapshot file inside the data directory.
const FILE: &str = "devcluster-state.json";

/// The identity file inside the data directory (readable by its owner only).
const IDENTITY_FILE: &str = "devcluster-identity.json";

/// How long after a change the snapshot is written (changes in between are batched).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Errors reading or writing the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The data directory or snapshot could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot is not valid JSON of the expected shape.
    #[error("cannot parse the snapshot {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The stored identity, if the data directory has one.
pub(crate) fn load_identity(dir: &Path) -> Result<Option<Identity>, PersistError> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Io { path, source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| PersistError::Parse { path, source })
}

/// Writes the identity (keys included) to a file only its owner may read.
pub(crate) fn save_identity(dir: &Path, identity: &Identity) -> Result<(), PersistError> {
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(IDENTITY_FILE);
    let text = serde_json::to_vec_pretty(identity).map_err(|source| PersistError::Parse {
        path: path.clone(),
        source,
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = options
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &text));
    write.map_err(|source| PersistError::Io { path, source })
}

fn file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Loads a snapshot into a fresh core, if the data directory has one; returns whether it did.
pub(crate) fn load(dir: &Path, core: &mut Core) -> Result<bool, PersistError> {
    let path = file(dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(PersistError::Io { path, source }),
    };
    let snapshot: Value = serde_json::from_slice(&text).map_err(|source| PersistError::Parse {
        path: path.clone(),
        source,
    })?;
    let rv = snapshot
        .get("resourceVersion")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let objects: Vec<(Arc<str>, Map<String, Value>)> = snapshot
        .get("objects")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    let storage = i.get("storage").and_then(Value::as_str)?;
                    let obj = i.get("object").and_then(Value::as_object)?;
                    Some((Arc::from(storage), obj.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    core.store.restore(rv, objects);
    let crds: Vec<Map<String, Value>> = core
        .store
        .iter(crate::crd::crd_storage(), None)
        .map(|(_, s)| s.decode())
        .collect();
    for crd in crds {
        let name = crate::json::meta_str(&crd, "name")
            .unwrap_or_default()
            .to_owned();
        if let Ok(def) = crate::registry::from_crd(&crd) {
            core.registry.add_custom(def);
        }
        if meta(&crd).is_some_and(|m| m.contains_key("deletionTimestamp")) {
            core.schedule(GcTask::Crd { name });
        }
    }
    crate::apiservices::sync(core);
    let terminating: Vec<String> = core
        .store
        .iter("/namespaces", None)
        .map(|(k, s)| (k.1.clone(), s.decode()))
        .filter(|(_, n)| meta(n).is_some_and(|m| m.contains_key("deletionTimestamp")))
        .map(|(name, _)| name)
        .collect();
    for name in terminating {
        core.schedule(GcTask::Namespace { name });
    }
    tracing::info!(path = %path.display(), resource_version = rv, "loaded the stored cluster state");
    Ok(true)
}

/// Writes the snapshot (to a temporary file, then renamed over the old one).
pub(crate) fn save(dir: &Path, shared: &Shared) -> Result<(), PersistError> {
    let (rv, objects) = {
        let core = shared.core.lock();
        (core.store.rv(), core.store.snapshot())
    };
    let mut out = Vec::with_capacity(objects.iter().map(|(_, b)| b.len() + 64).sum::<usize>() + 64);
    out.extend_from_slice(format!("{{\"resourceVersion\":{rv},\"objects\":[").as_bytes());
    for (i, (storage, body)) in objects.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"storage\":");
        out.extend_from_slice(Value::from(&**storage).to_string().as_bytes());
        out.extend_from_slice(b",\"object\":");
        out.extend_from_slice(body);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, &out).map_err(|source| PersistError::Io {
        path: tmp.clone(),
        source,
    })?;
    let path = file(dir);
    std::fs::rename(&tmp, &path).map_err(|source| PersistError::Io { path, source })
}

/// Saves the snapshot shortly after every change while the cluster runs.
pub(crate) async fn run(dir: PathBuf, shared: Arc<Shared>) {
    let mut changes = shared.core.lock().store.subscribe();
    while changes.changed().await.is_ok() {
        tokio::time::sleep(DEBOUNCE).await;
        changes.borrow_and_update();
        let (dir, shared) = (dir.clone(), shared.clone());
        let saved = tokio::task::spawn_blocking(move || save(&dir, &shared)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "saving the cluster state failed"),
            Err(e) => tracing::warn!(error = %e, "saving the cluster state panicked"),
        }
    }
}
