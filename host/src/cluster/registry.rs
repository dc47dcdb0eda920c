//! The informers of one host: exactly one per resource, scope and
//! [`Slice`], shared by every controller that watches it, and released when
//! none does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use kube::Client;

use super::discovery::{Discovery, Resource};
use super::informer::{Shards, SharedInformer};
use super::slice::Slice;

type InformerKey = (String, String, Option<String>, Slice);

/// Hands out shared informers.
#[derive(Clone)]
pub struct InformerRegistry {
    client: Client,
    discovery: Option<Discovery>,
    /// Set on a member of a sharded ring: informers of a slice other than
    /// `All` hold only this host's share.
    shards: Option<Shards>,
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
            shards: None,
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

    /// Its informers of a slice other than `All` hold only this host's
    /// share of the keys `shards` spreads (a member of a sharded ring).
    #[must_use]
    pub fn with_shards(mut self, shards: Shards) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The informer of every object of `resource` in `namespace` (`None`:
    /// all namespaces), started on first use. It stops when the last
    /// holder drops it.
    pub fn informer(
        &self,
        resource: &Arc<Resource>,
        namespace: Option<&str>,
    ) -> Arc<SharedInformer> {
        self.informer_of(resource, namespace, Slice::All)
    }

    /// The informer of `slice` of `resource` in `namespace`. On a host
    /// whose keys are not spread, and while an informer of every object of
    /// it runs, that one serves: it holds the slice too.
    pub fn informer_of(
        &self,
        resource: &Arc<Resource>,
        namespace: Option<&str>,
        slice: Slice,
    ) -> Arc<SharedInformer> {
        let namespace = namespace.filter(|_| resource.namespaced).map(str::to_owned);
        let slice = if self.shards.is_some() {
            slice
        } else {
            Slice::All
        };
        let key = |slice| {
            (
                resource.api_version.clone(),
                resource.kind.clone(),
                namespace.clone(),
                slice,
            )
        };
        let mut informers = self
            .informers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for serving in [slice, Slice::All] {
            if let Some(existing) = informers.get(&key(serving)).and_then(Weak::upgrade) {
                return existing;
            }
        }
        let informer = Arc::new(SharedInformer::start_slice(
            self.client.clone(),
            Arc::clone(resource),
            namespace.clone(),
            self.discovery.clone(),
            slice,
            self.shards.clone(),
        ));
        informers.insert(key(slice), Arc::downgrade(&informer));
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
            .filter(|((version, found_kind, scope, _), _)| {
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
