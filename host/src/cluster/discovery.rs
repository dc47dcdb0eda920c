//! Discovery: from a watched or acted-on `apiVersion` and `kind` to the
//! resource that serves it (plural, scope, subresources), cached, and
//! looked up again when a kind is unknown so that CRDs created after
//! start-up are found without a restart.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use kube::Client;
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;

use super::ClusterError;

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

/// Resources found so far, by apiVersion and kind.
type Known = HashMap<(String, String), Arc<Resource>>;

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
    /// when it is not known yet.
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
        if let Some(known) = self.cached(api_version, kind) {
            return Ok(known);
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|error| match error {
                // The group-version is not served, or does not hold the kind.
                kube::Error::Discovery(_) => unknown_kind(api_version, kind, error),
                kube::Error::Api(ref status) if status.code == 404 => {
                    unknown_kind(api_version, kind, error)
                }
                other => ClusterError::from_request(other),
            })?;
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
                Arc::clone(&resolved),
            );
        Ok(resolved)
    }

    /// The resource serving `kind`, if already known (no network).
    pub fn cached(&self, api_version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(api_version.to_owned(), kind.to_owned()))
            .cloned()
    }

    /// Forgets a kind, so that the next `resolve` asks the API server again
    /// (after a 404 on its URL, say).
    pub fn forget(&self, api_version: &str, kind: &str) {
        self.known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(api_version.to_owned(), kind.to_owned()));
    }
}

/// The error for a kind the cluster does not serve.
fn unknown_kind(api_version: &str, kind: &str, source: kube::Error) -> ClusterError {
    ClusterError::UnknownKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        source: Box::new(source),
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
