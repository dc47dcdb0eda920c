//! The cluster's shared state: store, registry, pending garbage-collection work, and request context types.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::json::{meta_str, with_type};
use crate::registry::{Registry, ResourceDef};
use crate::status::ApiError;
use crate::store::{Store, Stored};

/// How dependents of a deleted owner are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Work for the garbage collector and the namespace and CRD finalizers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GcTask {
    /// Delete (or detach) the dependents of an owner that is gone or being deleted.
    Dependents {
        owner_uid: String,
        policy: Propagation,
    },
    /// An owner in foreground or orphan deletion may be finished.
    Owner { uid: String },
    /// Empty a terminating namespace, then remove it.
    Namespace { name: String },
    /// Remove the objects of a deleted CustomResourceDefinition, then the definition.
    Crd { name: String },
    /// Check a written object's ownerReferences: delete it when every owner is gone, drop the
    /// references to missing owners otherwise.
    Dangling {
        storage: Arc<str>,
        namespace: String,
        name: String,
    },
}

/// The state every request works on, behind one lock.
#[derive(Debug)]
pub(crate) struct Core {
    pub store: Store,
    pub registry: Registry,
    /// Pending collector work, each due at an instant.
    pub gc: VecDeque<(Instant, GcTask)>,
    /// The next ClusterIP handed to a Service.
    pub next_cluster_ip: u32,
    /// How long a deleted namespace stays `Terminating` before its contents are removed.
    pub namespace_delay: std::time::Duration,
    /// The RBAC bindings index, with the resourceVersion of the RBAC objects it was built from.
    policy: Option<(u64, Arc<crate::auth::rbac::Policy>)>,
    /// The cluster CA (PEM) published in every namespace's `kube-root-ca.crt`.
    pub root_ca: String,
}

/// A resource request target parsed from the URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub res: Arc<ResourceDef>,
    pub version: String,
    /// The namespace from the URL, for namespaced resources.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The client asked for `PartialObjectMetadata` (metadata only).
    pub metadata_only: bool,
    /// The client asked for a `Table` (what `kubectl get` prints).
    pub table: bool,
}

impl Target {
    /// `apiVersion` of the served version.
    pub(crate) fn api_version(&self) -> String {
        self.res.api_version(&self.version)
    }

    /// The object encoded for this served version (or as `PartialObjectMetadata`).
    pub(crate) fn render(&self, stored: &Stored) -> bytes::Bytes {
        self.render_body(&stored.body)
    }

    /// An encoded body (without kind and apiVersion) as this request wants to see it.
    pub(crate) fn render_body(&self, body: &[u8]) -> bytes::Bytes {
        if self.table {
            return crate::table::render(self, &[bytes::Bytes::copy_from_slice(body)], Map::new());
        }
        if crate::convert::converts(&self.res, &self.version) && !self.metadata_only {
            let mut obj = crate::json::decode(body);
            crate::convert::to_served(&self.res, &self.version, &mut obj);
            return with_type(
                &self.res.kind,
                &self.api_version(),
                &crate::json::encode_body(&obj),
            );
        }
        if self.metadata_only {
            with_type(
                "PartialObjectMetadata",
                "meta.k8s.io/v1",
                &crate::json::metadata_only(body),
            )
        } else {
            with_type(&self.res.kind, &self.api_version(), body)
        }
    }

    /// A list item (no kind or apiVersion) as this request wants to see it.
    pub(crate) fn item_body(&self, body: &bytes::Bytes) -> bytes::Bytes {
        if self.metadata_only {
            // Each item of a PartialObjectMetadataList names its kind, as a real server writes it.
            with_type(
                "PartialObjectMetadata",
                "meta.k8s.io/v1",
                &crate::json::metadata_only(body),
            )
        } else if crate::convert::converts(&self.res, &self.version) {
            let mut obj = crate::json::decode(body);
            crate::convert::to_served(&self.res, &self.version, &mut obj);
            crate::json::encode_body(&obj)
        } else {
            body.clone()
        }
    }

    /// Brings an object written through this request's view into the stored shape.
    pub(crate) fn to_stored_shape(&self, obj: &mut Map<String, Value>) {
        crate::convert::to_stored(&self.res, &self.version, obj);
    }

    /// How lists of this resource merge in apply and field ownership.
    pub(crate) fn lists(&self) -> crate::apply::Lists<'_> {
        if self.res.custom {
            let schema = self
                .res
                .schemas
                .iter()
                .find(|(v, _)| *v == self.version)
                .map(|(_, s)| s);
            crate::apply::Lists::custom(schema)
        } else {
            match self
                .res
                .type_schemas
                .iter()
                .find(|(v, _)| *v == self.version)
            {
                Some((_, schema_fn)) => crate::apply::Lists::typed(*schema_fn),
                None => crate::apply::Lists::custom(None),
            }
        }
    }

    /// The namespace, or "" for cluster-scoped resources.
    pub(crate) fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// The object name from the URL.
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// 404 for the named object.
    pub(crate) fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.res.plural, &self.res.group, self.name())
    }
}

/// Query parameters of a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(pub HashMap<String, String>);

impl Query {
    /// A parameter, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A parameter, if present and not empty.
    pub(crate) fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`).
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
}

impl Core {
    /// A fresh cluster: built-in resources, the four standard namespaces and the `kubernetes` Service.
    pub(crate) fn new(history: usize, namespace_delay: std::time::Duration) -> Self {
        let mut core = Self {
            store: Store::new(history),
            registry: Registry::builtin(),
            gc: VecDeque::new(),
            next_cluster_ip: 2,
            namespace_delay,
            policy: None,
            root_ca: String::new(),
        };
        core.seed();
        core
    }

    fn seed(&mut self) {
        let now = crate::json::now_rfc3339();
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            let obj = serde_json::json!({
                "metadata": {
                    "name": ns,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": now,
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            if let Value::Object(m) = obj {
                self.store.put(&Arc::from("/namespaces"), m);
            }
        }
        let svc = serde_json::json!({
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now,
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "clusterIP": "10.96.0.1",
                "clusterIPs": ["10.96.0.1"],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                "sessionAffinity": "None",
                "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        });
        if let Value::Object(m) = svc {
            self.store.put(&Arc::from("/services"), m);
        }
        crate::auth::rbac::seed(self);
        crate::apiservices::sync(self);
    }

    /// The RBAC index, rebuilt when a Role, ClusterRole or binding changed since the last call.
    pub(crate) fn policy(&mut self) -> Arc<crate::auth::rbac::Policy> {
        use crate::auth::rbac::{CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES, ROLE_BINDINGS, ROLES};
        let version = [ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS]
            .iter()
            .map(|s| self.store.changed_at(s))
            .max()
            .unwrap_or(0);
        if let Some((built_at, policy)) = &self.policy
            && *built_at == version
        {
            return policy.clone();
        }
        let policy = Arc::new(crate::auth::rbac::Policy::build(&self.store));
        self.policy = Some((version, policy.clone()));
        policy
    }

    /// The namespace object, if it exists.
    pub(crate) fn namespace(&self, name: &str) -> Option<Map<String, Value>> {
        self.store.get("/namespaces", "", name).map(Stored::decode)
    }

    /// Queues collector work due now (once: the same pending task is not queued twice).
    pub(crate) fn schedule(&mut self, task: GcTask) {
        let now = Instant::now();
        if let Some(pending) = self.gc.iter_mut().find(|(_, t)| *t == task) {
            pending.0 = pending.0.min(now);
            return;
        }
        self.gc.push_back((now, task));
    }

    /// Queues collector work due after a delay.
    pub(crate) fn schedule_after(&mut self, delay: std::time::Duration, task: GcTask) {
        self.gc.push_back((Instant::now() + delay, task));
    }

    /// Queues an ownerReference check for an object just written, if it has owners.
    pub(crate) fn written(&mut self, storage: &Arc<str>, obj: &Map<String, Value>) {
        let has_owners = obj
            .get("metadata")
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        if has_owners {
            self.schedule(GcTask::Dangling {
                storage: storage.clone(),
                namespace: meta_str(obj, "namespace").unwrap_or_default().to_owned(),
                name: meta_str(obj, "name").unwrap_or_default().to_owned(),
            });
        }
    }

    /// Records the follow-up work after an object was removed from the store.
    pub(crate) fn removed(&mut self, obj: &Map<String, Value>) {
        if let Some(uid) = meta_str(obj, "uid")
            && !self.store.dependents_of(uid).is_empty()
        {
            self.schedule(GcTask::Dependents {
                owner_uid: uid.to_owned(),
                policy: Propagation::Background,
            });
        }
        let owners: Vec<String> = obj
            .get("metadata")
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for uid in owners {
            self.schedule(GcTask::Owner { uid });
        }
        if let Some(ns) = meta_str(obj, "namespace")
            && !ns.is_empty()
            && self.namespace(ns).is_some_and(|n| {
                crate::json::meta(&n).is_some_and(|m| m.contains_key("deletionTimestamp"))
            })
        {
            self.schedule(GcTask::Namespace {
                name: ns.to_owned(),
            });
        }
    }
}
