//! The host's side of the `cache` and `log` imports.

use std::sync::Arc;

use super::bindings::paddock::controller::{cache, log, types};
use super::guest::HostState;
use crate::actions::ObjectRef;
use crate::cluster::Projections;

/// What a guest's `cache` import reads: the host's informer stores, already
/// narrowed to what the guest may see. The runtime implements it over its
/// shared stores; `paddock test` over a folder of YAML files.
///
/// Every answer is the objects' JSON as the guest sees it: narrowed to its
/// projection of their kind in `seen` (see [`Projections`]); pass
/// [`Projections::none`] for whole objects.
pub trait CacheReader: Send + Sync {
    /// The JSON of one object, if it exists and the guest may see it.
    fn get(&self, target: &ObjectRef, seen: &Projections) -> Option<String>;

    /// The JSON of every visible object of one kind, sorted by namespace
    /// and name, optionally narrowed to a namespace and a label selector.
    /// An invalid selector matches nothing.
    fn list(&self, query: &ListQuery<'_>, seen: &Projections) -> Vec<String>;

    /// The JSON of every visible object whose values for one of the
    /// guest's indexes include a value, sorted by namespace and name,
    /// optionally narrowed to a namespace. An index the guest did not
    /// declare finds nothing.
    fn by_index(&self, query: &IndexQuery<'_>, seen: &Projections) -> Vec<String>;
}

/// The arguments of `cache.list`.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    /// `group/version`.
    pub api_version: &'a str,
    /// The kind.
    pub kind: &'a str,
    /// Only this namespace.
    pub namespace: Option<&'a str>,
    /// Only objects matching this label selector.
    pub label_selector: Option<&'a str>,
}

/// The arguments of `cache.by-index`.
#[derive(Debug, Clone, Copy)]
pub struct IndexQuery<'a> {
    /// The index's name.
    pub index: &'a str,
    /// The value looked up.
    pub value: &'a str,
    /// Only this namespace.
    pub namespace: Option<&'a str>,
}

/// A cache with nothing in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyCache;

impl CacheReader for EmptyCache {
    fn get(&self, _target: &ObjectRef, _seen: &Projections) -> Option<String> {
        None
    }

    fn list(&self, _query: &ListQuery<'_>, _seen: &Projections) -> Vec<String> {
        Vec::new()
    }

    fn by_index(&self, _query: &IndexQuery<'_>, _seen: &Projections) -> Vec<String> {
        Vec::new()
    }
}

/// The cache a call reads, shared cheaply between calls.
pub type SharedCache = Arc<dyn CacheReader>;

impl types::Host for HostState {}

impl cache::Host for HostState {
    fn get(&mut self, target: types::ObjectRef) -> Option<String> {
        let target = ObjectRef {
            api_version: target.api_version,
            kind: target.kind,
            namespace: target.namespace,
            name: target.name,
        };
        self.cache.get(&target, &self.projections)
    }

    fn list(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Vec<String> {
        self.cache.list(
            &ListQuery {
                api_version: &api_version,
                kind: &kind,
                namespace: namespace.as_deref(),
                label_selector: label_selector.as_deref(),
            },
            &self.projections,
        )
    }

    fn by_index(&mut self, index: String, value: String, namespace: Option<String>) -> Vec<String> {
        self.cache.by_index(
            &IndexQuery {
                index: &index,
                value: &value,
                namespace: namespace.as_deref(),
            },
            &self.projections,
        )
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let Some(message) = self.log.admit(&mut self.logged, &message, &self.hits) else {
            return;
        };
        let guest = &*self.guest;
        match level {
            log::Level::Trace => tracing::trace!(guest, "{message}"),
            log::Level::Debug => tracing::debug!(guest, "{message}"),
            log::Level::Info => tracing::info!(guest, "{message}"),
            log::Level::Warn => tracing::warn!(guest, "{message}"),
            log::Level::Error => tracing::error!(guest, "{message}"),
        }
    }
}
