//! Controllers: routing informer events to each guest's work queue, and the
//! workers that reconcile a key by calling the guest and executing its
//! actions.

mod cache_view;
mod finalizer;
mod routing;
mod shadow;
mod stats;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cache_view::GuestCacheView;
use cache_view::ViewIndex;
pub use shadow::{SAMPLES, Sample, Shadow, ShadowReport};
pub use stats::{ControllerStats, GUEST_ERROR_KINDS, LATENCY_BUCKETS};

use crate::actions::{ActionExecutor, Actor};
use crate::cluster::{
    ClusterError, Discovery, IndexPaths, InformerRegistry, ObjectKey, Resource, SharedInformer,
    Slice, StoredObject,
};
use crate::grants::{Denied, Grant, Permission};
use crate::identity::{Attributes, Identities, ReviewError, ServiceAccount};
use crate::queue::{QueueConfig, Workqueue};
use crate::replication::Fence;
use crate::wasm::slots::{ExecutionSlots, Flow};
use crate::wasm::{Guest, Relation, Watch};

/// One guest to run, as the runtime needs it.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The loaded guest.
    pub guest: Guest,
    /// Its grant.
    pub grant: Grant,
    /// Its namespaces; empty for all.
    pub namespaces: Vec<String>,
    /// The most reconciles at once.
    pub concurrency: usize,
    /// Queue settings.
    pub queue: QueueConfig,
    /// Re-queue every primary object this often even without changes
    /// (controller-runtime's sync period); `None` for never.
    pub resync: Option<Duration>,
    /// The tenant's namespace when a tenant declared it (a
    /// `WasmController`): its guest calls share that tenant's execution
    /// slots, and it may not write Paddock's own resources. `None` for a
    /// controller the operator declared.
    pub tenant: Option<String>,
    /// The ServiceAccount it acts as: every API call made for it
    /// impersonates it, and what the host does for it (cache reads, its
    /// watches) is authorised for it by SubjectAccessReview. `None`: it
    /// acts as the host.
    pub service_account: Option<ServiceAccount>,
    /// What else is done with its calls: a recording, a shadow run.
    pub observe: Observe,
}

/// What is done with a controller's calls besides acting on them.
#[derive(Debug, Clone, Default)]
pub struct Observe {
    /// Records every call's input and result.
    pub record: Option<Arc<crate::record::Recorder>>,
    /// A candidate version asked every question the live one is, and
    /// never acted upon.
    pub shadow: Option<Arc<Shadow>>,
}

impl Observe {
    /// Whether anything is done besides acting.
    pub(crate) fn any(&self) -> bool {
        self.record.is_some() || self.shadow.is_some()
    }
}

/// A controller that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A shadow candidate cannot run beside the live version.
    #[error("controller `{controller}`: the shadow candidate {problem}")]
    Shadow {
        /// The controller.
        controller: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A watched kind is not served by the cluster.
    #[error("controller `{controller}` watches a kind the cluster does not serve")]
    Discovery {
        /// The controller.
        controller: String,
        /// What discovery said.
        #[source]
        source: ClusterError,
    },
    /// Discovery of a watched kind failed for another reason than the kind
    /// not being served: the credentials, TLS, the connection.
    #[error("controller `{controller}` cannot resolve its watches")]
    Cluster {
        /// The controller.
        controller: String,
        /// What failed.
        #[source]
        source: ClusterError,
    },
    /// An informer of its watches did not list in time.
    #[error("controller `{controller}`: the informer of {informer} did not list within {waited:?}")]
    NotSynced {
        /// The controller.
        controller: String,
        /// The informer, e.g. `configmaps/v1 in all namespaces`.
        informer: String,
        /// How long the start waited.
        waited: Duration,
        /// Why its latest list failed, if it did.
        #[source]
        source: Option<Arc<ClusterError>>,
    },
    /// The guest's watches exceed its grant.
    #[error("controller `{controller}` watches {kind} ({api_version}) beyond its grant")]
    Grant {
        /// The controller.
        controller: String,
        /// The watched apiVersion.
        api_version: String,
        /// The watched kind.
        kind: String,
        /// The missing permission.
        #[source]
        source: Denied,
    },
    /// The guest reads a resource (`reads`) its grant allows neither to
    /// get nor to list.
    #[error(
        "controller `{controller}` reads {kind} ({api_version}) beyond its grant, which allows \
         neither `get` nor `list` on it"
    )]
    ReadGrant {
        /// The controller.
        controller: String,
        /// The read apiVersion.
        api_version: String,
        /// The read kind.
        kind: String,
        /// The missing permission (`list`).
        #[source]
        source: Denied,
    },
    /// The guest finalizes its primary objects but may not patch them.
    #[error(
        "controller `{controller}` finalizes its {kind} objects ({api_version}), which needs \
         `patch` on them beyond its grant"
    )]
    Finalizer {
        /// The controller.
        controller: String,
        /// The primary apiVersion.
        api_version: String,
        /// The primary kind.
        kind: String,
        /// The missing permission.
        #[source]
        source: Denied,
    },
    /// The queue settings are invalid.
    #[error("controller `{controller}` has invalid queue settings")]
    Queue {
        /// The controller.
        controller: String,
        /// Which setting.
        #[source]
        source: crate::queue::QueueConfigError,
    },
    /// The controller's ServiceAccount may not do what its watches (or its
    /// finalizing) need: RBAC, asked with a SubjectAccessReview.
    #[error(
        "controller `{controller}` acts as ServiceAccount {account}, which may not {missing}; \
         bind it to a Role or ClusterRole that allows it"
    )]
    ServiceAccountLacksPermission {
        /// The controller.
        controller: String,
        /// Its ServiceAccount.
        account: ServiceAccount,
        /// The missing permission, as `kubectl auth can-i` words it.
        missing: Box<Attributes>,
    },
    /// The access review a start needs could not be made.
    #[error("controller `{controller}` could not check its ServiceAccount's rights")]
    Review {
        /// The controller.
        controller: String,
        /// What failed.
        #[source]
        source: ReviewError,
    },
    /// A watch does not fit the controller's namespaces.
    #[error("controller `{controller}`: {problem}")]
    Scope {
        /// The controller.
        controller: String,
        /// What is wrong.
        problem: String,
    },
}

/// Everything the controllers of one host share: the client, discovery,
/// the informers and the executor.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) discovery: Discovery,
    pub(crate) registry: InformerRegistry,
    pub(crate) executor: ActionExecutor,
    pub(crate) slots: ExecutionSlots,
    sync_timeout: Duration,
    /// Whether this host may work now (always, unless it is in a ring).
    pub(crate) fence: Fence,
    /// Set once RBAC objects are watched for the access reviews.
    rbac_watched: Arc<tokio::sync::OnceCell<()>>,
}

/// How long a start or a reload waits, by default, for the informers of
/// its watches to list.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// A runtime talking to the cluster through `client`, running guest
    /// calls in a default pool of execution slots.
    pub fn new(client: Client) -> Self {
        Self::with_slots(client, ExecutionSlots::default())
    }

    /// A runtime whose guest calls run in `slots`.
    pub fn with_slots(client: Client, slots: ExecutionSlots) -> Self {
        let discovery = Discovery::new(client.clone());
        let registry = InformerRegistry::new(client.clone()).with_discovery(discovery.clone());
        let executor =
            ActionExecutor::new(Identities::new(client), discovery.clone(), registry.clone());
        Self {
            registry,
            executor,
            discovery,
            slots,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
            fence: Fence::open(),
            rbac_watched: Arc::default(),
        }
    }

    /// How long a start or a reload waits for the informers of its watches
    /// to list (default [`DEFAULT_SYNC_TIMEOUT`], 60 s) before it fails
    /// with [`StartError::NotSynced`] and the reason of the latest failed
    /// list.
    #[must_use]
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// How long the answers of access reviews are trusted (default
    /// [`crate::identity::DEFAULT_REVIEW_TTL`], 10 s): a Role granted to or
    /// taken from a controller's ServiceAccount takes effect within it.
    #[must_use]
    pub fn with_review_ttl(mut self, ttl: Duration) -> Self {
        let identities = self.executor.identities().clone().with_review_ttl(ttl);
        self.executor =
            ActionExecutor::new(identities, self.discovery.clone(), self.registry.clone())
                .with_fence(self.fence.clone());
        self
    }

    /// Lets the workers take keys, and the executor write, only while
    /// `fence` allows it: a host of a ring works only while it holds the
    /// ring's Lease. Default: always.
    #[must_use]
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.executor = self.executor.with_fence(fence.clone());
        self.fence = fence;
        self
    }

    /// Holds, in the informers of primary and owned watches, only the
    /// objects of this host's share of the keys (a member of a sharded
    /// ring; the fence gives the share). Call it after
    /// [`Runtime::with_fence`], before any controller starts.
    #[must_use]
    pub fn with_share_only_informers(mut self) -> Self {
        self.registry = self.registry.with_shards(self.fence.shards());
        self
    }

    /// The fence the workers and the executor obey.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The identities controllers act as, and their access reviews.
    pub fn identities(&self) -> &Identities {
        self.executor.identities()
    }

    /// The pool of execution slots every guest call of this runtime takes
    /// one of.
    pub fn slots(&self) -> &ExecutionSlots {
        &self.slots
    }

    /// The shared informers.
    pub fn informers(&self) -> &InformerRegistry {
        &self.registry
    }

    /// Discovery, shared by every controller.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Starts one controller like [`Runtime::start`], but when a watched
    /// kind is not served yet (a CRD not created yet), waits for it,
    /// asking discovery again with backoff up to 10 s. Other errors return
    /// at once.
    pub async fn start_when_served(
        &self,
        config: ControllerConfig,
    ) -> Result<RunningController, StartError> {
        crate::retry::retry_while(
            || self.start(config.clone()),
            |error| matches!(error, StartError::Discovery { .. }),
            |error, delay| {
                tracing::info!(%error, ?delay, "waiting for a watched kind to be served");
            },
        )
        .await
    }

    /// Starts one controller: resolves and checks its watches, subscribes
    /// to the shared informers, waits for them to list (for at most the
    /// sync timeout, see [`Runtime::with_sync_timeout`]), queues every
    /// primary object and starts the workers.
    pub async fn start(&self, config: ControllerConfig) -> Result<RunningController, StartError> {
        let name = config.guest.name().to_owned();
        let stats = Arc::new(ControllerStats::default());
        let generation = Arc::new(self.prepare(&name, &config, &stats).await?);
        let queue = Workqueue::new(config.queue.clone()).map_err(|source| StartError::Queue {
            controller: name.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            name: name.clone(),
            current: RwLock::new(Arc::clone(&generation)),
            maps: Workqueue::new(config.queue.clone()).map_err(|source| StartError::Queue {
                controller: name.clone(),
                source,
            })?,
            map_tombstones: Mutex::default(),
            queue,
            tombstones: Mutex::default(),
            in_flight: Mutex::default(),
            stats,
            executor: self.executor.clone(),
            fence: self.fence.clone(),
            slots: self.slots.clone(),
            flow: Flow::of(&name, config.tenant.as_deref()),
            last_error: Mutex::default(),
            reloads: AtomicU64::new(0),
            finalized: Mutex::default(),
        });
        // Aborted if this future is dropped before the controller exists.
        let routers = Routers(spawn_routers(&shared, &generation));
        generation.wait_synced(&name, self.sync_timeout).await?;
        routing::queue_all_primaries(&shared, &generation);
        let (worker_target, _) = watch::channel(config.concurrency.max(1));
        let mut controller = RunningController {
            shared,
            runtime: self.clone(),
            routers: routers.keep(),
            resync: None,
            workers: Vec::new(),
            worker_target,
        };
        controller.set_resync(config.resync);
        controller.set_concurrency(config.concurrency);
        tracing::info!(controller = %name, digest = %config.guest.digest(), "controller started");
        Ok(controller)
    }

    /// Resolves and checks a configuration's watches and takes their
    /// informers: one version of a controller, not yet serving.
    async fn prepare(
        &self,
        name: &str,
        config: &ControllerConfig,
        stats: &Arc<ControllerStats>,
    ) -> Result<Generation, StartError> {
        let name = name.to_owned();
        config
            .queue
            .validate()
            .map_err(|source| StartError::Queue {
                controller: name.clone(),
                source,
            })?;
        let actor = Actor {
            name: name.clone(),
            grant: config.grant.clone(),
            namespaces: config.namespaces.clone(),
            tenant: config.tenant.clone(),
            service_account: config.service_account.clone(),
        };
        let mut watched = Vec::new();
        for watch in &config.guest.info().watches {
            let resource = self.resolve(&name, &watch.api_version, &watch.kind).await?;
            check_watch(&name, &actor, watch, &resource)?;
            let scopes = scopes(
                &name,
                &actor,
                "watches",
                watch.namespace.as_ref(),
                &resource,
            )?;
            self.review_watch(&name, &actor, &resource, &scopes).await?;
            // On a member of a sharded ring, the objects of other members'
            // keys are not needed to reconcile this member's: a guest that
            // must see every object of a kind declares it under `reads`.
            let slice = match watch.relation {
                Relation::Primary => Slice::Share,
                Relation::Owned => Slice::Children,
                Relation::Mapped => Slice::All,
            };
            let informers = scopes
                .iter()
                .map(|scope| {
                    self.registry
                        .informer_of(&resource, scope.as_deref(), slice)
                })
                .collect();
            watched.push(Watched {
                watch: watch.clone(),
                resource,
                informers,
                selector: match &watch.label_selector {
                    Some(text) => Some(crate::selector::LabelSelector::parse(text).map_err(
                        |error| StartError::Scope {
                            controller: name.clone(),
                            problem: error.to_string(),
                        },
                    )?),
                    None => None,
                },
            });
        }
        let mut reads: Vec<Arc<SharedInformer>> = Vec::new();
        for read in &config.guest.info().reads {
            let resource = self.resolve(&name, &read.api_version, &read.kind).await?;
            check_read(&name, &actor, read, &resource)?;
            let scopes = scopes(&name, &actor, "reads", read.namespace.as_ref(), &resource)?;
            // The informers list for the guest: its ServiceAccount must be
            // allowed to list what they hold.
            self.review(&name, &actor, &resource, &scopes, &["list"])
                .await?;
            reads.extend(
                scopes
                    .iter()
                    .map(|scope| self.registry.informer(&resource, scope.as_deref())),
            );
        }
        let finalizer = if config.guest.info().finalizes {
            let primary = watched
                .iter()
                .find(|watched| watched.watch.relation == Relation::Primary)
                .map(|watched| Arc::clone(&watched.resource));
            if let Some(resource) = primary {
                check_finalizing(&name, &actor, &resource)?;
                let scopes = watched
                    .iter()
                    .find(|watched| watched.watch.relation == Relation::Primary)
                    .map(|watched| {
                        watched
                            .informers
                            .iter()
                            .map(|informer| informer.namespace().map(str::to_owned))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                self.review(&name, &actor, &resource, &scopes, &["patch"])
                    .await?;
            }
            Some(finalizer::name_for(&name))
        } else {
            None
        };
        if let Some(shadow) = &config.observe.shadow {
            self.check_shadow(&name, &actor, &config.guest, shadow)
                .await?;
        }
        let informers: Vec<Arc<SharedInformer>> = watched
            .iter()
            .flat_map(|watched| watched.informers.iter().cloned())
            .chain(reads.iter().cloned())
            .collect();
        let indexes = keep_indexes(&name, config, &informers)?;
        Ok(Generation {
            observe: config.observe.clone(),
            finalizer,
            guest: config.guest.clone(),
            cache: Arc::new(GuestCacheView {
                actor: actor.clone(),
                discovery: self.discovery.clone(),
                declared: informers,
                stats: Some(Arc::clone(stats)),
                reviews: self.executor.identities().reviews().clone(),
                indexes,
            }),
            actor,
            watched,
            reads,
        })
    }

    /// Checks that a shadow candidate may run beside `live`: the same
    /// primary kind, and every kind it declares within the grant (it reads
    /// only through the live version's cache view, which the grant and the
    /// live version's declarations already narrow).
    async fn check_shadow(
        &self,
        name: &str,
        actor: &Actor,
        live: &Guest,
        shadow: &Shadow,
    ) -> Result<(), StartError> {
        let candidate = shadow.guest().info();
        let primary = |info: &crate::wasm::Info| {
            info.watches
                .iter()
                .find(|watch| watch.relation == Relation::Primary)
                .map(|watch| (watch.api_version.clone(), watch.kind.clone()))
        };
        if primary(candidate) != primary(live.info()) {
            let (version, kind) = primary(candidate).unwrap_or_default();
            let (live_version, live_kind) = primary(live.info()).unwrap_or_default();
            return Err(StartError::Shadow {
                controller: name.to_owned(),
                problem: format!(
                    "reconciles {kind} of {version}, the live version {live_kind} of \
                     {live_version}: a candidate is compared on the live version's objects, \
                     so its primary watch must be the same"
                ),
            });
        }
        for watch in &candidate.watches {
            let resource = self.resolve(name, &watch.api_version, &watch.kind).await?;
            check_watch(name, actor, watch, &resource)?;
        }
        for read in &candidate.reads {
            let resource = self.resolve(name, &read.api_version, &read.kind).await?;
            check_read(name, actor, read, &resource)?;
        }
        shadow.set_watches_differ(
            candidate.watches != live.info().watches
                || candidate.reads != live.info().reads
                || candidate.indexes != live.info().indexes,
        );
        Ok(())
    }

    /// Resolves a declared kind with discovery.
    async fn resolve(
        &self,
        name: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<Arc<Resource>, StartError> {
        self.discovery
            .resolve(api_version, kind)
            .await
            .map_err(|source| match source {
                ClusterError::UnknownKind { .. } => StartError::Discovery {
                    controller: name.to_owned(),
                    source,
                },
                source => StartError::Cluster {
                    controller: name.to_owned(),
                    source,
                },
            })
    }
}

impl Runtime {
    /// Asks whether the controller's ServiceAccount may list, watch and
    /// get `resource` in each of `scopes`: its informers run as the host,
    /// so the API server never sees the ServiceAccount ask.
    async fn review_watch(
        &self,
        name: &str,
        actor: &Actor,
        resource: &Resource,
        scopes: &[Option<String>],
    ) -> Result<(), StartError> {
        self.review(name, actor, resource, scopes, &["list", "watch", "get"])
            .await
    }

    /// Watches Roles, ClusterRoles and their bindings (once per runtime,
    /// through the shared informers) and forgets every cached access
    /// review when one changes, so that RBAC changes take effect at once
    /// rather than after the reviews' expiry. A host that may not list
    /// them still works: answers then last their expiry.
    async fn watch_rbac(&self) {
        self.rbac_watched
            .get_or_init(|| async {
                const RBAC: &str = "rbac.authorization.k8s.io/v1";
                let reviews = self.executor.identities().reviews().clone();
                for kind in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"] {
                    let resource = match self.discovery.resolve(RBAC, kind).await {
                        Ok(resource) => resource,
                        Err(error) => {
                            tracing::warn!(kind, %error, "RBAC changes are not watched; access reviews last their expiry");
                            continue;
                        }
                    };
                    // An informer the host may not run would keep it from
                    // being ready; without it answers last their expiry.
                    if !self.host_may(&["list", "watch"], "rbac.authorization.k8s.io", &resource.plural).await {
                        tracing::warn!(kind, "the host may not list and watch it: RBAC changes take effect as access reviews expire");
                        continue;
                    }
                    let informer = self.registry.informer(&resource, None);
                    let mut events = informer.subscribe();
                    let reviews = reviews.clone();
                    tokio::spawn(async move {
                        let _informer = informer;
                        loop {
                            match events.recv().await {
                                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    reviews.forget_all();
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    });
                }
            })
            .await;
    }

    /// Whether the host itself may do each of `verbs` on `resource`
    /// cluster-wide (SelfSubjectAccessReview); `false` when it cannot tell.
    async fn host_may(&self, verbs: &[&str], group: &str, resource: &str) -> bool {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let api: kube::Api<SelfSubjectAccessReview> =
            kube::Api::all(self.executor.client().clone());
        for verb in verbs {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some((*verb).to_owned()),
                        group: Some(group.to_owned()),
                        resource: Some(resource.to_owned()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let allowed = api
                .create(&kube::api::PostParams::default(), &review)
                .await
                .ok()
                .and_then(|answer| answer.status)
                .is_some_and(|status| status.allowed);
            if !allowed {
                return false;
            }
        }
        true
    }

    async fn review(
        &self,
        name: &str,
        actor: &Actor,
        resource: &Resource,
        scopes: &[Option<String>],
        verbs: &[&str],
    ) -> Result<(), StartError> {
        let Some(account) = &actor.service_account else {
            return Ok(());
        };
        self.watch_rbac().await;
        let (group, _) = crate::cluster::split_api_version(&resource.api_version);
        let reviews = self.executor.identities().reviews();
        for scope in scopes {
            for verb in verbs {
                let asked = Attributes::new(verb, group, &resource.plural, scope.as_deref());
                let allowed =
                    reviews
                        .allows(account, &asked)
                        .await
                        .map_err(|source| StartError::Review {
                            controller: name.to_owned(),
                            source,
                        })?;
                if !allowed {
                    return Err(StartError::ServiceAccountLacksPermission {
                        controller: name.to_owned(),
                        account: account.clone(),
                        missing: Box::new(asked),
                    });
                }
            }
        }
        Ok(())
    }
}

/// One watched resource of a controller.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) watch: Watch,
    pub(crate) resource: Arc<Resource>,
    pub(crate) informers: Vec<Arc<SharedInformer>>,
    pub(crate) selector: Option<crate::selector::LabelSelector>,
}

/// One loaded version of a controller: its guest, its grant and its
/// watches. A reload replaces it whole; calls in flight keep the one they
/// started with.
pub(crate) struct Generation {
    pub(crate) guest: Guest,
    pub(crate) actor: Actor,
    pub(crate) watched: Vec<Watched>,
    pub(crate) cache: Arc<GuestCacheView>,
    /// The informers of the resources it reads without watching them
    /// (`reads`): held so that they keep running, routed nowhere.
    pub(crate) reads: Vec<Arc<SharedInformer>>,
    /// The finalizer the controller holds its primary objects with, when
    /// its guest finalizes them.
    pub(crate) finalizer: Option<String>,
    /// Its recording and shadow run.
    pub(crate) observe: Observe,
}

impl Generation {
    /// The primary watch (there is exactly one).
    pub(crate) fn primary(&self) -> &Watched {
        self.watched
            .iter()
            .find(|watched| watched.watch.relation == Relation::Primary)
            .unwrap_or(&self.watched[0])
    }

    /// Whether the informers of its watches hold everything a reconcile of
    /// `key` reads: on a member of a sharded ring whose share just grew,
    /// not until they have listed the objects it gained.
    pub(crate) fn covers(&self, key: &ObjectKey) -> bool {
        self.watched
            .iter()
            .flat_map(|watched| &watched.informers)
            .all(|informer| informer.covers(&key.0, &key.1))
    }

    /// Waits for every informer to list, for at most `timeout`.
    async fn wait_synced(&self, controller: &str, timeout: Duration) -> Result<(), StartError> {
        let informers = || {
            self.watched
                .iter()
                .flat_map(|watched| &watched.informers)
                .chain(&self.reads)
        };
        let all = futures::future::join_all(informers().map(|informer| informer.wait_synced()));
        if tokio::time::timeout(timeout, all).await.is_ok() {
            return Ok(());
        }
        // Name the first informer that has not listed, with why; one that
        // failed says more than one still waiting.
        let unsynced: Vec<&Arc<SharedInformer>> = informers()
            .filter(|informer| !informer.is_synced())
            .collect();
        let informer = unsynced
            .iter()
            .find(|informer| informer.health().failure.is_some())
            .or(unsynced.first());
        Err(StartError::NotSynced {
            controller: controller.to_owned(),
            informer: informer.map_or_else(String::new, |informer| informer.describe()),
            waited: timeout,
            source: informer.and_then(|informer| informer.health().failure),
        })
    }
}

/// The state the routers and workers of one controller share, across
/// reloads.
pub(crate) struct Shared {
    pub(crate) name: String,
    current: RwLock<Arc<Generation>>,
    pub(crate) queue: Workqueue<ObjectKey>,
    /// Last known states of deleted primary objects not yet reconciled.
    pub(crate) tombstones: Mutex<HashMap<ObjectKey, Arc<StoredObject>>>,
    /// Changed objects of mapped watches waiting for the guest's `map`,
    /// with the same backoff rules as the primary keys.
    pub(crate) maps: Workqueue<routing::MapKey>,
    /// Last known states of deleted mapped objects not yet mapped.
    pub(crate) map_tombstones: Mutex<HashMap<routing::MapKey, Arc<StoredObject>>>,
    /// Keys being reconciled now: a safety net under the queue's own rule.
    pub(crate) in_flight: Mutex<std::collections::HashSet<ObjectKey>>,
    pub(crate) stats: Arc<ControllerStats>,
    pub(crate) executor: ActionExecutor,
    /// Whether this host may work now.
    pub(crate) fence: Fence,
    /// Where its guest calls run, and as which flow.
    pub(crate) slots: ExecutionSlots,
    pub(crate) flow: Flow,
    /// The latest failure, for `paddock status`.
    pub(crate) last_error: Mutex<Option<LastError>>,
    /// Versions swapped in since the start.
    reloads: AtomicU64,
    /// Uids of objects whose finalizer this controller removed after its
    /// guest finalized them: their deletion needs no `deleted` reconcile.
    pub(crate) finalized: Mutex<std::collections::HashSet<String>>,
}

impl Shared {
    /// The version serving now.
    pub(crate) fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Drops the tombstone of a deleted primary object.
    pub(crate) fn forget_tombstone(&self, key: &ObjectKey) {
        self.tombstones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Remembers that the guest finalized the object of `uid`. Bounded: past
    /// the bound the memory is cleared, and a deletion whose event comes
    /// later is delivered as `deleted` (one reconcile too many, never one
    /// too few).
    pub(crate) fn remember_finalized(&self, uid: String) {
        const REMEMBERED: usize = 65_536;
        let mut finalized = self
            .finalized
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if finalized.len() >= REMEMBERED {
            finalized.clear();
        }
        finalized.insert(uid);
    }

    /// Records a failure for `paddock status`.
    pub(crate) fn record_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(LastError {
            at: jiff::Timestamp::now(),
            message,
        });
    }
}

/// A failure, with when it happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastError {
    /// When.
    pub at: jiff::Timestamp,
    /// What.
    pub message: String,
}

/// A running controller. Dropping it stops its routers and workers and
/// releases its informers.
#[derive(Debug)]
pub struct RunningController {
    shared: Arc<Shared>,
    runtime: Runtime,
    /// The routers of the version serving now.
    routers: Vec<JoinHandle<()>>,
    resync: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// How many workers should run; worker `i` stops when it is `<= i`.
    worker_target: watch::Sender<usize>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A cheap, clonable view of a running controller, for the operations
/// endpoint.
#[derive(Debug, Clone)]
pub struct ControllerHandle {
    shared: Arc<Shared>,
}

impl ControllerHandle {
    /// Queues every primary object the controller's informers hold, as a
    /// resync does: for a host that begins working, whose queue may lack
    /// what another host was doing.
    pub fn resync(&self) {
        routing::queue_all_primaries(&self.shared, &self.shared.current());
    }

    /// The keys of the primary objects its informers hold.
    pub fn primary_keys(&self) -> Vec<ObjectKey> {
        let generation = self.shared.current();
        let primary = generation.primary();
        primary
            .informers
            .iter()
            .flat_map(|informer| informer.store().list(None, primary.selector.as_ref()))
            .map(|object| object.key())
            .collect()
    }

    /// Whether its primary informers hold only this host's share, so that
    /// [`ControllerHandle::primary_keys`] cannot tell other members'.
    pub fn holds_only_its_share(&self) -> bool {
        let generation = self.shared.current();
        generation
            .primary()
            .informers
            .iter()
            .any(|informer| informer.slice() != Slice::All)
    }

    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The digest of the module serving now.
    pub fn digest(&self) -> String {
        self.shared.current().guest.digest().to_owned()
    }

    /// Who the version serving now acts as: `serviceaccount ns/name` or
    /// `host`.
    pub fn identity(&self) -> String {
        self.shared.current().actor.identity()
    }

    /// Its counters.
    pub fn stats(&self) -> &ControllerStats {
        &self.shared.stats
    }

    /// Its queue's counters.
    pub fn queue_metrics(&self) -> crate::queue::QueueMetrics {
        self.shared.queue.metrics()
    }

    /// The latest failed reconcile or action.
    pub fn last_error(&self) -> Option<LastError> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Versions swapped in since the start.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// How often the version serving now hit the bounds on what it
    /// answers and logs.
    pub fn limit_hits(&self) -> crate::wasm::LimitHitCounts {
        self.shared.current().guest.limit_hits()
    }

    /// The flow its guest calls run as.
    pub fn flow(&self) -> &Flow {
        &self.shared.flow
    }

    /// What the version serving now's shadow candidate found, if it has
    /// one.
    pub fn shadow(&self) -> Option<ShadowReport> {
        self.shared
            .current()
            .observe
            .shadow
            .as_ref()
            .map(|shadow| shadow.report())
    }

    /// Whether this host works on the keys of `namespace/name` now: it
    /// is alone, the ring's leader, or in a sharded ring their owner.
    pub fn works_on(&self, namespace: &str, name: &str) -> bool {
        self.shared.fence.allows(namespace, name)
    }

    /// The shadow candidate of the version serving now.
    pub fn shadow_candidate(&self) -> Option<Arc<Shadow>> {
        self.shared.current().observe.shadow.clone()
    }

    /// The recorder of the version serving now.
    pub fn recorder(&self) -> Option<Arc<crate::record::Recorder>> {
        self.shared.current().observe.record.clone()
    }
}

impl RunningController {
    /// A clonable view for metrics.
    pub fn handle(&self) -> ControllerHandle {
        ControllerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The controller's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The guest serving now.
    pub fn guest(&self) -> Guest {
        self.shared.current().guest.clone()
    }

    /// The cache as the guest serving now reads it: the kinds it declared,
    /// narrowed to its grant, its namespaces and its identity's RBAC.
    pub fn cache(&self) -> crate::wasm::SharedCache {
        self.shared.current().cache.clone()
    }

    /// Its counters.
    pub fn stats(&self) -> &ControllerStats {
        &self.shared.stats
    }

    /// Keys waiting in its queue.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue.len()
    }

    /// Its queue's counters.
    pub fn queue_metrics(&self) -> crate::queue::QueueMetrics {
        self.shared.queue.metrics()
    }

    /// Whether nothing is queued, waiting or running, to reconcile or to map.
    pub fn is_idle(&self) -> bool {
        [self.shared.queue.metrics(), self.shared.maps.metrics()]
            .iter()
            .all(|metrics| metrics.depth == 0 && metrics.in_flight == 0 && metrics.waiting == 0)
    }

    /// Swaps in a new version: a new guest, grant, namespaces, limits or
    /// queue settings. The new watches are resolved, checked against the
    /// grant and listed first; any failure leaves the old version serving
    /// and is returned. Then the swap is atomic: reconciles in flight finish
    /// on the old version, later ones use the new one; the queue, its
    /// backoff state and its counters are kept; informers no version needs
    /// any more are released; and every primary object is queued once so
    /// the new logic applies everywhere.
    ///
    /// # Errors
    ///
    /// [`StartError`] when the new version cannot serve; nothing changed.
    pub async fn reload(&mut self, config: ControllerConfig) -> Result<(), StartError> {
        let name = self.shared.name.clone();
        let generation = Arc::new(
            self.runtime
                .prepare(&name, &config, &self.shared.stats)
                .await?,
        );
        // Aborted on any early return, and if this future is dropped
        // before the swap (a newer version overtook this one).
        let routers = Routers(spawn_routers(&self.shared, &generation));
        generation
            .wait_synced(&name, self.runtime.sync_timeout)
            .await?;
        for reconfigured in [
            self.shared.queue.reconfigure(&config.queue),
            self.shared.maps.reconfigure(&config.queue),
        ] {
            reconfigured.map_err(|source| StartError::Queue {
                controller: name.clone(),
                source,
            })?;
        }
        let old = std::mem::replace(
            &mut *self
                .shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            Arc::clone(&generation),
        );
        for router in std::mem::replace(&mut self.routers, routers.keep()) {
            router.abort();
        }
        if old.primary().resource.plural != generation.primary().resource.plural
            || old.primary().resource.api_version != generation.primary().resource.api_version
        {
            self.shared
                .tombstones
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        // Deletions of kinds the new version no longer maps are not mapped.
        self.shared
            .map_tombstones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| {
                generation.watched.iter().any(|watched| {
                    watched.watch.relation == Relation::Mapped
                        && watched.watch.api_version == key.api_version
                        && watched.watch.kind == key.kind
                })
            });
        // A version that no longer finalizes these objects (or finalizes
        // another kind) lets go of the old version's finalizers.
        let same_primary = old.primary().resource.plural == generation.primary().resource.plural
            && old.primary().resource.api_version == generation.primary().resource.api_version;
        if old.finalizer.is_some() && (generation.finalizer.is_none() || !same_primary) {
            let released = release_generation(&self.shared, &old).await;
            tracing::info!(controller = %name, released, "the new version does not finalize; finalizers released");
        }
        drop(old);
        self.set_resync(config.resync);
        self.set_concurrency(config.concurrency);
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
        routing::queue_all_primaries(&self.shared, &generation);
        tracing::info!(controller = %name, digest = %config.guest.digest(), "new version serving");
        Ok(())
    }

    /// Stops like [`RunningController::shutdown`], then removes this
    /// controller's finalizer from every primary object that holds it: for
    /// a controller that is removed (a host that merely stops keeps its
    /// finalizers, so deletions wait for its return). Answers how many
    /// objects it released.
    pub async fn remove(self, grace: Duration) -> usize {
        let shared = Arc::clone(&self.shared);
        // Keeps the informers, and so the stores, until the release is done.
        let generation = shared.current();
        self.shutdown(grace).await;
        release_generation(&shared, &generation).await
    }

    /// Starts or stops workers so that `concurrency` run.
    fn set_concurrency(&mut self, concurrency: usize) {
        let concurrency = concurrency.max(1);
        self.worker_target.send_replace(concurrency);
        self.workers.retain(|worker| !worker.is_finished());
        // Workers at or above the target stop by themselves; indexes below
        // it that have no live worker get one.
        while self.workers.len() < concurrency {
            let index = self.workers.len();
            self.workers.push(tokio::spawn(worker::work(
                Arc::clone(&self.shared),
                index,
                self.worker_target.subscribe(),
            )));
        }
    }

    fn set_resync(&mut self, period: Option<Duration>) {
        if let Some(task) = self.resync.take() {
            task.abort();
        }
        if let Some(period) = period.filter(|period| !period.is_zero()) {
            let shared = Arc::clone(&self.shared);
            self.resync = Some(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(period);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    routing::queue_all_primaries(&shared, &shared.current());
                }
            }));
        }
    }

    /// Takes in no new keys, reconciles the keys already queued and lets
    /// in-flight reconciles finish (for at most `grace`), and stops.
    pub async fn shutdown(mut self, grace: Duration) {
        let drained = futures::future::join(
            self.shared.queue.shutdown_with_drain(),
            self.shared.maps.shutdown_with_drain(),
        );
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(controller = %self.name(), "in-flight reconciles did not finish in time");
        }
        for task in self.tasks() {
            task.abort();
            let _ = task.await;
        }
    }

    fn tasks(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> = self.routers.drain(..).collect();
        tasks.append(&mut self.workers);
        tasks.extend(self.resync.take());
        tasks
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.shared.queue.shutdown();
        self.shared.maps.shutdown();
        for task in self.tasks() {
            task.abort();
        }
    }
}

/// Router tasks not yet handed to a running controller: aborted when
/// dropped, so that a start or reload that fails or is cancelled leaves no
/// task behind.
struct Routers(Vec<JoinHandle<()>>);

impl Routers {
    fn keep(mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Routers {
    fn drop(&mut self) {
        for router in &self.0 {
            router.abort();
        }
    }
}

/// Removes `generation`'s finalizer from the primary objects in its
/// informers' namespaces.
async fn release_generation(shared: &Shared, generation: &Generation) -> usize {
    let Some(finalizer) = &generation.finalizer else {
        return 0;
    };
    let primary = generation.primary();
    let scopes: Vec<Option<String>> = primary
        .informers
        .iter()
        .map(|informer| informer.namespace().map(str::to_owned))
        .collect();
    finalizer::release(
        &shared.executor.client_for(&generation.actor),
        &generation.actor,
        &primary.resource,
        &scopes,
        finalizer,
    )
    .await
}

/// Subscribes to every informer of `generation` and routes its events.
fn spawn_routers(shared: &Arc<Shared>, generation: &Arc<Generation>) -> Vec<JoinHandle<()>> {
    let mut routers = Vec::new();
    for (index, watched) in generation.watched.iter().enumerate() {
        for informer in &watched.informers {
            let events = informer.subscribe_all();
            routers.push(tokio::spawn(routing::route(
                Arc::clone(shared),
                Arc::clone(generation),
                index,
                events,
            )));
        }
    }
    routers
}

/// Keeps the indexes the guest declares, and those its shadow candidate
/// adds, in the stores of the informers of their kinds, for as long as
/// this version serves. A candidate's index of the same name must be the
/// same index: its lookups are answered from the live version's.
fn keep_indexes(
    name: &str,
    config: &ControllerConfig,
    informers: &[Arc<SharedInformer>],
) -> Result<Vec<ViewIndex>, StartError> {
    let live = &config.guest.info().indexes;
    let mut declared: Vec<&crate::wasm::Index> = live.iter().collect();
    if let Some(shadow) = &config.observe.shadow {
        for index in &shadow.guest().info().indexes {
            match live.iter().find(|live| live.name == index.name) {
                Some(same) if same == index => {}
                Some(_) => {
                    return Err(StartError::Shadow {
                        controller: name.to_owned(),
                        problem: format!(
                            "declares the index `{}` other than the live version does: its \
                             lookups would be answered from the live version's index; give \
                             the changed index a new name",
                            index.name
                        ),
                    });
                }
                None => declared.push(index),
            }
        }
    }
    declared
        .into_iter()
        .map(|index| {
            // Checked when the guest loaded; checked again, not assumed.
            let paths = IndexPaths::parse(&index.paths).map_err(|error| StartError::Scope {
                controller: name.to_owned(),
                problem: format!("index `{}`: {error}", index.name),
            })?;
            let stores = informers
                .iter()
                .filter(|informer| {
                    let resource = informer.resource();
                    resource.api_version == index.api_version && resource.kind == index.kind
                })
                .map(|informer| {
                    let kept = informer.store().index(paths.clone());
                    (Arc::clone(informer), kept)
                })
                .collect();
            Ok(ViewIndex {
                name: index.name.clone(),
                api_version: index.api_version.clone(),
                kind: index.kind.clone(),
                stores,
            })
        })
        .collect()
}

/// Checks that the grant allows list and watch (and get, for cache reads)
/// of a watched resource.
fn check_watch(
    name: &str,
    actor: &Actor,
    watch: &Watch,
    resource: &Resource,
) -> Result<(), StartError> {
    let (group, _) = crate::cluster::split_api_version(&resource.api_version);
    let needed: Vec<Permission<'_>> = ["list", "watch"]
        .into_iter()
        .map(|verb| Permission {
            verb,
            group,
            resource: &resource.plural,
            subresource: None,
        })
        .collect();
    actor
        .grant
        .check(&needed)
        .map_err(|source| StartError::Grant {
            controller: name.to_owned(),
            api_version: watch.api_version.clone(),
            kind: watch.kind.clone(),
            source,
        })
}

/// Checks that the grant allows `get` or `list` of a resource the guest
/// reads without watching it.
fn check_read(
    name: &str,
    actor: &Actor,
    read: &crate::wasm::Read,
    resource: &Resource,
) -> Result<(), StartError> {
    let (group, _) = crate::cluster::split_api_version(&resource.api_version);
    let permission = |verb| Permission {
        verb,
        group,
        resource: &resource.plural,
        subresource: None,
    };
    if actor.grant.allows(&permission("get")) {
        return Ok(());
    }
    actor
        .grant
        .check(&[permission("list")])
        .map_err(|source| StartError::ReadGrant {
            controller: name.to_owned(),
            api_version: read.api_version.clone(),
            kind: read.kind.clone(),
            source,
        })
}

/// Checks that the grant allows `patch` on the primary resource, which
/// adding and removing the finalizer needs.
fn check_finalizing(name: &str, actor: &Actor, resource: &Resource) -> Result<(), StartError> {
    let (group, _) = crate::cluster::split_api_version(&resource.api_version);
    actor
        .grant
        .check(&[Permission {
            verb: "patch",
            group,
            resource: &resource.plural,
            subresource: None,
        }])
        .map_err(|source| StartError::Finalizer {
            controller: name.to_owned(),
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            source,
        })
}

/// The namespaces (`None`: all) the informers of a watch or a read cover.
/// `declares` is `watches` or `reads`, for the messages.
fn scopes(
    name: &str,
    actor: &Actor,
    declares: &str,
    namespace: Option<&String>,
    resource: &Resource,
) -> Result<Vec<Option<String>>, StartError> {
    if !resource.namespaced {
        if !actor.namespaces.is_empty() {
            return Err(StartError::Scope {
                controller: name.to_owned(),
                problem: format!(
                    "it is scoped to namespaces but {declares} the cluster-scoped kind {}; \
                     remove `namespaces` or the declaration",
                    resource.kind
                ),
            });
        }
        return Ok(vec![None]);
    }
    match (namespace, actor.namespaces.is_empty()) {
        (Some(namespace), _) if actor.may_use_namespace(Some(namespace)) => {
            Ok(vec![Some(namespace.clone())])
        }
        (Some(namespace), _) => Err(StartError::Scope {
            controller: name.to_owned(),
            problem: format!("it {declares} namespace `{namespace}`, outside its namespaces"),
        }),
        (None, true) => Ok(vec![None]),
        (None, false) => Ok(actor.namespaces.iter().cloned().map(Some).collect()),
    }
}
