//! `WasmController` and `ClusterWasmController` resources as a source of
//! controllers (`paddock run --from-cluster`).
//!
//! The host watches both kinds and the ConfigMaps their modules live in,
//! and after any change declares the controllers they describe, with
//! [`tenancy`] applied to a tenant's `WasmController` (it reads its module
//! only from its own namespace, too). Each resource's status follows its
//! controller through the [`status`] writer.

mod status;
pub mod tenancy;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kube::Client;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::{Declared, EntryStatus, ModuleSource, Phase, ShadowModule, StatusSink, Supervisor};
use crate::cluster::{InformerEvent, Resource, SharedInformer, StoredObject};
use crate::config::{LimitsSpec, is_dns_label};
use crate::crd::{ClusterWasmController, ControllerSettings, ModuleRef, WasmController};
use crate::grants::Grant;
use crate::identity::ServiceAccount;
use crate::wasm::compile_cache::digest;

/// The name of this source in the supervisor.
const SOURCE: &str = "cluster";

/// The problem of a module given both or neither way.
const ONE_MODULE_SOURCE: &str = "spec.module: give exactly one of `configMap` (a ConfigMap key holding the component), `inline` (the component, base64) and `image` (an OCI image of it)";

/// What a shadow candidate's module is remembered under, after its
/// controller's name.
const SHADOW_KEY: &str = "#shadow";

/// How long to wait for more changes before declaring again.
const SETTLE: Duration = Duration::from_millis(10);

use status::ResourceSink;
pub use tenancy::TenantLimits;
use tenancy::{Scopes, cap_limits, check_spec, namespaces_cut};

/// The running source. Dropping it stops watching; the controllers keep
/// running until the supervisor stops them.
#[derive(Debug)]
pub struct ClusterSource {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ClusterSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts declaring the controllers the cluster's `WasmController` and
/// `ClusterWasmController` resources describe. Until their definitions are
/// installed (`paddock crd | kubectl apply -f -`), it says so and waits.
pub fn watch(supervisor: Supervisor, client: Client, tenant: TenantLimits) -> ClusterSource {
    ClusterSource {
        task: tokio::spawn(run(supervisor, client, tenant)),
    }
}

/// The three watched resources.
struct Watched {
    namespaced: Arc<SharedInformer>,
    cluster: Arc<SharedInformer>,
    config_maps: Arc<SharedInformer>,
}

/// The three watched resources, waiting (with backoff) until the cluster
/// serves them. It returns an error only if the retry gives up, which the
/// schedule never does.
async fn resolve(
    supervisor: &Supervisor,
) -> Result<(Arc<Resource>, Arc<Resource>, Arc<Resource>), crate::cluster::ClusterError> {
    let discovery = supervisor.runtime().discovery();
    crate::retry::retry_while(
        || async {
            Ok::<_, crate::cluster::ClusterError>((
                discovery
                    .resolve("paddock.dev/v1alpha1", "WasmController")
                    .await?,
                discovery
                    .resolve("paddock.dev/v1alpha1", "ClusterWasmController")
                    .await?,
                discovery.resolve("v1", "ConfigMap").await?,
            ))
        },
        // Every failure is waited out: the definitions may be installed,
        // the cluster may come back.
        |_| true,
        |error, delay| {
            tracing::warn!(%error, ?delay, "the WasmController resources are not served; install them with `paddock crd | kubectl apply -f -`");
        },
    )
    .await
}

async fn run(supervisor: Supervisor, client: Client, tenant: TenantLimits) {
    let (namespaced, cluster, config_maps) = match resolve(&supervisor).await {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(%error, "the WasmController resources cannot be watched");
            return;
        }
    };
    let registry = supervisor.runtime().informers().clone();
    let watched = Watched {
        namespaced: registry.informer(&namespaced, None),
        cluster: registry.informer(&cluster, None),
        config_maps: registry.informer(&config_maps, None),
    };
    let mut events = [
        watched.namespaced.subscribe(),
        watched.cluster.subscribe(),
        watched.config_maps.subscribe(),
    ];
    for informer in [&watched.namespaced, &watched.cluster, &watched.config_maps] {
        informer.wait_synced().await;
    }
    let mut declarer = Declarer {
        client,
        tenant,
        namespaced,
        cluster,
        sinks: HashMap::new(),
        modules: ModuleMemos::default(),
        specs: HashMap::new(),
        last_good: HashMap::new(),
        scopes: Scopes::default(),
    };
    loop {
        let declared = declarer.declare(&watched).await;
        let _ = supervisor.apply(SOURCE, declared);
        if !next_change(&mut events).await {
            return;
        }
        // Let a burst of changes settle into one declaration.
        while tokio::time::timeout(SETTLE, next_change(&mut events))
            .await
            .is_ok_and(|more| more)
        {}
    }
}

/// Waits for a change on any of the receivers; `false` once they are
/// closed.
async fn next_change(events: &mut [broadcast::Receiver<InformerEvent>; 3]) -> bool {
    let [a, b, c] = events;
    let result = tokio::select! {
        result = a.recv() => result,
        result = b.recv() => result,
        result = c.recv() => result,
    };
    // A lagged receiver still means something changed.
    !matches!(result, Err(broadcast::error::RecvError::Closed))
}

/// Turns the watched resources into declarations, remembering what it
/// needs between passes.
struct Declarer {
    client: Client,
    tenant: TenantLimits,
    namespaced: Arc<Resource>,
    cluster: Arc<Resource>,
    /// One status writer per resource, by controller name.
    sinks: HashMap<String, Arc<ResourceSink>>,
    /// The decoded module of each controller.
    modules: ModuleMemos,
    /// Each resource's spec as last read, by kind, namespace and name, with
    /// the resourceVersion it was read at: a pass parses only the
    /// resources that changed (an inline module makes a spec large).
    specs: HashMap<SpecKey, (String, Result<Arc<Spec>, Unreadable>)>,
    /// The last declaration of each controller that could be used.
    last_good: HashMap<String, Declared>,
    scopes: Scopes,
}

/// The decoded module of each controller, so that a pass over unchanged
/// resources decodes nothing: one entry per controller, replaced when its
/// source changes and dropped with the controller.
#[derive(Debug, Default)]
struct ModuleMemos {
    by_controller: HashMap<String, ModuleMemo>,
}

/// One controller's decoded module.
#[derive(Debug)]
struct ModuleMemo {
    /// Where the bytes came from and that source's version.
    source: (String, String),
    digest: String,
    bytes: Arc<[u8]>,
}

impl ModuleMemos {
    /// The digest and bytes of `controller`'s module from `source`
    /// (where, and which version), decoded by `decode` unless they are
    /// already known.
    fn get_or_decode(
        &mut self,
        controller: &str,
        source: (String, String),
        decode: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<(String, Arc<[u8]>), String> {
        if let Some(memo) = self.by_controller.get(controller)
            && memo.source == source
        {
            return Ok((memo.digest.clone(), Arc::clone(&memo.bytes)));
        }
        let bytes: Arc<[u8]> = decode()?.into();
        let found = digest(&bytes);
        self.by_controller.insert(
            controller.to_owned(),
            ModuleMemo {
                source,
                digest: found.clone(),
                bytes: Arc::clone(&bytes),
            },
        );
        Ok((found, bytes))
    }

    /// Forgets the modules of controllers not in `seen`.
    fn retain(&mut self, seen: &BTreeSet<String>) {
        // A shadow candidate's module is kept under `NAME#shadow`.
        self.by_controller
            .retain(|name, _| seen.contains(name.strip_suffix(SHADOW_KEY).unwrap_or(name)));
    }

    /// The bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.by_controller
            .values()
            .map(|memo| memo.bytes.len())
            .sum()
    }
}

/// Which resource a spec was read from: its kind (`namespaced` or
/// `cluster`), namespace and name.
type SpecKey = (&'static str, String, String);

fn spec_key(kind: &'static str, object: &StoredObject) -> SpecKey {
    (kind, object.namespace.to_string(), object.name.to_string())
}

/// One resource's spec, whichever kind.
#[derive(Clone)]
struct Spec {
    kind: String,
    namespace: Option<String>,
    name: String,
    uid: String,
    generation: Option<i64>,
    resource_version: String,
    /// `metadata.creationTimestamp` (RFC 3339, so it sorts as text).
    created: String,
    settings: ControllerSettings,
    /// The ServiceAccount the spec names.
    service_account: Option<ServiceAccount>,
}

impl Spec {
    /// The controller's name: `namespace/name` for a tenant's, `name` for a
    /// platform owner's.
    fn controller_name(&self) -> String {
        controller_name(self.namespace.as_deref(), &self.name)
    }

    fn origin(&self) -> String {
        format!("{} {}", self.kind, self.controller_name())
    }
}

/// A resource whose spec does not parse.
#[derive(Clone)]
struct Unreadable {
    origin: String,
    controller: String,
    problem: String,
}

/// The controller a resource declares: `namespace/name` for a tenant's,
/// `name` for a platform owner's.
fn controller_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

/// One stored resource of kind `K` as a [`Spec`].
fn read<K>(
    object: &StoredObject,
    settings: impl FnOnce(K) -> (ControllerSettings, Option<ServiceAccount>),
) -> Result<Spec, Unreadable>
where
    K: DeserializeOwned + kube::Resource<DynamicType = ()>,
{
    let kind = K::kind(&()).into_owned();
    let namespace = (!object.namespace.is_empty()).then(|| object.namespace.to_string());
    let resource: K = serde_json::from_str(&object.json).map_err(|error| {
        let controller = controller_name(namespace.as_deref(), &object.name);
        Unreadable {
            origin: format!("{kind} {controller}"),
            controller,
            problem: format!("the spec does not parse: {error}"),
        }
    })?;
    let meta = resource.meta();
    let (uid, generation) = (meta.uid.clone().unwrap_or_default(), meta.generation);
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|time| time.0.to_string())
        .unwrap_or_default();
    let (settings, service_account) = settings(resource);
    Ok(Spec {
        kind,
        namespace,
        name: object.name.to_string(),
        uid,
        generation,
        resource_version: object.resource_version.to_string(),
        created,
        settings,
        service_account,
    })
}

/// A stored `WasmController` as a [`Spec`]; its ServiceAccount is in its
/// own namespace.
fn read_namespaced(object: &StoredObject) -> Result<Spec, Unreadable> {
    read::<WasmController>(object, |resource| {
        let namespace = resource.metadata.namespace.unwrap_or_default();
        let account = resource
            .spec
            .service_account_name
            .map(|name| ServiceAccount::new(namespace, name));
        (resource.spec.settings, account)
    })
}

/// A stored `ClusterWasmController` as a [`Spec`].
fn read_cluster(object: &StoredObject) -> Result<Spec, Unreadable> {
    read::<ClusterWasmController>(object, |resource| {
        (resource.spec.settings, resource.spec.service_account)
    })
}

impl Declarer {
    /// The spec of `object`, parsed again only when its resourceVersion
    /// moved since the last pass.
    fn spec(
        &mut self,
        kind: &'static str,
        object: &StoredObject,
        parse: fn(&StoredObject) -> Result<Spec, Unreadable>,
    ) -> Result<Arc<Spec>, Unreadable> {
        let key = spec_key(kind, object);
        if let Some((version, spec)) = self.specs.get(&key)
            && **version == *object.resource_version
        {
            return spec.clone();
        }
        let spec = parse(object).map(Arc::new);
        self.specs
            .insert(key, (object.resource_version.to_string(), spec.clone()));
        spec
    }

    async fn declare(&mut self, watched: &Watched) -> Vec<Declared> {
        let mut specs: Vec<Result<Arc<Spec>, Unreadable>> = Vec::new();
        let mut listed = BTreeSet::new();
        for object in watched.namespaced.store().list(None, None) {
            listed.insert(spec_key("namespaced", &object));
            specs.push(self.spec("namespaced", &object, read_namespaced));
        }
        for object in watched.cluster.store().list(None, None) {
            listed.insert(spec_key("cluster", &object));
            specs.push(self.spec("cluster", &object, read_cluster));
        }
        self.specs.retain(|key, _| listed.contains(key));
        let over_cap = self.over_namespace_cap(&specs);
        let mut declared = Vec::new();
        let mut seen = BTreeSet::new();
        for spec in specs {
            let spec = match spec {
                Ok(spec) => spec,
                Err(Unreadable {
                    origin,
                    controller,
                    problem,
                }) => {
                    tracing::error!(%origin, "{problem}");
                    seen.insert(controller.clone());
                    if let Some(good) = self.last_good.get(&controller) {
                        let mut kept = good.clone();
                        kept.problem = Some(problem);
                        declared.push(kept);
                    }
                    continue;
                }
            };
            let name = spec.controller_name();
            seen.insert(name.clone());
            let sink = self.sink(&spec);
            let found = if over_cap.contains(&name) {
                Err(format!(
                    "namespace {} already runs {} WasmControllers, the most the host allows (--tenant-max-controllers-per-namespace); this one, the newest, is not run",
                    spec.namespace.as_deref().unwrap_or_default(),
                    self.tenant.max_controllers_per_namespace
                ))
            } else {
                self.declare_one(&spec, watched, &sink).await
            };
            match found {
                Ok(found) => {
                    self.last_good.insert(name, found.clone());
                    declared.push(found);
                }
                Err(problem) => {
                    tracing::error!(origin = %spec.origin(), "{problem}");
                    if over_cap.contains(&name) {
                        self.last_good.remove(&name);
                    }
                    match self.last_good.get(&name) {
                        Some(good) => {
                            let mut kept = good.clone();
                            kept.problem = Some(problem);
                            kept.generation = spec.generation;
                            declared.push(kept);
                        }
                        None => {
                            let mut status = EntryStatus::new(&name, &spec.origin());
                            status.phase = Phase::Failed;
                            status.observed_generation = spec.generation;
                            status.last_reload_error = Some(crate::controller::LastError {
                                at: jiff::Timestamp::now(),
                                message: problem,
                            });
                            sink.publish(&status);
                        }
                    }
                }
            }
        }
        self.sinks.retain(|name, _| seen.contains(name));
        self.last_good.retain(|name, _| seen.contains(name));
        self.modules.retain(&seen);
        declared
    }

    /// The tenants' controllers beyond the per-namespace cap: in each
    /// namespace, all but the oldest `max_controllers_per_namespace`.
    fn over_namespace_cap(&self, specs: &[Result<Arc<Spec>, Unreadable>]) -> BTreeSet<String> {
        let mut by_namespace: HashMap<&str, Vec<&Spec>> = HashMap::new();
        for spec in specs.iter().flatten() {
            if let Some(namespace) = &spec.namespace {
                by_namespace.entry(namespace).or_default().push(&**spec);
            }
        }
        let mut over = BTreeSet::new();
        for mut specs in by_namespace.into_values() {
            specs.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
            over.extend(
                specs
                    .iter()
                    .skip(self.tenant.max_controllers_per_namespace)
                    .map(|spec| spec.controller_name()),
            );
        }
        over
    }

    fn sink(&mut self, spec: &Spec) -> Arc<ResourceSink> {
        let name = spec.controller_name();
        let resource = if spec.namespace.is_some() {
            &self.namespaced
        } else {
            &self.cluster
        };
        let existing = self
            .sinks
            .get(&name)
            .filter(|sink| sink.uid == spec.uid)
            .cloned();
        existing.unwrap_or_else(|| {
            let sink = Arc::new(ResourceSink::start(
                self.client.clone(),
                resource,
                spec.namespace.clone(),
                spec.name.clone(),
                spec.uid.clone(),
            ));
            self.sinks.insert(name, Arc::clone(&sink));
            sink
        })
    }

    /// One resource's declaration, with tenancy applied; a problem that
    /// keeps it from being used, naming the field and the fix.
    async fn declare_one(
        &mut self,
        spec: &Spec,
        watched: &Watched,
        sink: &Arc<ResourceSink>,
    ) -> Result<Declared, String> {
        let mut cut = Vec::new();
        let mut namespaces = spec.settings.namespaces.clone();
        let mut limits = spec.settings.limits;
        if let Some(own) = &spec.namespace {
            cut.extend(namespaces_cut(own, &namespaces));
            namespaces = vec![own.clone()];
            let scoped = self
                .scopes
                .cluster_scoped(&self.client, &spec.settings.grant)
                .await;
            for (index, resources) in scoped {
                cut.push(format!(
                    "spec.grant[{index}]: cluster-scoped {} (a WasmController has rights only inside {own})",
                    resources.join(", ")
                ));
            }
            limits = cap_limits(limits, &self.tenant, &mut cut);
        }
        check_spec(&spec.settings, &namespaces, &limits)?;
        let service_account = tenancy::service_account(
            spec.namespace.as_deref(),
            spec.service_account.as_ref(),
            &self.tenant,
        )?;
        let (module, module_digest) = self.module(
            spec,
            &spec.settings.module,
            "spec.module",
            spec.controller_name(),
            watched,
        )?;
        let shadow = match &spec.settings.shadow {
            Some(shadow) => {
                let (module, digest) = self.module(
                    spec,
                    &shadow.module,
                    "spec.shadow.module",
                    format!("{}{SHADOW_KEY}", spec.controller_name()),
                    watched,
                )?;
                Some(ShadowModule { module, digest })
            }
            None => None,
        };
        Ok(Declared {
            name: spec.controller_name(),
            origin: spec.origin(),
            module,
            module_digest,
            grant: Grant::new(spec.settings.grant.clone()).written_in("spec.grant", spec.origin()),
            namespaces,
            limits,
            queue: spec.settings.queue.clone(),
            resync: (spec.settings.resync_seconds > 0)
                .then(|| Duration::from_secs(spec.settings.resync_seconds)),
            instances: spec.settings.instances,
            generation: spec.generation,
            cut,
            problem: None,
            sink: Some(Arc::clone(sink) as Arc<dyn StatusSink>),
            tenant: spec.namespace.clone(),
            service_account,
            shadow,
        })
    }

    /// A module's bytes and digest: `module`, written at `field` of the
    /// resource, remembered under `key`.
    fn module(
        &mut self,
        spec: &Spec,
        module: &ModuleRef,
        field: &str,
        key: String,
        watched: &Watched,
    ) -> Result<(ModuleSource, String), String> {
        let base64 = base64::engine::general_purpose::STANDARD;
        if !module.image_pull_secrets.is_empty() && module.image.is_none() {
            return Err(format!(
                "{field}.imagePullSecrets: only used with {field}.image"
            ));
        }
        if module.poll_seconds.is_some_and(|seconds| seconds > 0) && module.image.is_none() {
            return Err(format!("{field}.pollSeconds: only used with {field}.image"));
        }
        match (&module.config_map, &module.inline, &module.image) {
            (None, None, Some(image)) => {
                image_source(spec, module, image, field, &self.tenant.registries)
            }
            (Some(_), Some(_), _) | (None, None, None) | (_, _, Some(_)) => Err(format!(
                "{field}{}",
                ONE_MODULE_SOURCE.trim_start_matches("spec.module")
            )),
            (None, Some(inline), None) => {
                let origin = format!("{} {field}.inline", spec.origin());
                let source = (
                    format!("{}/{field}.inline", spec.uid),
                    spec.resource_version.clone(),
                );
                let (found, bytes) = self
                    .modules
                    .get_or_decode(&key, source, || decode_inline(inline, field))?;
                Ok((ModuleSource::Bytes { origin, bytes }, found))
            }
            (Some(reference), None, None) => {
                let namespace = match (&spec.namespace, &reference.namespace) {
                    (Some(own), Some(other)) if own != other => {
                        return Err(format!(
                            "{field}.configMap.namespace: {other} is not allowed; a WasmController reads its module only from its own namespace, {own}"
                        ));
                    }
                    (Some(own), _) => own.clone(),
                    (None, Some(namespace)) => namespace.clone(),
                    (None, None) => {
                        return Err(format!(
                            "{field}.configMap.namespace: required for a ClusterWasmController; name the ConfigMap's namespace"
                        ));
                    }
                };
                if !is_dns_label(&namespace) {
                    return Err(format!(
                        "{field}.configMap.namespace: `{namespace}` is not a namespace name"
                    ));
                }
                let Some(config_map) = watched.config_maps.store().get(&namespace, &reference.name)
                else {
                    return Err(format!(
                        "{field}.configMap: ConfigMap {namespace}/{} does not exist; create it with `kubectl create configmap {} -n {namespace} --from-file={}=guest.wasm`",
                        reference.name, reference.name, reference.key
                    ));
                };
                let origin = format!(
                    "ConfigMap {namespace}/{} key {}",
                    reference.name, reference.key
                );
                let source = (origin.clone(), config_map.resource_version.to_string());
                let (found, bytes) = self.modules.get_or_decode(&key, source, || {
                    let value: serde_json::Value = serde_json::from_str(&config_map.json)
                        .map_err(|error| format!("{origin}: unreadable ConfigMap: {error}"))?;
                    let Some(encoded) = value["binaryData"][&reference.key].as_str() else {
                        let hint = if value["data"][&reference.key].is_string() {
                            "it is in `data`, which holds text; put the component in `binaryData` (kubectl create configmap --from-file does)"
                        } else {
                            "the key is missing"
                        };
                        return Err(format!("{field}.configMap.key: {origin}: {hint}"));
                    };
                    base64
                        .decode(encoded)
                        .map_err(|error| format!("{origin}: binaryData is not base64: {error}"))
                })?;
                Ok((ModuleSource::Bytes { origin, bytes }, found))
            }
        }
    }
}

/// An image module: checked now, pulled (with its pull secrets, read as the
/// controller's ServiceAccount) when it loads. Its version is the
/// reference and the pull secrets: changing either reloads it.
fn image_source(
    spec: &Spec,
    module: &ModuleRef,
    image: &str,
    field: &str,
    tenant_registries: &[String],
) -> Result<(ModuleSource, String), String> {
    let reference =
        crate::oci::parse_reference(image).map_err(|error| format!("{field}.image: {error}"))?;
    let registry = reference.registry();
    if spec.namespace.is_some()
        && !tenant_registries.is_empty()
        && !tenant_registries.iter().any(|allowed| allowed == registry)
    {
        return Err(format!(
            "{field}.image: registry {registry} is not one a WasmController may pull from ({}); push the module to one of them",
            tenant_registries.join(", ")
        ));
    }
    let mut pull_secrets = Vec::new();
    for (index, secret) in module.image_pull_secrets.iter().enumerate() {
        let field = format!("{field}.imagePullSecrets[{index}]");
        let namespace = match (&spec.namespace, &secret.namespace) {
            (Some(own), Some(other)) if own != other => {
                return Err(format!(
                    "{field}.namespace: {other} is not allowed; a WasmController reads pull secrets only from its own namespace, {own}"
                ));
            }
            (Some(own), _) => own.clone(),
            (None, Some(namespace)) => namespace.clone(),
            (None, None) => {
                return Err(format!(
                    "{field}.namespace: required for a ClusterWasmController; name the Secret's namespace"
                ));
            }
        };
        if !is_dns_label(&namespace) || secret.name.is_empty() {
            return Err(format!(
                "{field}: `{namespace}/{}` does not name a Secret",
                secret.name
            ));
        }
        pull_secrets.push((namespace, secret.name.clone()));
    }
    let version = format!("image {image} pull secrets {pull_secrets:?}");
    Ok((
        ModuleSource::Image {
            reference: image.to_owned(),
            credentials: Arc::default(),
            pull_secrets,
            poll: crate::reload::poll_interval(image, module.poll_seconds.unwrap_or(0)),
        },
        version,
    ))
}

/// Decodes an inline component at `field` (base64, whitespace ignored).
fn decode_inline(inline: &str, field: &str) -> Result<Vec<u8>, String> {
    let compact: String = inline.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|error| {
            format!(
                "{field}.inline is not valid base64 ({error}); encode the component with `base64 -w0 guest.wasm`"
            )
        })
}

/// What a resource declares without asking the cluster anything: its
/// settings after tenancy (minus the cluster-scoped-rights cut, which needs
/// discovery) and its inline module. The fuzz targets' way in.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineDeclaration {
    /// The settings as read, before tenancy.
    pub settings: ControllerSettings,
    /// The namespaces it works in.
    pub namespaces: Vec<String>,
    /// Its limits, capped for a tenant.
    pub limits: LimitsSpec,
    /// What tenancy cut.
    pub cut: Vec<String>,
    /// The inline module's bytes, if the module is inline.
    pub inline_module: Option<Vec<u8>>,
}

/// Reads a stored `WasmController` (namespaced) or `ClusterWasmController`
/// and declares it as far as that needs no cluster: the same steps as
/// [`Declarer`] takes, in the same functions.
#[doc(hidden)]
pub fn declare_offline(
    object: &StoredObject,
    tenant: &TenantLimits,
) -> Result<OfflineDeclaration, String> {
    let spec = if object.namespace.is_empty() {
        read_cluster(object)
    } else {
        read_namespaced(object)
    }
    .map_err(|unreadable| unreadable.problem)?;
    let mut cut = Vec::new();
    let mut namespaces = spec.settings.namespaces.clone();
    let mut limits = spec.settings.limits;
    if let Some(own) = &spec.namespace {
        cut.extend(namespaces_cut(own, &namespaces));
        namespaces = vec![own.clone()];
        limits = cap_limits(limits, tenant, &mut cut);
    }
    check_spec(&spec.settings, &namespaces, &limits)?;
    let module = &spec.settings.module;
    let inline_module = match (&module.config_map, &module.inline) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ONE_MODULE_SOURCE.into());
        }
        (None, Some(inline)) => Some(decode_inline(inline, "spec.module")?),
        (Some(_), None) => None,
    };
    Ok(OfflineDeclaration {
        settings: spec.settings.clone(),
        namespaces,
        limits,
        cut,
        inline_module,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_controller_keeps_one_module_and_drops_it_with_the_controller() {
        let mut memos = ModuleMemos::default();
        let module = vec![7u8; 100_000];
        // 600 edits of one resource (each a new resourceVersion), as a
        // tenant editing its inline module would make.
        for version in 0..600 {
            let source = ("uid/inline".to_owned(), version.to_string());
            memos
                .get_or_decode("team-a/floor", source, || Ok(module.clone()))
                .expect("decodes");
        }
        assert_eq!(memos.bytes(), module.len(), "one copy, not one per edit");
        let unchanged = ("uid/inline".to_owned(), "599".to_owned());
        memos
            .get_or_decode("team-a/floor", unchanged, || {
                panic!("an unchanged source is not decoded again")
            })
            .expect("known");
        memos.retain(&BTreeSet::new());
        assert_eq!(memos.bytes(), 0, "dropped with the resource");
    }
}
