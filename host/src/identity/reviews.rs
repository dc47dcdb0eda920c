//! SubjectAccessReviews for ServiceAccounts, cached briefly.
//!
//! The host asks the API server whether a ServiceAccount may do something
//! it does not do itself under that identity: read from the shared
//! informers' stores, watch a kind, and (before any of a reconcile's
//! actions is performed) each action, so that a reconcile is never half
//! applied because RBAC refused its third action. Answers are cached per
//! identity and request for a short time ([`DEFAULT_REVIEW_TTL`]); the
//! cache is emptied when RBAC objects change ([`AccessReviews::forget_all`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::ServiceAccount;

/// How long an answer is trusted, by default.
pub const DEFAULT_REVIEW_TTL: Duration = Duration::from_secs(10);

/// Past this many cached answers the cache starts again empty (a guest
/// reading many distinct names must not grow the host without bound).
const MAX_CACHED: usize = 50_000;

/// How long a guest call waits for a review it needs and that is not
/// cached; past it the read is refused.
const BLOCKING_WAIT: Duration = Duration::from_secs(5);

/// What is asked: a verb on a resource, as RBAC sees a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verb: String,
    /// The API group; empty for the core group.
    pub group: String,
    /// The resource (plural).
    pub resource: String,
    /// The subresource (`status`, `scale`), if any.
    pub subresource: Option<String>,
    /// The namespace; `None` for all namespaces or a cluster-scoped kind.
    pub namespace: Option<String>,
    /// The object's name, for requests that name one.
    pub name: Option<String>,
}

impl Attributes {
    /// `verb` on `resource` of `group`, in `namespace`.
    pub fn new(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Self {
        Self {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: None,
            namespace: namespace.map(str::to_owned),
            name: None,
        }
    }

    /// The same, on `subresource`.
    #[must_use]
    pub fn subresource(mut self, subresource: Option<&str>) -> Self {
        self.subresource = subresource.map(str::to_owned);
        self
    }

    /// The same, for the object `name`.
    #[must_use]
    pub fn name(mut self, name: Option<&str>) -> Self {
        self.name = name.filter(|name| !name.is_empty()).map(str::to_owned);
        self
    }
}

impl fmt::Display for Attributes {
    /// As `kubectl auth can-i` reads: `list configmaps in namespace team-a`,
    /// `patch deployments.apps/scale web in namespace team-a`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(subresource) = &self.subresource {
            write!(f, "/{subresource}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(namespace) => write!(f, " in namespace {namespace}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

/// A review that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server refused or failed the SubjectAccessReview.
    #[error("the SubjectAccessReview for ServiceAccount {account} failed")]
    Api {
        /// The identity asked about.
        account: ServiceAccount,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// No answer in time (a guest call waits at most 5 s).
    #[error("the SubjectAccessReview for ServiceAccount {account} took longer than {waited:?}")]
    TimedOut {
        /// The identity asked about.
        account: ServiceAccount,
        /// How long the call waited.
        waited: Duration,
    },
}

/// One cached answer.
#[derive(Debug, Clone, Copy)]
struct Answer {
    allowed: bool,
    at: Instant,
}

/// Reviews and their cache, shared by every controller of a host.
#[derive(Clone)]
pub struct AccessReviews {
    client: Client,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<(ServiceAccount, Attributes), Answer>>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    asked: AtomicU64,
    cached: AtomicU64,
}

impl fmt::Debug for AccessReviews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessReviews")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AccessReviews {
    /// Reviews asked through the host's `client` (which needs `create` on
    /// `subjectaccessreviews.authorization.k8s.io`).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            ttl: DEFAULT_REVIEW_TTL,
            cache: Arc::default(),
            counts: Arc::default(),
        }
    }

    /// The same reviews, trusting answers for `ttl`.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long answers are trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Reviews made and answers served from the cache, since the start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.asked.load(Ordering::Relaxed),
            self.counts.cached.load(Ordering::Relaxed),
        )
    }

    /// Forgets every answer: RBAC changed.
    pub fn forget_all(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The cached answer, if it is fresh (for exactly these attributes).
    pub fn cached(&self, account: &ServiceAccount, attributes: &Attributes) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = cache.get(&(account.clone(), attributes.clone()))?;
        (answer.at.elapsed() < self.ttl).then(|| {
            self.counts.cached.fetch_add(1, Ordering::Relaxed);
            answer.allowed
        })
    }

    /// The fresh cached answers that settle a request without asking: the
    /// request allowed for every name, or answered for exactly these
    /// attributes.
    fn settled(&self, account: &ServiceAccount, attributes: &Attributes) -> Option<bool> {
        if attributes.name.is_some() {
            let any = Attributes {
                name: None,
                ..attributes.clone()
            };
            if self.cached(account, &any) == Some(true) {
                return Some(true);
            }
        }
        self.cached(account, attributes)
    }

    /// Whether `account` may do what `attributes` say, from the cache or
    /// asked of the API server.
    ///
    /// # Errors
    ///
    /// [`ReviewError::Api`] when the review itself failed.
    pub async fn allows(
        &self,
        account: &ServiceAccount,
        attributes: &Attributes,
    ) -> Result<bool, ReviewError> {
        if let Some(allowed) = self.settled(account, attributes) {
            return Ok(allowed);
        }
        // What is allowed for every name is allowed for this one: one
        // review per verb, resource and namespace in the common case,
        // rather than one per object.
        if attributes.name.is_some() {
            let any = Attributes {
                name: None,
                ..attributes.clone()
            };
            if Box::pin(self.allows(account, &any)).await? {
                return Ok(true);
            }
        }
        if let Some(allowed) = self.cached(account, attributes) {
            return Ok(allowed);
        }
        let allowed = self.ask(account, attributes).await?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(
            (account.clone(), attributes.clone()),
            Answer {
                allowed,
                at: Instant::now(),
            },
        );
        Ok(allowed)
    }

    /// [`AccessReviews::allows`] for code that cannot wait asynchronously
    /// (a guest's `cache` import, which runs on a blocking thread): a
    /// cached answer at once, else the review runs on the async runtime
    /// while this thread waits for it, at most 5 s.
    ///
    /// # Errors
    ///
    /// As [`AccessReviews::allows`], and [`ReviewError::TimedOut`].
    pub fn allows_blocking(
        &self,
        account: &ServiceAccount,
        attributes: &Attributes,
    ) -> Result<bool, ReviewError> {
        if let Some(allowed) = self.settled(account, attributes) {
            return Ok(allowed);
        }
        let timed_out = || ReviewError::TimedOut {
            account: account.clone(),
            waited: BLOCKING_WAIT,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(timed_out());
        };
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let (reviews, who, what) = (self.clone(), account.clone(), attributes.clone());
        runtime.spawn(async move {
            let _ = sender.send(reviews.allows(&who, &what).await);
        });
        receiver
            .recv_timeout(BLOCKING_WAIT)
            .unwrap_or_else(|_| Err(timed_out()))
    }

    async fn ask(
        &self,
        account: &ServiceAccount,
        attributes: &Attributes,
    ) -> Result<bool, ReviewError> {
        self.counts.asked.fetch_add(1, Ordering::Relaxed);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(account.username()),
                groups: Some(account.groups()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attributes.verb.clone()),
                    group: Some(attributes.group.clone()),
                    resource: Some(attributes.resource.clone()),
                    subresource: attributes.subresource.clone(),
                    namespace: attributes.namespace.clone(),
                    name: attributes.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|source| ReviewError::Api {
                account: account.clone(),
                source: Box::new(source),
            })?;
        Ok(answer.status.is_some_and(|status| status.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_as_kubectl_auth_can_i_does() {
        let list = Attributes::new("list", "", "configmaps", Some("team-a"));
        assert_eq!(list.to_string(), "list configmaps in namespace team-a");
        let scale = Attributes::new("patch", "apps", "deployments", Some("team-a"))
            .subresource(Some("scale"))
            .name(Some("web"));
        assert_eq!(
            scale.to_string(),
            "patch deployments.apps/scale web in namespace team-a"
        );
        let nodes = Attributes::new("watch", "", "nodes", None).name(Some(""));
        assert_eq!(nodes.to_string(), "watch nodes (cluster-wide)");
    }

    /// A client whose every request fails: reviews answered from the cache
    /// never reach it.
    fn unreachable() -> Client {
        let service = tower::service_fn(|_request: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("no API server"))
        });
        Client::new(service, "default")
    }

    #[test]
    fn a_named_read_is_settled_by_the_answer_for_every_name_without_waiting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let reviews = {
            // The client's buffer is spawned on a runtime; the reviews
            // below are asked from outside it.
            let _inside = runtime.enter();
            AccessReviews::new(unreachable())
        };
        let account = ServiceAccount::new("team-a", "floor");
        let every = Attributes::new("get", "apps", "deployments", Some("team-a"));
        reviews.cache.lock().expect("unlocked").insert(
            (account.clone(), every.clone()),
            Answer {
                allowed: true,
                at: Instant::now(),
            },
        );
        // Outside any async runtime, a request that needed asking would
        // fail at once: this one is answered from the cache.
        let named = every.clone().name(Some("web"));
        assert!(reviews.allows_blocking(&account, &named).expect("settled"));
        assert_eq!(reviews.counts().0, 0, "nothing was asked");
        let other = Attributes::new("delete", "apps", "deployments", Some("team-a"));
        assert!(matches!(
            reviews.allows_blocking(&account, &other),
            Err(ReviewError::TimedOut { .. })
        ));
    }

    #[test]
    fn service_accounts_read_from_namespace_slash_name() {
        let account = ServiceAccount::parse("team-a/floor").expect("parses");
        assert_eq!(account.username(), "system:serviceaccount:team-a:floor");
        assert!(
            account
                .groups()
                .contains(&"system:serviceaccounts:team-a".to_owned())
        );
        for bad in ["floor", "Team/floor", "team-a/", "team-a/Floor", "/floor"] {
            assert!(ServiceAccount::parse(bad).is_err(), "{bad}");
        }
    }
}
