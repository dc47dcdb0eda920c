//! Controllers: routing informer events to each guest's work queue, and the
//! workers that reconcile a key by calling the guest and executing its
//! actions.

mod cache_view;
mod routing;
mod stats;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::task::JoinHandle;

pub use cache_view::GuestCacheView;
pub use stats::{ControllerStats, GUEST_ERROR_KINDS, LATENCY_BUCKETS};

use crate::actions::{ActionExecutor, Actor};
use crate::cluster::{
    ClusterError, Discovery, InformerRegistry, ObjectKey, Resource, SharedInformer, StoredObject,
};
use crate::grants::{Denied, Grant, Permission};
use crate::queue::{QueueConfig, Workqueue};
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
    pub resync: Option<std::time::Duration>,
}

/// A controller that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A watched kind is not served by the cluster.
    #[error("controller `{controller}` watches a kind the cluster does not serve")]
    Discovery {
        /// The controller.
        controller: String,
        /// What discovery said.
        #[source]
        source: ClusterError,
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
    /// The queue settings are invalid.
    #[error("controller `{controller}` has invalid queue settings")]
    Queue {
        /// The controller.
        controller: String,
        /// Which setting.
        #[source]
        source: crate::queue::QueueConfigError,
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
}

impl Runtime {
    /// A runtime talking to the cluster through `client`.
    pub fn new(client: Client) -> Self {
        let discovery = Discovery::new(client.clone());
        Self {
            registry: InformerRegistry::new(client.clone()),
            executor: ActionExecutor::new(client, discovery.clone()),
            discovery,
        }
    }

    /// The shared informers.
    pub fn informers(&self) -> &InformerRegistry {
        &self.registry
    }

    /// Starts one controller like [`Runtime::start`], but when a watched
    /// kind is not served yet (a CRD not created yet), waits for it,
    /// asking discovery again with backoff up to 10 s. Other errors return
    /// at once.
    pub async fn start_when_served(
        &self,
        config: ControllerConfig,
    ) -> Result<RunningController, StartError> {
        let mut delay = std::time::Duration::from_millis(250);
        loop {
            match self.start(config.clone()).await {
                Err(StartError::Discovery { controller, source }) => {
                    tracing::info!(%controller, error = %source, ?delay, "waiting for a watched kind to be served");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(10));
                }
                other => return other,
            }
        }
    }

    /// Starts one controller: resolves and checks its watches, subscribes
    /// to the shared informers, waits for them to sync, queues every
    /// primary object and starts the workers.
    pub async fn start(&self, config: ControllerConfig) -> Result<RunningController, StartError> {
        let name = config.guest.name().to_owned();
        let actor = Actor {
            name: name.clone(),
            grant: config.grant.clone(),
            namespaces: config.namespaces.clone(),
        };
        let mut watched = Vec::new();
        for watch in &config.guest.info().watches {
            let resource = self
                .discovery
                .resolve(&watch.api_version, &watch.kind)
                .await
                .map_err(|source| StartError::Discovery {
                    controller: name.clone(),
                    source,
                })?;
            check_watch(&name, &actor, watch, &resource)?;
            let scopes = scopes(&name, &actor, watch, &resource)?;
            let informers = scopes
                .iter()
                .map(|scope| self.registry.informer(&resource, scope.as_deref()))
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
        let shared = Arc::new(Shared {
            guest: config.guest.clone(),
            actor: actor.clone(),
            queue: Workqueue::new(config.queue.clone()).map_err(|source| StartError::Queue {
                controller: name.clone(),
                source,
            })?,
            watched,
            tombstones: Mutex::default(),
            in_flight: Mutex::default(),
            stats: ControllerStats::default(),
            cache: Arc::new(GuestCacheView {
                actor,
                discovery: self.discovery.clone(),
                registry: self.registry.clone(),
            }),
            executor: self.executor.clone(),
        });
        let mut tasks = Vec::new();
        for (index, watched) in shared.watched.iter().enumerate() {
            for informer in &watched.informers {
                let events = informer.subscribe();
                tasks.push(tokio::spawn(routing::route(
                    Arc::clone(&shared),
                    index,
                    Arc::clone(informer),
                    events,
                )));
            }
        }
        for watched in &shared.watched {
            for informer in &watched.informers {
                informer.wait_synced().await;
            }
        }
        routing::queue_all_primaries(&shared);
        if let Some(period) = config.resync.filter(|period| !period.is_zero()) {
            let resynced = Arc::clone(&shared);
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(period);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    routing::queue_all_primaries(&resynced);
                }
            }));
        }
        for _ in 0..config.concurrency.max(1) {
            tasks.push(tokio::spawn(worker::work(Arc::clone(&shared))));
        }
        tracing::info!(controller = %name, digest = %config.guest.digest(), "controller started");
        Ok(RunningController { shared, tasks })
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

/// The state the routers and workers of one controller share.
pub(crate) struct Shared {
    pub(crate) guest: Guest,
    pub(crate) actor: Actor,
    pub(crate) queue: Workqueue<ObjectKey>,
    pub(crate) watched: Vec<Watched>,
    /// Last known states of deleted primary objects not yet reconciled.
    pub(crate) tombstones: Mutex<HashMap<ObjectKey, Arc<StoredObject>>>,
    /// Keys being reconciled now: a safety net under the queue's own rule.
    pub(crate) in_flight: Mutex<std::collections::HashSet<ObjectKey>>,
    pub(crate) stats: ControllerStats,
    pub(crate) cache: Arc<GuestCacheView>,
    pub(crate) executor: ActionExecutor,
}

impl Shared {
    /// The primary watch (there is exactly one).
    pub(crate) fn primary(&self) -> &Watched {
        self.watched
            .iter()
            .find(|watched| watched.watch.relation == Relation::Primary)
            .unwrap_or(&self.watched[0])
    }
}

/// A running controller. Dropping it stops its routers and workers and
/// releases its informers.
#[derive(Debug)]
pub struct RunningController {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("guest", &self.guest.name())
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
    /// The guest's name.
    pub fn name(&self) -> &str {
        self.shared.guest.name()
    }

    /// The loaded module's digest.
    pub fn digest(&self) -> &str {
        self.shared.guest.digest()
    }

    /// Its counters.
    pub fn stats(&self) -> &ControllerStats {
        &self.shared.stats
    }

    /// Its queue's counters.
    pub fn queue_metrics(&self) -> crate::queue::QueueMetrics {
        self.shared.queue.metrics()
    }
}

impl RunningController {
    /// A clonable view for metrics.
    pub fn handle(&self) -> ControllerHandle {
        ControllerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The guest's name.
    pub fn name(&self) -> &str {
        self.shared.guest.name()
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

    /// Whether nothing is queued, waiting or running.
    pub fn is_idle(&self) -> bool {
        let metrics = self.shared.queue.metrics();
        metrics.depth == 0 && metrics.in_flight == 0 && metrics.waiting == 0
    }

    /// Stops taking keys, lets in-flight reconciles finish (for at most
    /// `grace`), and stops.
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        let drained = self.shared.queue.shutdown_with_drain();
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(controller = %self.name(), "in-flight reconciles did not finish in time");
        }
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.shared.queue.shutdown();
        for task in &self.tasks {
            task.abort();
        }
    }
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

/// The namespaces (`None`: all) a watch's informers cover.
fn scopes(
    name: &str,
    actor: &Actor,
    watch: &Watch,
    resource: &Resource,
) -> Result<Vec<Option<String>>, StartError> {
    if !resource.namespaced {
        if !actor.namespaces.is_empty() {
            return Err(StartError::Scope {
                controller: name.to_owned(),
                problem: format!(
                    "it is scoped to namespaces but watches the cluster-scoped kind {}; \
                     remove `namespaces` or the watch",
                    resource.kind
                ),
            });
        }
        return Ok(vec![None]);
    }
    match (&watch.namespace, actor.namespaces.is_empty()) {
        (Some(namespace), _) if actor.may_use_namespace(Some(namespace)) => {
            Ok(vec![Some(namespace.clone())])
        }
        (Some(namespace), _) => Err(StartError::Scope {
            controller: name.to_owned(),
            problem: format!("it watches namespace `{namespace}`, outside its namespaces"),
        }),
        (None, true) => Ok(vec![None]),
        (None, false) => Ok(actor.namespaces.iter().cloned().map(Some).collect()),
    }
}
