//! The served resources: built-in types and those added by CustomResourceDefinitions.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::json::get_path;
use crate::status::Cause;

/// The verbs of a full read-write resource, as discovery lists them.
pub(crate) const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of the review resources: answered on create, never stored.
pub(crate) const CREATE_ONLY: &[&str] = &["create"];

/// When `metadata.generation` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// The type has no generation (ConfigMap, Namespace, Lease, ...).
    None,
    /// Generation starts at 1 and moves when `spec` changes.
    Spec,
    /// Custom resources: moves when anything but `metadata` (and `status`, with the
    /// status subresource) changes.
    AllButMetadata,
}

/// JSON paths of a scale subresource, written as in a CRD (`.spec.replicas`).
#[derive(Debug, Clone)]
pub(crate) struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served resource.
#[derive(Debug, Clone)]
pub(crate) struct ResourceDef {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: &'static [&'static str],
    pub status_subresource: bool,
    pub scale: Option<ScalePaths>,
    pub generation: Generation,
    /// Custom resources take no strategic merge patches.
    pub custom: bool,
    /// The key objects are stored under; two resources may share one (Events).
    pub storage: Arc<str>,
    /// A CRD's `additionalPrinterColumns`, when it declares any.
    pub printer_columns: Option<Vec<Value>>,
    /// A CRD's `openAPIV3Schema` per served version.
    pub schemas: Vec<(String, Value)>,
    /// A review (TokenReview, SubjectAccessReview, ...): created, answered, never stored.
    pub review: bool,
}

impl ResourceDef {
    /// `apiVersion` for a served version.
    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The preferred version.
    pub(crate) fn preferred(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }
}

fn scale(spec: &str, status: &str, selector: &str) -> Option<ScalePaths> {
    Some(ScalePaths {
        spec_replicas: spec.to_owned(),
        status_replicas: status.to_owned(),
        label_selector: Some(selector.to_owned()),
    })
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: Generation,
    all: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.to_owned(),
        versions: vec!["v1".to_owned()],
        plural: plural.to_owned(),
        singular: kind.to_lowercase(),
        kind: kind.to_owned(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        categories: if all {
            vec!["all".to_owned()]
        } else {
            Vec::new()
        },
        verbs: ALL_VERBS,
        status_subresource: status,
        scale: None,
        generation,
        custom: false,
        storage: Arc::from(format!("{group}/{plural}")),
        printer_columns: None,
        schemas: Vec::new(),
        review: false,
    }
}

/// A create-only review resource of `group`.
fn review(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceDef {
    let mut def = builtin(
        group,
        plural,
        kind,
        namespaced,
        &[],
        false,
        Generation::None,
        false,
    );
    def.verbs = CREATE_ONLY;
    def.review = true;
    def
}

/// The registry of served resources.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    resources: Vec<Arc<ResourceDef>>,
}

impl Registry {
    /// The built-in resources of a fresh cluster.
    pub(crate) fn builtin() -> Self {
        use Generation::{None as NoGen, Spec};
        const RBAC: &str = "rbac.authorization.k8s.io";
        const AUTHN: &str = "authentication.k8s.io";
        const AUTHZ: &str = "authorization.k8s.io";
        let mut namespaces = builtin(
            "",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            NoGen,
            false,
        );
        namespaces.verbs = &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        let mut pods = builtin("", "pods", "Pod", true, &["po"], true, Spec, true);
        pods.singular = "pod".into();
        let mut events_k8s = builtin(
            "events.k8s.io",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            NoGen,
            false,
        );
        events_k8s.storage = Arc::from("/events");
        let mut deployments = builtin(
            "apps",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            Spec,
            true,
        );
        deployments.scale = scale(".spec.replicas", ".status.replicas", ".status.selector");
        let mut replicasets = builtin(
            "apps",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
            Spec,
            true,
        );
        replicasets.scale = scale(".spec.replicas", ".status.replicas", ".status.selector");
        let mut statefulsets = builtin(
            "apps",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            true,
            Spec,
            true,
        );
        statefulsets.scale = scale(".spec.replicas", ".status.replicas", ".status.selector");
        let crds = builtin(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            Spec,
            false,
        );
        let resources = vec![
            builtin(
                "",
                "configmaps",
                "ConfigMap",
                true,
                &["cm"],
                false,
                NoGen,
                false,
            ),
            builtin("", "events", "Event", true, &["ev"], false, NoGen, false),
            namespaces,
            pods,
            builtin("", "secrets", "Secret", true, &[], false, NoGen, false),
            builtin(
                "",
                "serviceaccounts",
                "ServiceAccount",
                true,
                &["sa"],
                false,
                NoGen,
                false,
            ),
            builtin("", "services", "Service", true, &["svc"], true, NoGen, true),
            builtin(
                "apps",
                "daemonsets",
                "DaemonSet",
                true,
                &["ds"],
                true,
                Spec,
                true,
            ),
            deployments,
            replicasets,
            statefulsets,
            events_k8s,
            builtin(
                "coordination.k8s.io",
                "leases",
                "Lease",
                true,
                &[],
                false,
                NoGen,
                false,
            ),
            crds,
            builtin(
                RBAC,
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
                false,
                NoGen,
                false,
            ),
            builtin(
                RBAC,
                "clusterroles",
                "ClusterRole",
                false,
                &[],
                false,
                NoGen,
                false,
            ),
            builtin(
                RBAC,
                "rolebindings",
                "RoleBinding",
                true,
                &[],
                false,
                NoGen,
                false,
            ),
            builtin(RBAC, "roles", "Role", true, &[], false, NoGen, false),
            review(AUTHN, "selfsubjectreviews", "SelfSubjectReview", false),
            review(AUTHN, "tokenreviews", "TokenReview", false),
            review(
                AUTHZ,
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
                true,
            ),
            review(
                AUTHZ,
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
            ),
            review(
                AUTHZ,
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
                false,
            ),
            review(AUTHZ, "subjectaccessreviews", "SubjectAccessReview", false),
        ];
        Self {
            resources: resources.into_iter().map(Arc::new).collect(),
        }
    }

    /// The resource served at `group/version` under `plural`.
    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceDef>> {
        self.resources
            .iter()
            .find(|r| {
                r.group == group && r.plural == plural && r.versions.iter().any(|v| v == version)
            })
            .cloned()
    }

    /// The resource of `group` with `plural`, any version.
    pub(crate) fn find_any_version(&self, group: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .cloned()
    }

    /// Whether any resource is served in `group/version`.
    pub(crate) fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.resources
            .iter()
            .any(|r| r.group == group && r.versions.iter().any(|v| v == version))
    }

    /// Whether any resource is served in `group`.
    pub(crate) fn serves_group(&self, group: &str) -> bool {
        self.resources.iter().any(|r| r.group == group)
    }

    /// All resources, in registration order.
    pub(crate) fn all(&self) -> &[Arc<ResourceDef>] {
        &self.resources
    }

    /// Groups (other than the core group) with their versions, preferred first, in registration order.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.resources {
            if r.group.is_empty() {
                continue;
            }
            let entry = match out.iter_mut().position(|(g, _)| *g == r.group) {
                Some(i) => &mut out[i].1,
                None => {
                    out.push((r.group.clone(), Vec::new()));
                    let last = out.len() - 1;
                    &mut out[last].1
                }
            };
            for v in &r.versions {
                if !entry.contains(v) {
                    entry.push(v.clone());
                }
            }
        }
        out
    }

    /// Serves (or re-serves) a custom resource.
    pub(crate) fn add_custom(&mut self, def: ResourceDef) {
        self.resources
            .retain(|r| !(r.group == def.group && r.plural == def.plural));
        self.resources.push(Arc::new(def));
    }

    /// Stops serving a custom resource.
    pub(crate) fn remove_custom(&mut self, group: &str, plural: &str) {
        self.resources
            .retain(|r| !(r.custom && r.group == group && r.plural == plural));
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_path(v, path).and_then(Value::as_str)
}

/// Reads a CustomResourceDefinition into the resource it serves, or the causes it is invalid.
pub(crate) fn from_crd(crd: &Map<String, Value>) -> Result<ResourceDef, Vec<Cause>> {
    let v = Value::Object(crd.clone());
    let mut causes = Vec::new();
    let group = str_at(&v, &["spec", "group"])
        .unwrap_or_default()
        .to_owned();
    let plural = str_at(&v, &["spec", "names", "plural"])
        .unwrap_or_default()
        .to_owned();
    let kind = str_at(&v, &["spec", "names", "kind"])
        .unwrap_or_default()
        .to_owned();
    let name = str_at(&v, &["metadata", "name"]).unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.group",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.names.plural",
        ));
    }
    if kind.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value",
            "spec.names.kind",
        ));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::new(
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
            "metadata.name",
        ));
    }
    let scope = str_at(&v, &["spec", "scope"]).unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
            "spec.scope",
        ));
    }
    let versions = get_path(&v, &["spec", "versions"])
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::new(
            "FieldValueRequired",
            "Required value: must have exactly one version marked as storage version",
            "spec.versions",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let mut served: Vec<&Value> = versions
        .iter()
        .filter(|ver| ver.get("served").and_then(Value::as_bool).unwrap_or(false))
        .collect();
    served.sort_by_key(|ver| !ver.get("storage").and_then(Value::as_bool).unwrap_or(false));
    let reference = served.first().copied().or(versions.first());
    let sub = reference.and_then(|r| r.get("subresources"));
    let scale = sub.and_then(|s| s.get("scale")).map(|s| ScalePaths {
        spec_replicas: s
            .get("specReplicasPath")
            .and_then(Value::as_str)
            .unwrap_or(".spec.replicas")
            .to_owned(),
        status_replicas: s
            .get("statusReplicasPath")
            .and_then(Value::as_str)
            .unwrap_or(".status.replicas")
            .to_owned(),
        label_selector: s
            .get("labelSelectorPath")
            .and_then(Value::as_str)
            .map(str::to_owned),
    });
    let strings = |path: &[&str]| -> Vec<String> {
        get_path(&v, path)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ResourceDef {
        storage: Arc::from(format!("{group}/{plural}")),
        versions: served
            .iter()
            .filter_map(|ver| ver.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        singular: str_at(&v, &["spec", "names", "singular"])
            .map(str::to_owned)
            .unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings(&["spec", "names", "shortNames"]),
        categories: strings(&["spec", "names", "categories"]),
        namespaced: scope == "Namespaced",
        verbs: ALL_VERBS,
        status_subresource: sub.and_then(|s| s.get("status")).is_some(),
        scale,
        generation: Generation::AllButMetadata,
        custom: true,
        schemas: served
            .iter()
            .filter_map(|ver| {
                let name = ver.get("name").and_then(Value::as_str)?;
                let schema = ver.get("schema").and_then(|s| s.get("openAPIV3Schema"))?;
                Some((name.to_owned(), schema.clone()))
            })
            .collect(),
        review: false,
        printer_columns: reference
            .and_then(|r| r.get("additionalPrinterColumns"))
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .cloned(),
        group,
        plural,
        kind,
    })
}
