//! What a guest's `cache` import reads: the shared informer stores, narrowed
//! to the guest's grant and namespaces.

use std::sync::Arc;

use super::ControllerStats;
use crate::actions::{Actor, ObjectRef};
use crate::cluster::{Discovery, InformerRegistry, split_api_version};
use crate::grants::Permission;
use crate::selector::LabelSelector;
use crate::wasm::{CacheReader, ListQuery};

/// The cache as one guest sees it. Only resources some controller watches
/// are cached; anything else reads as absent.
#[derive(Debug, Clone)]
pub struct GuestCacheView {
    pub(crate) actor: Actor,
    pub(crate) discovery: Discovery,
    pub(crate) registry: InformerRegistry,
    /// Where refused reads are counted.
    pub(crate) stats: Option<Arc<ControllerStats>>,
}

impl GuestCacheView {
    /// Whether the grant allows `verb` on the kind, and the kind is one
    /// the guest's scope can see (a guest scoped to namespaces sees no
    /// cluster-scoped kinds). `false` for kinds discovery has not met.
    fn allowed(&self, verb: &str, api_version: &str, kind: &str) -> bool {
        let Some(resource) = self.discovery.cached(api_version, kind) else {
            return false;
        };
        let (group, _) = split_api_version(api_version);
        let granted = self.actor.grant.allows(&Permission {
            verb,
            group,
            resource: &resource.plural,
            subresource: None,
        });
        granted && (resource.namespaced || self.actor.namespaces.is_empty())
    }

    /// Records a read the grant or the namespaces refused: it reads as
    /// absent to the guest, and is counted (`paddock_cache_denied_total`,
    /// `paddock status`). Logged at debug level only: a guest must not be
    /// able to flood the host's log.
    fn refused(&self, verb: &str, api_version: &str, kind: &str, namespace: Option<&str>) {
        if let Some(stats) = &self.stats {
            ControllerStats::bump(&stats.cache_denied);
        }
        tracing::debug!(
            guest = %self.actor.name,
            verb,
            api_version,
            kind,
            namespace = namespace.unwrap_or(""),
            "cache read outside the grant refused"
        );
    }
}

impl CacheReader for GuestCacheView {
    fn get(&self, target: &ObjectRef) -> Option<String> {
        if !self.allowed("get", &target.api_version, &target.kind)
            || !self.actor.may_use_namespace(target.namespace.as_deref())
        {
            self.refused(
                "get",
                &target.api_version,
                &target.kind,
                target.namespace.as_deref(),
            );
            return None;
        }
        let namespace = target.namespace.as_deref().unwrap_or("");
        self.registry
            .find(
                &target.api_version,
                &target.kind,
                target.namespace.as_deref(),
            )
            .iter()
            .find_map(|informer| informer.store().get(namespace, &target.name))
            .map(|object| object.json.to_string())
    }

    fn list(&self, query: &ListQuery<'_>) -> Vec<String> {
        if !self.allowed("list", query.api_version, query.kind) {
            self.refused("list", query.api_version, query.kind, query.namespace);
            return Vec::new();
        }
        let selector = match query.label_selector.map(LabelSelector::parse) {
            None => None,
            Some(Ok(selector)) => Some(selector),
            Some(Err(_)) => return Vec::new(),
        };
        if let Some(namespace) = query.namespace
            && !self.actor.may_use_namespace(Some(namespace))
        {
            self.refused("list", query.api_version, query.kind, Some(namespace));
            return Vec::new();
        }
        let mut seen = std::collections::BTreeMap::new();
        for informer in self
            .registry
            .find(query.api_version, query.kind, query.namespace)
        {
            for object in informer.store().list(query.namespace, selector.as_ref()) {
                let visible = object.namespace.is_empty()
                    || self.actor.may_use_namespace(Some(&object.namespace));
                if visible {
                    seen.entry(object.key())
                        .or_insert_with(|| object.json.to_string());
                }
            }
        }
        seen.into_values().collect()
    }
}
