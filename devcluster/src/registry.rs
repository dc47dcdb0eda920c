//! The served resources: built-in types and those added by CustomResourceDefinitions.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::json::get_path;
use crate::openapi::{Documents, SchemaFn, schema_of};
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
    /// Generation starts at 1 and moves when any of these fields changes (`spec`,
    /// `webhooks`, `metadata.annotations`, ...), as the type's registry strategy decides.
    On(&'static [&'static str]),
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
    /// Subresources other than `status` and `scale`.
    pub subresources: Vec<Subresource>,
    pub generation: Generation,
    /// Custom resources take no strategic merge patches.
    pub custom: bool,
    /// The key objects are stored under; two resources may share one (Events).
    pub storage: Arc<str>,
    /// A CRD's `additionalPrinterColumns`, when it declares any.
    pub printer_columns: Option<Vec<Value>>,
    /// A CRD's `openAPIV3Schema` per served version.
    pub schemas: Vec<(String, Value)>,
    /// A built-in kind's schema per served version, as k8s-openapi types it.
    pub type_schemas: Vec<(String, SchemaFn)>,
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

    /// Every subresource, `status` and `scale` included, by name.
    pub(crate) fn all_subresources(&self) -> Vec<Subresource> {
        let mut all = self.subresources.clone();
        if self.status_subresource {
            all.push(Subresource {
                name: "status",
                kind: None,
                verbs: GET_PATCH_UPDATE,
            });
        }
        if self.scale.is_some() {
            all.push(Subresource {
                name: "scale",
                kind: Some(("autoscaling", "v1", "Scale")),
                verbs: GET_PATCH_UPDATE,
            });
        }
        all.sort_by_key(|sub| sub.name);
        all
    }

    /// The subresource served under `name`.
    pub(crate) fn subresource(&self, name: &str) -> Option<Subresource> {
        self.all_subresources()
            .into_iter()
            .find(|sub| sub.name == name)
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

/// Whether a k8s-openapi scope is a namespace.
trait Scope {
    const NAMESPACED: bool;
}

impl Scope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A built-in resource as k8s-openapi types it: group, version, kind, plural and scope.
fn served<K>() -> ResourceDef
where
    K: k8s_openapi::Resource + schemars::JsonSchema,
    K::Scope: Scope,
{
    ResourceDef {
        group: K::GROUP.to_owned(),
        versions: vec![K::VERSION.to_owned()],
        plural: K::URL_PATH_SEGMENT.to_owned(),
        singular: K::KIND.to_lowercase(),
        kind: K::KIND.to_owned(),
        namespaced: K::Scope::NAMESPACED,
        short_names: Vec::new(),
        categories: Vec::new(),
        verbs: ALL_VERBS,
        status_subresource: false,
        scale: None,
        subresources: Vec::new(),
        generation: Generation::None,
        custom: false,
        storage: Arc::from(format!("{}/{}", K::GROUP, K::URL_PATH_SEGMENT)),
        printer_columns: None,
        schemas: Vec::new(),
        type_schemas: vec![(K::VERSION.to_owned(), schema_of::<K>)],
        review: false,
    }
}

/// What a real server's discovery adds to the typed facts of a built-in resource.
impl ResourceDef {
    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn category(mut self, category: &str) -> Self {
        self.categories.push(category.to_owned());
        self
    }

    fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.verbs = verbs;
        self
    }

    fn status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// `/scale` at the workload replicas paths.
    fn scaled(mut self) -> Self {
        self.scale = scale(".spec.replicas", ".status.replicas", ".status.selector");
        self
    }

    fn sub(
        mut self,
        name: &'static str,
        kind: Option<Gvk>,
        verbs: &'static [&'static str],
    ) -> Self {
        self.subresources.push(Subresource { name, kind, verbs });
        self
    }

    fn generation(mut self, generation: Generation) -> Self {
        self.generation = generation;
        self
    }

    /// Also served as `K`'s version, after the versions it has.
    fn also<K>(mut self) -> Self
    where
        K: k8s_openapi::Resource + schemars::JsonSchema,
    {
        self.versions.push(K::VERSION.to_owned());
        self.type_schemas
            .push((K::VERSION.to_owned(), schema_of::<K>));
        self
    }

    fn review(mut self) -> Self {
        self.verbs = CREATE_ONLY;
        self.review = true;
        self
    }
}

/// A group, version and kind, as a subresource names what it takes and answers.
pub(crate) type Gvk = (&'static str, &'static str, &'static str);

/// A subresource other than `status` and `scale`.
#[derive(Debug, Clone)]
pub(crate) struct Subresource {
    pub name: &'static str,
    /// What it takes and answers; `None` for the resource's own kind.
    pub kind: Option<Gvk>,
    pub verbs: &'static [&'static str],
}

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE_GET: &[&str] = &["create", "get"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];
const ALL_BUT_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The registry of served resources.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    resources: Vec<Arc<ResourceDef>>,
    /// The OpenAPI documents of these resources, built on first use and shared by the
    /// registry's clones; a change to the resources starts a fresh one.
    openapi: Arc<OnceLock<Arc<Documents>>>,
}

impl Registry {
    /// The built-in resources of a fresh cluster: what a real 1.36 server with its default
    /// feature gates serves (no alpha or beta versions), in the order its discovery lists them.
    pub(crate) fn builtin() -> Self {
        use Generation::On;
        use k8s_openapi::api::{
            admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
            authorization::v1 as authz, autoscaling::v1 as hpa_v1, autoscaling::v2 as hpa,
            batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
            core::v1 as core, discovery::v1 as discovery, events::v1 as events,
            flowcontrol::v1 as flowcontrol, networking::v1 as networking, node::v1 as node,
            policy::v1 as policy, rbac::v1 as rbac, resource::v1 as dra,
            scheduling::v1 as scheduling, storage::v1 as storage,
        };
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
        use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
        const SPEC: Generation = On(&["spec"]);
        let resources = vec![
            // core/v1
            served::<core::Binding>().verbs(CREATE_ONLY),
            served::<core::ComponentStatus>()
                .short(&["cs"])
                .verbs(&["get", "list"]),
            served::<core::ConfigMap>().short(&["cm"]),
            served::<core::Endpoints>().short(&["ep"]),
            served::<core::Event>().short(&["ev"]),
            served::<core::LimitRange>().short(&["limits"]),
            served::<core::Namespace>()
                .short(&["ns"])
                .verbs(ALL_BUT_COLLECTION)
                .status()
                .sub("finalize", None, &["update"]),
            served::<core::Node>().short(&["no"]).status().sub(
                "proxy",
                Some(("", "v1", "NodeProxyOptions")),
                PROXY,
            ),
            served::<core::PersistentVolumeClaim>()
                .short(&["pvc"])
                .status(),
            served::<core::PersistentVolume>().short(&["pv"]).status(),
            served::<core::Pod>()
                .short(&["po"])
                .category("all")
                .status()
                .generation(SPEC)
                .sub("attach", Some(("", "v1", "PodAttachOptions")), CREATE_GET)
                .sub("binding", Some(("", "v1", "Binding")), CREATE_ONLY)
                .sub("ephemeralcontainers", None, GET_PATCH_UPDATE)
                .sub("eviction", Some(("policy", "v1", "Eviction")), CREATE_ONLY)
                .sub("exec", Some(("", "v1", "PodExecOptions")), CREATE_GET)
                .sub("log", None, &["get"])
                .sub(
                    "portforward",
                    Some(("", "v1", "PodPortForwardOptions")),
                    CREATE_GET,
                )
                .sub("proxy", Some(("", "v1", "PodProxyOptions")), PROXY)
                .sub("resize", None, GET_PATCH_UPDATE),
            served::<core::PodTemplate>().generation(On(&["template"])),
            served::<core::ReplicationController>()
                .short(&["rc"])
                .category("all")
                .status()
                .scaled()
                .generation(SPEC),
            served::<core::ResourceQuota>().short(&["quota"]).status(),
            served::<core::Secret>(),
            served::<core::ServiceAccount>().short(&["sa"]).sub(
                "token",
                Some(("authentication.k8s.io", "v1", "TokenRequest")),
                CREATE_ONLY,
            ),
            served::<core::Service>()
                .short(&["svc"])
                .category("all")
                .status()
                .sub("proxy", Some(("", "v1", "ServiceProxyOptions")), PROXY),
            // admissionregistration.k8s.io/v1
            served::<admission::MutatingAdmissionPolicy>()
                .category("api-extensions")
                .generation(SPEC),
            served::<admission::MutatingAdmissionPolicyBinding>()
                .category("api-extensions")
                .generation(SPEC),
            served::<admission::MutatingWebhookConfiguration>()
                .category("api-extensions")
                .generation(On(&["webhooks"])),
            served::<admission::ValidatingAdmissionPolicy>()
                .category("api-extensions")
                .status()
                .generation(SPEC),
            served::<admission::ValidatingAdmissionPolicyBinding>()
                .category("api-extensions")
                .generation(SPEC),
            served::<admission::ValidatingWebhookConfiguration>()
                .category("api-extensions")
                .generation(On(&["webhooks"])),
            // apiextensions.k8s.io/v1
            served::<apiextensions::CustomResourceDefinition>()
                .short(&["crd", "crds"])
                .category("api-extensions")
                .status()
                .generation(SPEC),
            // apiregistration.k8s.io/v1
            served::<apiregistration::APIService>()
                .category("api-extensions")
                .status(),
            // apps/v1
            served::<apps::ControllerRevision>(),
            served::<apps::DaemonSet>()
                .short(&["ds"])
                .category("all")
                .status()
                .generation(SPEC),
            served::<apps::Deployment>()
                .short(&["deploy"])
                .category("all")
                .status()
                .scaled()
                .generation(On(&["spec", "metadata.annotations"])),
            served::<apps::ReplicaSet>()
                .short(&["rs"])
                .category("all")
                .status()
                .scaled()
                .generation(SPEC),
            served::<apps::StatefulSet>()
                .short(&["sts"])
                .category("all")
                .status()
                .scaled()
                .generation(SPEC),
            // authentication.k8s.io/v1
            served::<authn::SelfSubjectReview>().review(),
            served::<authn::TokenReview>().review(),
            // authorization.k8s.io/v1
            served::<authz::LocalSubjectAccessReview>().review(),
            served::<authz::SelfSubjectAccessReview>().review(),
            served::<authz::SelfSubjectRulesReview>().review(),
            served::<authz::SubjectAccessReview>().review(),
            // autoscaling/v2, also v1
            served::<hpa::HorizontalPodAutoscaler>()
                .short(&["hpa"])
                .category("all")
                .status()
                .also::<hpa_v1::HorizontalPodAutoscaler>(),
            // batch/v1
            served::<batch::CronJob>()
                .short(&["cj"])
                .category("all")
                .status()
                .generation(SPEC),
            served::<batch::Job>()
                .category("all")
                .status()
                .generation(SPEC),
            // certificates.k8s.io/v1
            served::<certificates::CertificateSigningRequest>()
                .short(&["csr"])
                .status()
                .sub("approval", None, GET_PATCH_UPDATE),
            // coordination.k8s.io/v1
            served::<coordination::Lease>(),
            // discovery.k8s.io/v1
            served::<discovery::EndpointSlice>().generation(On(&[
                "addressType",
                "endpoints",
                "ports",
                "metadata.labels",
            ])),
            // events.k8s.io/v1: the same objects as core/v1 Events
            {
                let mut def = served::<events::Event>().short(&["ev"]);
                def.storage = Arc::from("/events");
                def
            },
            // flowcontrol.apiserver.k8s.io/v1
            served::<flowcontrol::FlowSchema>()
                .status()
                .generation(SPEC),
            served::<flowcontrol::PriorityLevelConfiguration>()
                .status()
                .generation(SPEC),
            // networking.k8s.io/v1
            served::<networking::IngressClass>().generation(SPEC),
            served::<networking::Ingress>()
                .short(&["ing"])
                .status()
                .generation(SPEC),
            served::<networking::IPAddress>().short(&["ip"]),
            served::<networking::NetworkPolicy>()
                .short(&["netpol"])
                .generation(SPEC),
            served::<networking::ServiceCIDR>().status(),
            // node.k8s.io/v1
            served::<node::RuntimeClass>(),
            // policy/v1
            served::<policy::PodDisruptionBudget>()
                .short(&["pdb"])
                .status()
                .generation(SPEC),
            // rbac.authorization.k8s.io/v1
            served::<rbac::ClusterRoleBinding>(),
            served::<rbac::ClusterRole>(),
            served::<rbac::RoleBinding>(),
            served::<rbac::Role>(),
            // resource.k8s.io/v1
            served::<dra::DeviceClass>().generation(SPEC),
            served::<dra::ResourceClaim>().status(),
            served::<dra::ResourceClaimTemplate>(),
            served::<dra::ResourceSlice>().generation(SPEC),
            // scheduling.k8s.io/v1
            served::<scheduling::PriorityClass>().short(&["pc"]),
            // storage.k8s.io/v1
            served::<storage::CSIDriver>().generation(SPEC),
            served::<storage::CSINode>(),
            served::<storage::CSIStorageCapacity>(),
            served::<storage::StorageClass>().short(&["sc"]),
            served::<storage::VolumeAttachment>().status(),
            served::<storage::VolumeAttributesClass>().short(&["vac"]),
        ];
        Self {
            resources: resources.into_iter().map(Arc::new).collect(),
            openapi: Arc::default(),
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
        self.openapi = Arc::default();
    }

    /// Stops serving a custom resource.
    pub(crate) fn remove_custom(&mut self, group: &str, plural: &str) {
        self.resources
            .retain(|r| !(r.custom && r.group == group && r.plural == plural));
        self.openapi = Arc::default();
    }

    /// The OpenAPI documents of the served resources, built once per change of the registry.
    pub(crate) fn openapi(&self) -> Arc<Documents> {
        self.openapi
            .get_or_init(|| Arc::new(Documents::build(self)))
            .clone()
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_path(v, path).and_then(Value::as_str)
}

/// A kind every fresh cluster serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinKind {
    /// The API group (`""` for the core group).
    pub group: String,
    /// The versions serving it, preferred first.
    pub versions: Vec<String>,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
}

/// The built-in kinds a fresh cluster serves, as a real 1.36 API server with its default
/// feature gates serves them, in the order its discovery lists them.
pub fn builtin_kinds() -> Vec<BuiltinKind> {
    Registry::builtin()
        .all()
        .iter()
        .map(|resource| BuiltinKind {
            group: resource.group.clone(),
            versions: resource.versions.clone(),
            kind: resource.kind.clone(),
        })
        .collect()
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
    for (index, version) in versions.iter().enumerate() {
        let at = format!("spec.versions[{index}].schema.openAPIV3Schema");
        match get_path(version, &["schema", "openAPIV3Schema"]) {
            Some(schema) => causes.extend(crate::schema::uncompilable_rules(schema, &at)),
            None => causes.push(Cause::new("FieldValueRequired", "Required value", at)),
        }
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
        subresources: Vec::new(),
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
        type_schemas: Vec::new(),
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
