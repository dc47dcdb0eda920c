//! The informers of one host: exactly one per resource and scope, shared by
//! every controller that watches it, and released when none does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use kube::Client;

use super::discovery::{Discovery, Resource};
use super::informer::SharedInformer;

type InformerKey = (String, String, Option<String>);

/// Hands out shared informers.
#[derive(Clone)]
pub struct InformerRegistry {
    client: Client,
    discovery: Option<Discovery>,
    informers: Arc<Mutex<HashMap<InformerKey, Weak<SharedInformer>>>>,
}

impl std::fmt::Debug for InformerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InformerRegistry").finish_non_exhaustive()
    }
}

impl InformerRegistry {
    /// A registry whose informers use `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            discovery: None,
            informers: Arc::default(),
        }
    }

    /// Its informers make `discovery` forget a resource after a 404 on its
    /// URL (the kind, or its version, is gone).
    #[must_use]
    pub fn with_discovery(mut self, discovery: Discovery) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// The informer of `resource` in `namespace` (`None`: all namespaces),
    /// started on first use. It stops when the last holder drops it.
    pub fn informer(
        &self,
        resource: &Arc<Resource>,
        namespace: Option<&str>,
    ) -> Arc<SharedInformer> {
        let namespace = namespace.filter(|_| resource.namespaced).map(str::to_owned);
        let key = (
            resource.api_version.clone(),
            resource.kind.clone(),
            namespace.clone(),
        );
        let mut informers = self
            .informers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = informers.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let informer = Arc::new(SharedInformer::start_with_discovery(
            self.client.clone(),
            Arc::clone(resource),
            namespace,
            self.discovery.clone(),
        ));
        informers.insert(key, Arc::downgrade(&informer));
        informer
    }

    /// The running informer of a kind in a namespace, if some controller
    /// holds one; a cluster-wide informer serves every namespace.
    pub fn find(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Vec<Arc<SharedInformer>> {
        let informers = self
            .informers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        informers
            .iter()
            .filter(|((version, found_kind, scope), _)| {
                version == api_version
                    && found_kind == kind
                    && (scope.is_none() || namespace.is_none() || scope.as_deref() == namespace)
            })
            .filter_map(|(_, informer)| informer.upgrade())
            .collect()
    }

    /// Every running informer.
    pub fn all(&self) -> Vec<Arc<SharedInformer>> {
        let informers = self
            .informers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        informers.values().filter_map(Weak::upgrade).collect()
    }
}
