//! The status writer: each resource's status follows its controller
//! (`Ready`, `Degraded`, the serving module's digest, the observed
//! generation and what tenancy cut).

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tokio::sync::mpsc;

use crate::cluster::Resource;
use crate::crd::{Condition, ShadowDifference, ShadowStatus, WasmControllerStatus};
use crate::reload::{EntryStatus, Phase, StatusSink};

/// How often a shadow run's counts are written into its resource's status.
pub const SHADOW_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// How many of a shadow run's latest differences its resource's status
/// lists.
const LAST_DIFFERENCES: usize = 5;

/// Writes a controller's status into its resource, latest first, skipping
/// writes that would change nothing.
#[derive(Debug)]
pub(super) struct ResourceSink {
    pub(super) uid: String,
    updates: mpsc::UnboundedSender<EntryStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ResourceSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusSink for ResourceSink {
    fn publish(&self, status: &EntryStatus) {
        let _ = self.updates.send(status.clone());
    }
}

impl ResourceSink {
    pub(super) fn start(
        client: Client,
        resource: &Resource,
        namespace: Option<String>,
        name: String,
        uid: String,
    ) -> Self {
        let api: Api<DynamicObject> = match &namespace {
            Some(namespace) => Api::namespaced_with(client, namespace, &resource.api_resource()),
            None => Api::all_with(client, &resource.api_resource()),
        };
        let (updates, mut receiver) = mpsc::unbounded_channel::<EntryStatus>();
        let task = tokio::spawn(async move {
            let mut shadow_refresh = tokio::time::interval(SHADOW_REFRESH);
            shadow_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<EntryStatus> = None;
            loop {
                let mut latest = tokio::select! {
                    update = receiver.recv() => match update {
                        Some(update) => update,
                        None => break,
                    },
                    // A shadow's counts change with every call; they are
                    // written now and then, not on each.
                    _ = shadow_refresh.tick() => match &last {
                        Some(status) if status.handle.as_ref().is_some_and(|h| h.shadow().is_some()) => status.clone(),
                        _ => continue,
                    },
                };
                while let Ok(newer) = receiver.try_recv() {
                    latest = newer;
                }
                last = Some(latest.clone());
                let current = match api.get_status(&name).await {
                    Ok(object) => object
                        .data
                        .get("status")
                        .cloned()
                        .and_then(|status| {
                            serde_json::from_value::<WasmControllerStatus>(status).ok()
                        })
                        .unwrap_or_default(),
                    // Deleted meanwhile: nothing to write.
                    Err(_) => continue,
                };
                // One host writes a shadow's counts: the one that works on
                // the resource's own key (the leader, or in a sharded ring
                // its owner); the others leave them as they are.
                let writes_shadow = latest.handle.as_ref().is_some_and(|handle| {
                    handle.works_on(namespace.as_deref().unwrap_or_default(), &name)
                });
                let status = resource_status(&latest, &current, writes_shadow);
                if status == current {
                    continue;
                }
                // A merge patch keeps what it does not name: a field the
                // new status no longer has (a shadow removed, an image
                // replaced by a ConfigMap) is named, as null.
                let mut written = serde_json::to_value(&status).unwrap_or_default();
                if let (Some(written), Ok(serde_json::Value::Object(before))) =
                    (written.as_object_mut(), serde_json::to_value(&current))
                {
                    for field in before.keys() {
                        written
                            .entry(field.clone())
                            .or_insert(serde_json::Value::Null);
                    }
                }
                let patch = serde_json::json!({"status": written});
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(resource = %name, %error, "cannot write the controller's status");
                    }
                }
            }
        });
        Self { uid, updates, task }
    }
}

/// The resource status for a controller status, keeping the transition
/// times of conditions that did not change.
pub(super) fn resource_status(
    status: &EntryStatus,
    current: &WasmControllerStatus,
    writes_shadow: bool,
) -> WasmControllerStatus {
    let error = status
        .last_reload_error
        .as_ref()
        .map(|error| error.message.clone())
        .unwrap_or_default();
    let (ready, ready_reason, ready_message, degraded, degraded_reason, degraded_message) =
        match status.phase {
            Phase::Running => (
                "True",
                "Serving",
                "the declared version serves".to_owned(),
                "False",
                "AsDeclared",
                String::new(),
            ),
            Phase::Reloading => (
                "True",
                "Serving",
                "a new version is being loaded; the previous one serves".to_owned(),
                "False",
                "Reloading",
                String::new(),
            ),
            Phase::Degraded => (
                "True",
                "ServingPreviousVersion",
                "the previous version keeps serving".to_owned(),
                "True",
                if status.pull_failed {
                    "PullFailed"
                } else {
                    "NewVersionRefused"
                },
                error.clone(),
            ),
            Phase::Loading => (
                "False",
                "Loading",
                "the module is being loaded".to_owned(),
                "False",
                "Loading",
                String::new(),
            ),
            Phase::WaitingForKind => (
                "False",
                "WaitingForKind",
                error.clone(),
                "False",
                "WaitingForKind",
                String::new(),
            ),
            Phase::WaitingForCluster => (
                "False",
                "WaitingForCluster",
                error.clone(),
                "False",
                "WaitingForCluster",
                String::new(),
            ),
            Phase::LacksPermission => (
                "False",
                "ServiceAccountLacksPermission",
                error.clone(),
                "True",
                "ServiceAccountLacksPermission",
                error.clone(),
            ),
            Phase::Failed => {
                let reason = if status.pull_failed {
                    "PullFailed"
                } else {
                    "Failed"
                };
                (
                    "False",
                    reason,
                    error.clone(),
                    "True",
                    reason,
                    error.clone(),
                )
            }
        };
    let now = jiff::Timestamp::now().to_string();
    let condition = |type_: &str, state: &str, reason: &str, message: String| {
        let previous = current.conditions.iter().find(|found| found.type_ == type_);
        Condition {
            type_: type_.to_owned(),
            status: state.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: previous
                .filter(|previous| previous.status == state)
                .map_or_else(
                    || now.clone(),
                    |previous| previous.last_transition_time.clone(),
                ),
            observed_generation: status.observed_generation,
        }
    };
    WasmControllerStatus {
        conditions: vec![
            condition("Ready", ready, ready_reason, ready_message),
            condition("Degraded", degraded, degraded_reason, degraded_message),
        ],
        module_digest: status.digest.clone(),
        resolved_image: status.resolved_image.clone(),
        observed_generation: status.observed_generation,
        cut: status.cut.clone(),
        shadow: match status
            .handle
            .as_ref()
            .and_then(crate::controller::ControllerHandle::shadow)
        {
            None => None,
            Some(_) if !writes_shadow => current.shadow.clone(),
            Some(report) => Some(ShadowStatus {
                module_digest: report.digest.clone(),
                agreement: report.agreement(),
                compared: report.compared,
                agreed: report.agreed,
                skipped: report.skipped,
                differences: report.differences.clone(),
                last_differences: report
                    .samples
                    .iter()
                    .rev()
                    .take(LAST_DIFFERENCES)
                    .rev()
                    .map(|sample| ShadowDifference {
                        at: sample.at.clone(),
                        object: sample.object.clone(),
                        resource_version: sample.resource_version.clone(),
                        difference: sample.difference.clone(),
                    })
                    .collect(),
            }),
        },
    }
}
