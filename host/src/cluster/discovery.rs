//! Discovery: from a watched or acted-on `apiVersion` and `kind` to the
//! resource that serves it (plural, scope, subresources), cached, and
//! looked up again when a kind is unknown (CRDs created after start-up are
//! found without a restart), when its answer is older than [`MAX_AGE`],
//! or after a 404 on its URL ([`Discovery::forget`], which the informers
//! call), so that a CRD that changed version or scope is not served from a
//! stale answer.
//!
//! Each lookup is kube's `discovery::pinned_kind`: one request for the one
//! group-version asked about. `kube::Discovery` is not used for lookups
//! because it lists every group and version of the cluster on each run and
//! keeps no per-kind answers to forget; the host resolves a handful of
//! kinds, one at a time, as guests name them. It is used when a kind is
//! not served, to say where a kind of that name is ([`ServedKinds`], by
//! aggregated discovery: two requests).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;

use super::ClusterError;
use crate::kinds::ServedKinds;

/// A resource type of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The API group (`""` for core).
    pub group: String,
    /// The version.
    pub version: String,
    /// `group/version`, or the version for the core group.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// The plural name used in URLs.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Subresources served (`status`, `scale`).
    pub subresources: Vec<String>,
}

impl Resource {
    /// The collection URL, in one namespace or across all.
    pub fn url(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(namespace) => format!("{prefix}/namespaces/{namespace}/{}", self.plural),
            None => format!("{prefix}/{}", self.plural),
        }
    }

    /// kube's description of the resource.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// Whether a subresource is served.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|sub| sub == name)
    }
}

/// Splits `group/version` (or a bare core version) into group and version.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// How long an answer of discovery is used before it is asked again.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// Resources found so far, by apiVersion and kind, with when.
type Known = HashMap<(String, String), (Arc<Resource>, Instant)>;

/// Resolves kinds to resources, caching what it found.
#[derive(Clone)]
pub struct Discovery {
    client: Client,
    known: Arc<RwLock<Known>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// Discovery through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: Arc::default(),
        }
    }

    /// The resource serving `kind` of `api_version`, asking the API server
    /// when it is not known yet or its answer is older than [`MAX_AGE`].
    ///
    /// # Errors
    ///
    /// [`ClusterError::UnknownKind`] when the cluster does not serve the
    /// kind; otherwise what the request met (credentials, TLS, no
    /// connection: see [`ClusterError::from_request`]).
    pub async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Arc<Resource>, ClusterError> {
        if let Some((known, at)) = self.entry(api_version, kind)
            && at.elapsed() < MAX_AGE
        {
            return Ok(known);
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk).await;
        let (resource, capabilities) = match found {
            Ok(found) => found,
            Err(error) => {
                let error = match error {
                    // The group-version is not served, or does not hold the kind.
                    kube::Error::Discovery(_) => self.unknown_kind(api_version, kind, error).await,
                    kube::Error::Api(ref status) if status.code == 404 => {
                        self.unknown_kind(api_version, kind, error).await
                    }
                    other => ClusterError::from_request(other),
                };
                if matches!(error, ClusterError::UnknownKind { .. }) {
                    self.forget(api_version, kind);
                }
                return Err(error);
            }
        };
        let resolved = Arc::new(Resource {
            group: resource.group,
            version: resource.version,
            api_version: resource.api_version,
            kind: resource.kind,
            plural: resource.plural,
            namespaced: capabilities.scope == Scope::Namespaced,
            subresources: capabilities
                .subresources
                .into_iter()
                .map(|(sub, _)| sub.plural)
                .collect(),
        });
        self.known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (api_version.to_owned(), kind.to_owned()),
                (Arc::clone(&resolved), Instant::now()),
            );
        Ok(resolved)
    }

    /// The resource serving `kind`, if already known (no network).
    pub fn cached(&self, api_version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.entry(api_version, kind).map(|(resource, _)| resource)
    }

    fn entry(&self, api_version: &str, kind: &str) -> Option<(Arc<Resource>, Instant)> {
        self.known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(api_version.to_owned(), kind.to_owned()))
            .cloned()
    }

    /// The error for a kind the cluster does not serve, naming where it
    /// serves a kind of that name.
    async fn unknown_kind(
        &self,
        api_version: &str,
        kind: &str,
        source: kube::Error,
    ) -> ClusterError {
        let served_as = self.served_kinds().await.map(|kinds| kinds.named(kind));
        ClusterError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            served_as,
            source: Box::new(source),
        }
    }

    /// Every kind the cluster serves, by aggregated discovery or, from a
    /// server without it, one request per API group; `None` when they
    /// cannot be listed.
    async fn served_kinds(&self) -> Option<ServedKinds> {
        let discovery = kube::Discovery::new(self.client.clone());
        let discovery = match discovery.run_aggregated().await {
            Ok(discovery) => discovery,
            Err(_) => kube::Discovery::new(self.client.clone()).run().await.ok()?,
        };
        Some(ServedKinds::discovered(&discovery))
    }

    /// Forgets a kind, so that the next `resolve` asks the API server again.
    /// The informers call it after a 404 on the kind's URL.
    pub fn forget(&self, api_version: &str, kind: &str) {
        self.known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(api_version.to_owned(), kind.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> Resource {
        Resource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
            namespaced: true,
            subresources: vec!["status".into(), "scale".into()],
        }
    }

    #[test]
    fn urls() {
        let resource = deployments();
        assert_eq!(resource.url(None), "/apis/apps/v1/deployments");
        assert_eq!(
            resource.url(Some("shop")),
            "/apis/apps/v1/namespaces/shop/deployments"
        );
        let namespaces = Resource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            plural: "namespaces".into(),
            namespaced: false,
            subresources: Vec::new(),
        };
        assert_eq!(namespaces.url(Some("ignored")), "/api/v1/namespaces");
        assert!(resource.has_subresource("scale"));
    }

    #[test]
    fn api_versions_split() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}

#[cfg(test)]
mod refresh_tests {
    use std::time::Duration;

    use kube::api::{Api, DeleteParams, DynamicObject, PostParams};

    use super::*;
    use crate::cluster::tests::{client_for, devcluster};
    use crate::cluster::{ClusterError, InformerRegistry};

    fn crds(client: &Client) -> Api<DynamicObject> {
        let resource = ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        };
        Api::all_with(client.clone(), &resource)
    }

    fn widget_crd(version: &str, scope: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": scope,
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{
                    "name": version, "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true
                    }}
                }]
            }
        }))
        .expect("a CRD")
    }

    /// Resolves until the kind is served (a new CRD is served at once, but
    /// give it a bounded moment).
    async fn served(discovery: &Discovery, api_version: &str) -> Arc<Resource> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match discovery.resolve(api_version, "Widget").await {
                Ok(resource) => return resource,
                Err(error) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "Widget {api_version} not served after 10 s: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn an_unknown_kind_names_the_versions_that_serve_it() {
        let cluster = devcluster().await;
        let client = client_for(&cluster.kubeconfig_yaml()).await;
        let discovery = Discovery::new(client);
        let unknown = |api_version: &'static str, kind: &'static str| {
            let discovery = discovery.clone();
            async move {
                let error = discovery
                    .resolve(api_version, kind)
                    .await
                    .expect_err("not served");
                assert!(
                    matches!(error, ClusterError::UnknownKind { .. }),
                    "{error:?}"
                );
                error.to_string()
            }
        };
        assert_eq!(
            unknown("apps/v2", "Deployment").await,
            "the cluster does not serve kind `Deployment` of `apps/v2`; `Deployment` is served \
             as `apps/v1`"
        );
        assert_eq!(
            unknown("core/v1", "ConfigMap").await,
            "the cluster does not serve kind `ConfigMap` of `core/v1`; the core group is written \
             `v1`, with no group (not `core/v1`); `ConfigMap` is served as `v1`"
        );
        assert_eq!(
            unknown("v1", "Configmap").await,
            "the cluster does not serve kind `Configmap` of `v1`; `ConfigMap` (not `Configmap`) \
             is served as `v1`"
        );
        assert_eq!(
            unknown("example.com/v1", "Widget").await,
            "the cluster does not serve kind `Widget` of `example.com/v1`; it serves no kind \
             `Widget` in any API group: install the CustomResourceDefinition that defines it, \
             or check the kind's spelling"
        );
    }

    #[tokio::test]
    async fn a_recreated_crd_is_resolved_again_after_a_404() {
        let cluster = devcluster().await;
        let client = client_for(&cluster.kubeconfig_yaml()).await;
        let crds = crds(&client);
        crds.create(&PostParams::default(), &widget_crd("v1", "Namespaced"))
            .await
            .expect("the CRD is created");
        let discovery = Discovery::new(client.clone());
        let v1 = served(&discovery, "example.com/v1").await;
        assert!(v1.namespaced);
        let informers = InformerRegistry::new(client.clone()).with_discovery(discovery.clone());
        let informer = informers.informer(&v1, None);
        informer.wait_synced().await;
        assert!(discovery.cached("example.com/v1", "Widget").is_some());

        // The CRD is re-created with another version and scope.
        crds.delete("widgets.example.com", &DeleteParams::default())
            .await
            .expect("the CRD is deleted");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while crds
            .get_opt("widgets.example.com")
            .await
            .ok()
            .flatten()
            .is_some()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the CRD is still there"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        crds.create(&PostParams::default(), &widget_crd("v2", "Cluster"))
            .await
            .expect("the CRD is re-created");
        // The informer's watch is renewed on the old URL and meets a 404
        // (the deletion may have ended it already).
        cluster.close_watches();
        let mut health = informer.health();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !matches!(health.failure.as_deref(), Some(ClusterError::NotFound(_))) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the informer did not meet a 404: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            health = informer.health();
        }
        assert!(
            discovery.cached("example.com/v1", "Widget").is_none(),
            "the 404 made discovery forget the old version"
        );
        let error = discovery
            .resolve("example.com/v1", "Widget")
            .await
            .expect_err("v1 is gone");
        assert!(
            matches!(error, ClusterError::UnknownKind { .. }),
            "{error:?}"
        );
        let v2 = served(&discovery, "example.com/v2").await;
        assert!(!v2.namespaced, "the new scope is seen");
    }
}
