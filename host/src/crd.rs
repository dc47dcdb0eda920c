//! The `WasmController` and `ClusterWasmController` custom resources
//! (group `paddock.dev`, version `v1alpha1`): controllers declared in the
//! cluster rather than in a controllers file. `paddock crd` prints their
//! definitions; `deploy/crds.yaml` holds them.
//!
//! A `WasmController` belongs to a tenant: it acts as a ServiceAccount of
//! its namespace, whatever its spec says it only gets rights inside its own
//! namespace, and its status says what was cut.
//! A `ClusterWasmController` is for platform owners: it works in the
//! namespaces it lists, or in all of them.

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::LimitsSpec;
use crate::grants::Rule;
use crate::identity::ServiceAccount;
use crate::queue::QueueConfig;
use crate::wasm::Instances;

/// A tenant's controller: a guest component working in the resource's own
/// namespace.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "WasmController",
    namespaced,
    status = "WasmControllerStatus",
    shortname = "wasmctl",
    category = "paddock",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.moduleDigest"}"#,
    printcolumn = r#"{"name":"Shadow","type":"string","jsonPath":".status.shadow.agreement"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WasmControllerSpec {
    /// The ServiceAccount, in this namespace, the controller acts as: every
    /// API call made for it impersonates it, and its RBAC bounds the grant.
    /// Required, unless the host names a default
    /// (`--tenant-default-service-account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The controller's settings.
    #[serde(flatten)]
    pub settings: ControllerSettings,
}

/// A platform owner's controller: a guest component working cluster-wide or
/// in the namespaces it lists.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "ClusterWasmController",
    status = "WasmControllerStatus",
    shortname = "cwasmctl",
    category = "paddock",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.moduleDigest"}"#,
    printcolumn = r#"{"name":"Shadow","type":"string","jsonPath":".status.shadow.agreement"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterWasmControllerSpec {
    /// The ServiceAccount the controller acts as: every API call made for
    /// it impersonates it, and its RBAC bounds the grant. Without one it
    /// acts as the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccount>,
    /// The controller's settings.
    #[serde(flatten)]
    pub settings: ControllerSettings,
}

/// What both kinds declare: the guest, its grant, where it works, and how
/// it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSettings {
    /// The guest component. In a `ClusterWasmController` a ConfigMap
    /// reference must name its namespace; a `WasmController` reads only its
    /// own namespace.
    pub module: ModuleRef,
    /// What the guest may read and do (RBAC-style rules). A
    /// `WasmController` gets only the rights inside its own namespace.
    pub grant: Vec<Rule>,
    /// Namespaces to work in; empty for all (and for cluster-scoped kinds).
    /// A `WasmController` works only in its own namespace; any other listed
    /// here is cut (the status says so).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Sandbox and concurrency limits (for a `WasmController`, capped by the
    /// host's tenant limits).
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Work queue settings.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Re-queue every primary object this often, in seconds; 0 never does.
    #[serde(default)]
    pub resync_seconds: u64,
    /// `reused` (the default): an instance serves the guest's next call
    /// too; `fresh-per-call`: nothing survives from one call to the next.
    #[serde(default)]
    pub instances: Instances,
    /// A candidate version run in the live one's shadow: asked every
    /// question the live version is (same object, same cache answers, same
    /// clock) under the same limits, its answers compared with the live
    /// ones and never acted upon. `status.shadow` says how they agree;
    /// `paddock promote` makes it the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
}

/// The candidate of a shadow run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSpec {
    /// The candidate component, from any source `spec.module` takes.
    pub module: ModuleRef,
}

/// Where the guest component comes from: exactly one of `configMap`,
/// `inline` and `image`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRef {
    /// A key of a ConfigMap's `binaryData` (as `kubectl create configmap
    /// NAME --from-file=module.wasm=guest.wasm` makes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKey>,
    /// The component itself, base64-encoded (for small guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// An OCI image of the component in the wasm artifact layout
    /// (`registry/repository:tag` or `registry/repository@sha256:<digest>`),
    /// as `paddock push` writes it. Pulled when the controller loads; the
    /// resolved reference is in `status.resolvedImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Secrets of type `kubernetes.io/dockerconfigjson` holding the
    /// credentials for `image`'s registry, read as the controller's
    /// ServiceAccount (which needs `get` on them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<SecretRef>,
    /// With a tag in `image`: check it this often, in seconds, and load
    /// the manifest it names when it changes (a pushed tag rolls out as a
    /// reload); absent or 0: never. A digest never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seconds: Option<u64>,
}

/// A Secret, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// Its namespace: required for a `ClusterWasmController`; a
    /// `WasmController` reads only its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A key of a ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKey {
    /// The ConfigMap's name.
    pub name: String,
    /// The key in its `binaryData`.
    pub key: String,
    /// Its namespace: required for a `ClusterWasmController`; a
    /// `WasmController` reads only its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What the host reports on a controller resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmControllerStatus {
    /// `Ready` (a version serves) and `Degraded` (the declared version could
    /// not be used), with reason and message.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The sha256 digest of the module serving now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_digest: Option<String>,
    /// The image serving now, pinned to the manifest pulled
    /// (`registry/repository@sha256:<digest>`), when the module is an
    /// image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_image: Option<String>,
    /// The generation of the spec the host last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What tenancy cut from the spec: namespaces, cluster-scoped rights,
    /// limits above the host's caps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cut: Vec<String>,
    /// How the shadow candidate's answers compare with the live ones, when
    /// `spec.shadow` declares one (refreshed every few seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
}

/// A shadow run, in a controller resource's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowStatus {
    /// The sha256 digest of the candidate.
    pub module_digest: String,
    /// The share of compared calls whose answers agreed (`99.5%`), `-`
    /// before the first.
    pub agreement: String,
    /// Calls compared.
    pub compared: u64,
    /// Calls whose answers agreed.
    pub agreed: u64,
    /// Live calls the candidate was not asked (its queue was full).
    #[serde(default)]
    pub skipped: u64,
    /// Differences by kind: `actions`, `requeue`, `candidate-failed`,
    /// `live-failed`, `failures`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub differences: std::collections::BTreeMap<String, u64>,
    /// The latest differences, newest last (`paddock status --shadow`
    /// shows their diffs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_differences: Vec<ShadowDifference>,
}

/// One difference of a shadow run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShadowDifference {
    /// When the live call ran.
    pub at: String,
    /// The object: `Deployment shop/web`.
    pub object: String,
    /// Its resourceVersion.
    pub resource_version: String,
    /// The kind of difference.
    pub difference: String,
}

/// A condition, as `metav1.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Both definitions as one YAML stream, as in `deploy/crds.yaml`.
pub fn definitions_yaml() -> String {
    let header = "# Generated by `paddock crd`; do not edit.\n";
    let mut out = String::from(header);
    for crd in [WasmController::crd(), ClusterWasmController::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).unwrap_or_default());
    }
    out
}

/// The JSON patch that promotes a controller resource's shadow candidate
/// (`object`, as the API server returned it): `spec.module` takes
/// `spec.shadow.module` and `spec.shadow` goes, on condition that the
/// resource has not changed since it was read. `None` when it declares no
/// shadow.
pub fn promotion(object: &serde_json::Value) -> Option<json_patch::Patch> {
    let candidate = object.pointer("/spec/shadow/module")?.clone();
    let version = object.pointer("/metadata/resourceVersion")?.clone();
    serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/spec/module", "value": candidate},
        {"op": "remove", "path": "/spec/shadow"},
    ]))
    .ok()
}
