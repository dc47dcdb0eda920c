//! The status of every declared controller, for `paddock status`, the
//! metrics and the `WasmController` status.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Declared;
use crate::controller::{ControllerHandle, LastError};

/// Where a declared controller stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Its first version is being loaded and started.
    Loading,
    /// A watched kind is not served yet; starting again with backoff.
    WaitingForKind,
    /// The API server could not be reached, or refused a request the start
    /// needs (401, 403, TLS, a list that did not complete in time): the
    /// reason is the last error; starting again with backoff.
    WaitingForCluster,
    /// Its ServiceAccount may not do what its watches need (RBAC, asked
    /// with a SubjectAccessReview): the reason names the permission;
    /// starting again with backoff, so a Role granted later lets it start.
    LacksPermission,
    /// It serves its declared version.
    Running,
    /// A new version is being loaded; the old one serves meanwhile.
    Reloading,
    /// The declared version failed; the previous version keeps serving.
    Degraded,
    /// It never started: its only declared version failed.
    Failed,
}

/// The status of one declared controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryStatus {
    /// Its name.
    pub name: String,
    /// Where it is declared.
    pub origin: String,
    /// Where it stands.
    pub phase: Phase,
    /// The digest of the module serving now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The image serving now, pinned to the manifest pulled, when the
    /// module is an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_image: Option<String>,
    /// Whether the latest failure was pulling the module's image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pull_failed: bool,
    /// Versions swapped in after the first.
    pub reloads: u64,
    /// Versions that failed to load or start.
    pub reload_failures: u64,
    /// The latest failure to load, validate or start a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<LastError>,
    /// How long the latest version took from load to serving.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis")]
    pub last_swap: Option<Duration>,
    /// The declaring resource's generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What tenancy cut from the declared grant or namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<String>,
    /// Who it acts as: `serviceaccount <namespace>/<name>`, or `host`.
    #[serde(default = "host_identity")]
    pub identity: String,
    /// The running controller, once started.
    #[serde(skip)]
    pub handle: Option<ControllerHandle>,
}

impl EntryStatus {
    /// A fresh status, loading.
    pub fn new(name: &str, origin: &str) -> Self {
        Self {
            name: name.to_owned(),
            origin: origin.to_owned(),
            phase: Phase::Loading,
            digest: None,
            resolved_image: None,
            pull_failed: false,
            reloads: 0,
            reload_failures: 0,
            last_reload_error: None,
            last_swap: None,
            observed_generation: None,
            cut: Vec::new(),
            identity: host_identity(),
            handle: None,
        }
    }
}

fn host_identity() -> String {
    "host".to_owned()
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_f64(duration.as_secs_f64() * 1000.0),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let millis = Option::<f64>::deserialize(deserializer)?;
        Ok(millis
            .filter(|millis| millis.is_finite() && *millis >= 0.0)
            .map(|millis| Duration::from_secs_f64(millis / 1000.0)))
    }
}

/// The statuses of every declared controller. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    entries: Arc<RwLock<BTreeMap<String, EntryStatus>>>,
    sources: Arc<RwLock<BTreeMap<String, SourceStatus>>>,
}

/// Failures of a source (a controllers file that cannot be read, say): the
/// controllers it declared keep running as they were.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// Times it was read and its declarations handed to the supervisor
    /// (each settled change of the file, even one that changed nothing).
    #[serde(default)]
    pub passes: u64,
    /// Controllers its passes started, reloaded or stopped; a pass over an
    /// unchanged file adds nothing.
    #[serde(default)]
    pub changes: u64,
    /// Failures since the start.
    pub errors: u64,
    /// The failure now, if the source is broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<LastError>,
}

impl StatusBoard {
    /// Changes one controller's status (creating it), then publishes it to
    /// the declaration's sink.
    pub(crate) fn update(
        &self,
        name: &str,
        declared: &Declared,
        change: impl FnOnce(&mut EntryStatus),
    ) {
        let status = {
            let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
            let status = entries
                .entry(name.to_owned())
                .or_insert_with(|| EntryStatus::new(name, &declared.origin));
            status.origin.clone_from(&declared.origin);
            status.identity = declared
                .service_account
                .as_ref()
                .map_or_else(host_identity, |account| format!("serviceaccount {account}"));
            change(status);
            status.clone()
        };
        if let Some(sink) = &declared.sink {
            sink.publish(&status);
        }
    }

    pub(crate) fn record_source_error(&self, source: &str, message: String) {
        let mut sources = self.sources.write().unwrap_or_else(PoisonError::into_inner);
        let status = sources.entry(source.to_owned()).or_default();
        status.errors += 1;
        status.error = Some(LastError {
            at: jiff::Timestamp::now(),
            message,
        });
    }

    /// Records a pass of a source that could be used, and the controllers
    /// it changed; clears its failure.
    pub(crate) fn record_source_pass(&self, source: &str, changes: usize) {
        let mut sources = self.sources.write().unwrap_or_else(PoisonError::into_inner);
        let status = sources.entry(source.to_owned()).or_default();
        status.passes += 1;
        status.changes += changes as u64;
        status.error = None;
    }

    /// Every source read since the start, with its passes and failures.
    pub fn sources(&self) -> BTreeMap<String, SourceStatus> {
        self.sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn remove(&self, name: &str) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// One controller's status.
    pub fn get(&self, name: &str) -> Option<EntryStatus> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every controller's status, by name.
    pub fn all(&self) -> Vec<EntryStatus> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
