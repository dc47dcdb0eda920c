//! What a guest's `cache` import reads: the stores of the shared informers
//! of the kinds it declared (its watches and its `reads`), narrowed to the
//! guest's grant and namespaces and, for a controller that acts as a
//! ServiceAccount, to what RBAC lets that ServiceAccount read (asked with
//! SubjectAccessReviews, cached).

use std::sync::Arc;

use super::ControllerStats;
use crate::actions::{Actor, ObjectRef};
use crate::cluster::{
    Discovery, IndexPaths, Projection, Projections, SharedInformer, split_api_version,
};
use crate::grants::Permission;
use crate::identity::{AccessReviews, Attributes};
use crate::selector::LabelSelector;
use crate::wasm::{CacheReader, IndexQuery, ListQuery};

/// The cache as one guest sees it. Only the resources it declared are
/// read; anything else reads as absent, however many other controllers
/// watch it.
#[derive(Debug, Clone)]
pub struct GuestCacheView {
    pub(crate) actor: Actor,
    pub(crate) discovery: Discovery,
    /// The informers of its watches and its reads.
    pub(crate) declared: Vec<Arc<SharedInformer>>,
    /// Where refused reads are counted.
    pub(crate) stats: Option<Arc<ControllerStats>>,
    /// The access reviews that authorise the reads of a controller that
    /// acts as a ServiceAccount.
    pub(crate) reviews: AccessReviews,
    /// The indexes it declared, kept in the stores of their kinds.
    pub(crate) indexes: Vec<ViewIndex>,
}

/// One of a guest's indexes: the handles under which the stores of its
/// kind keep it, for as long as the guest's version serves.
#[derive(Debug, Clone)]
pub(crate) struct ViewIndex {
    /// The guest's name for it.
    pub(crate) name: String,
    /// `group/version` of the indexed kind.
    pub(crate) api_version: String,
    /// The kind.
    pub(crate) kind: String,
    /// Each informer of the kind the guest declared, and its store's index.
    pub(crate) stores: Vec<(Arc<SharedInformer>, Arc<IndexPaths>)>,
}

impl GuestCacheView {
    /// The declared informers that hold `kind` objects of `namespace`
    /// (`None`: of any namespace); a cluster-wide informer serves every
    /// namespace.
    fn informers<'a>(
        &'a self,
        api_version: &'a str,
        kind: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<SharedInformer>> {
        self.declared.iter().filter(move |informer| {
            let resource = informer.resource();
            resource.api_version == api_version
                && resource.kind == kind
                && (informer.namespace().is_none()
                    || namespace.is_none()
                    || informer.namespace() == namespace)
        })
    }

    /// Whether the guest declared `kind` at all: reads of other kinds are
    /// refused before any other check.
    fn declares(&self, api_version: &str, kind: &str) -> bool {
        self.informers(api_version, kind, None).next().is_some()
    }

    /// Whether the grant allows `verb` on the kind, and the kind is one
    /// the guest's scope can see (a guest scoped to namespaces sees no
    /// cluster-scoped kinds). `false` for kinds discovery has not met.
    fn allowed(
        &self,
        verb: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool {
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
        if !granted || !(resource.namespaced || self.actor.namespaces.is_empty()) {
            return false;
        }
        let Some(account) = &self.actor.service_account else {
            return true;
        };
        // The informers read as the host: ask RBAC whether the
        // ServiceAccount itself may read this.
        let namespace = namespace.filter(|_| resource.namespaced);
        let asked = Attributes::new(verb, group, &resource.plural, namespace).name(name);
        match self.reviews.allows_blocking(account, &asked) {
            Ok(allowed) => allowed,
            // Counted as refused; logged at debug level only, as refusals
            // are, so that a guest cannot flood the log.
            Err(error) => {
                tracing::debug!(guest = %self.actor.name, %error, "a cache read could not be authorised; refused");
                false
            }
        }
    }

    /// Records a read refused because the guest did not declare the kind,
    /// or its grant, its namespaces or RBAC refused it: it reads as
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
            "cache read refused (undeclared kind, or outside the grant, the namespaces or RBAC)"
        );
    }
}

impl CacheReader for GuestCacheView {
    fn get(&self, target: &ObjectRef, seen: &Projections) -> Option<String> {
        if !self.declares(&target.api_version, &target.kind)
            || !self.actor.may_use_namespace(target.namespace.as_deref())
            || !self.allowed(
                "get",
                &target.api_version,
                &target.kind,
                target.namespace.as_deref(),
                Some(&target.name),
            )
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
        self.informers(
            &target.api_version,
            &target.kind,
            target.namespace.as_deref(),
        )
        .find_map(|informer| informer.store().get(namespace, &target.name))
        .map(|object| {
            object
                .seen_through(seen.of(&target.api_version, &target.kind))
                .to_string()
        })
    }

    fn list(&self, query: &ListQuery<'_>, seen: &Projections) -> Vec<String> {
        if !self.may_list(query.api_version, query.kind, query.namespace) {
            return Vec::new();
        }
        let selector = match query.label_selector.map(LabelSelector::parse) {
            None => None,
            Some(Ok(selector)) => Some(selector),
            Some(Err(_)) => return Vec::new(),
        };
        self.visible(
            self.informers(query.api_version, query.kind, query.namespace)
                .flat_map(|informer| informer.store().list(query.namespace, selector.as_ref())),
            seen.of(query.api_version, query.kind),
        )
    }

    fn by_index(&self, query: &IndexQuery<'_>, seen: &Projections) -> Vec<String> {
        let Some(index) = self.indexes.iter().find(|index| index.name == query.index) else {
            tracing::debug!(guest = %self.actor.name, index = query.index, "cache lookup by an undeclared index");
            return Vec::new();
        };
        if !self.may_list(&index.api_version, &index.kind, query.namespace) {
            return Vec::new();
        }
        self.visible(
            index
                .stores
                .iter()
                .filter(|(informer, _)| {
                    informer.namespace().is_none()
                        || query.namespace.is_none()
                        || informer.namespace() == query.namespace
                })
                .flat_map(|(informer, paths)| {
                    informer
                        .store()
                        .by_index(paths, query.value, query.namespace)
                }),
            seen.of(&index.api_version, &index.kind),
        )
    }
}

impl GuestCacheView {
    /// Whether the guest may list `kind` objects in `namespace` (`None`:
    /// in every namespace it may see); a refusal is counted.
    fn may_list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> bool {
        if !self.declares(api_version, kind) {
            self.refused("list", api_version, kind, namespace);
            return false;
        }
        if let Some(namespace) = namespace
            && !self.actor.may_use_namespace(Some(namespace))
        {
            self.refused("list", api_version, kind, Some(namespace));
            return false;
        }
        // A list across namespaces by a guest scoped to some is a list in
        // each of them; by one that is not, a list in all of them.
        let asked: Vec<Option<&str>> = match namespace {
            Some(namespace) => vec![Some(namespace)],
            None if self.actor.namespaces.is_empty() => vec![None],
            None => self
                .actor
                .namespaces
                .iter()
                .map(|ns| Some(ns.as_str()))
                .collect(),
        };
        let refused = asked
            .iter()
            .any(|namespace| !self.allowed("list", api_version, kind, *namespace, None));
        if refused {
            self.refused("list", api_version, kind, namespace);
        }
        !refused
    }

    /// The JSON of the objects the guest's namespaces let it see, each
    /// once (informers of several namespaces may overlap), sorted by
    /// namespace and name, narrowed to `projection`.
    fn visible(
        &self,
        objects: impl Iterator<Item = Arc<crate::cluster::StoredObject>>,
        projection: Option<&Arc<Projection>>,
    ) -> Vec<String> {
        let mut seen = std::collections::BTreeMap::new();
        for object in objects {
            let visible = object.namespace.is_empty()
                || self.actor.may_use_namespace(Some(&object.namespace));
            if visible {
                seen.entry(object.key())
                    .or_insert_with(|| object.seen_through(projection).to_string());
            }
        }
        seen.into_values().collect()
    }
}
