//! The operations endpoint: `/healthz`, `/readyz`, `/metrics` (Prometheus
//! text format, encoded by `prometheus-client`) and `/status`, built from
//! the running controllers and informers at scrape time (no global
//! registry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::prometheus_text::{CONTENT_TYPE, encode};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cluster::{InformerRegistry, error_chain};
use serde::{Deserialize, Serialize};

use crate::controller::{
    ControllerHandle, ControllerStats, GUEST_ERROR_KINDS, LATENCY_BUCKETS, LastError,
};
use crate::reload::{EntryStatus, SourceStatus, StatusBoard};
use crate::replication::{RingHandle, RingStatus};
use crate::wasm::slots::{ExecutionSlots, SlotsStatus};
use crate::wasm::{LimitHitCounts, WasmEngine};

/// What the endpoint reports on.
#[derive(Debug, Clone)]
pub struct OpsState {
    informers: InformerRegistry,
    board: StatusBoard,
    slots: Option<ExecutionSlots>,
    started: Arc<std::sync::atomic::AtomicBool>,
    ring: Arc<std::sync::OnceLock<RingHandle>>,
    engine: Option<WasmEngine>,
}

impl OpsState {
    /// A state over the runtime's informers and the controllers' statuses.
    pub fn new(informers: InformerRegistry, board: StatusBoard) -> Self {
        Self {
            informers,
            board,
            slots: None,
            started: Arc::default(),
            ring: Arc::default(),
            engine: None,
        }
    }

    /// Also reports how the engine's components got their compiled code.
    #[must_use]
    pub fn with_engine(mut self, engine: WasmEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Also reports on the ring this host joined (once; later calls are
    /// ignored).
    pub fn set_ring(&self, ring: RingHandle) {
        let _ = self.ring.set(ring);
    }

    /// How this host stands in its ring, if it joined one; in a sharded
    /// ring, with the primary objects each member owns. A host whose
    /// informers hold only its share counts only its own.
    pub fn ring(&self) -> Option<RingStatus> {
        let handle = self.ring.get()?;
        let mut status = handle.status();
        if let Some(shard) = handle.fence().shard() {
            let controllers = self.controllers();
            let all = !controllers
                .iter()
                .any(ControllerHandle::holds_only_its_share);
            for member in shard
                .members()
                .filter(|member| all || *member == status.identity)
            {
                status.shares.insert(member.to_owned(), 0);
            }
            for controller in controllers {
                for (namespace, name) in controller.primary_keys() {
                    let owner = shard.owner(&namespace, &name);
                    if let Some(share) = status.shares.get_mut(owner) {
                        *share += 1;
                    }
                }
            }
        }
        Some(status)
    }

    /// Also reports on the pool of execution slots: `/healthz` and
    /// `/readyz` fail while a guest call holds its slot well past its
    /// deadline.
    #[must_use]
    pub fn with_slots(mut self, slots: ExecutionSlots) -> Self {
        self.slots = Some(slots);
        self
    }

    /// Why the host is not healthy, if it is not.
    fn unhealthy(&self) -> Option<String> {
        self.slots.as_ref().and_then(ExecutionSlots::stalled)
    }

    /// Marks start-up as finished: `/readyz` answers 200 once every
    /// informer has listed and while each one's latest request reaches the
    /// API server.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// Why the host is not ready, if it is not: start-up is not finished,
    /// or an informer has not listed yet or lost the API server (its
    /// latest list or watch request failed: credentials, TLS, no
    /// connection, forbidden).
    fn not_ready(&self) -> Option<String> {
        if let Some(why) = self.unhealthy() {
            return Some(why);
        }
        if !self.started.load(Ordering::SeqCst) {
            return Some("starting".to_owned());
        }
        let mut informers = self.informers.all();
        informers.sort_by_key(|informer| informer.describe());
        informers.iter().find_map(|informer| {
            let health = informer.health();
            match (&health.failure, health.synced) {
                (Some(failure), _) => Some(format!(
                    "informer {}: {}",
                    informer.describe(),
                    error_chain(&**failure)
                )),
                (None, false) => Some(format!(
                    "informer {} has not listed yet",
                    informer.describe()
                )),
                (None, true) => None,
            }
        })
    }

    /// The informers and how they stand with the API server.
    fn informer_reports(&self) -> Vec<InformerReport> {
        let mut reports: Vec<InformerReport> = self
            .informers
            .all()
            .iter()
            .map(|informer| {
                let health = informer.health();
                InformerReport {
                    informer: informer.describe(),
                    synced: health.synced,
                    connected: health.failure.is_none(),
                    error: health.failure.map(|failure| error_chain(&*failure)),
                }
            })
            .collect();
        reports.sort_by(|a, b| a.informer.cmp(&b.informer));
        reports
    }

    /// The running controllers.
    fn controllers(&self) -> Vec<ControllerHandle> {
        self.board
            .all()
            .into_iter()
            .filter_map(|status| status.handle)
            .collect()
    }

    /// What `/status` answers.
    pub fn report(&self) -> StatusReport {
        let controllers = self
            .board
            .all()
            .into_iter()
            .map(|status| {
                let running = status.handle.as_ref().map(|handle| {
                    let stats = handle.stats();
                    let queue = handle.queue_metrics();
                    RunningReport {
                        queue_depth: queue.depth,
                        in_flight: queue.in_flight,
                        waiting: queue.waiting,
                        reconciles: ControllerStats::get(&stats.reconciles),
                        guest_errors: ControllerStats::get(&stats.guest_errors),
                        action_errors: ControllerStats::get(&stats.action_errors),
                        denied: ControllerStats::get(&stats.denied),
                        cache_denied: ControllerStats::get(&stats.cache_denied),
                        limit_hits: handle.limit_hits(),
                        flow: handle.flow().to_string(),
                        last_error: handle.last_error(),
                        shadow: handle.shadow(),
                        recording: handle.recorder().map(|recorder| {
                            let stats = recorder.stats();
                            let get = |counter: &std::sync::atomic::AtomicU64| {
                                counter.load(std::sync::atomic::Ordering::Relaxed)
                            };
                            RecordingReport {
                                dir: recorder.dir().display().to_string(),
                                written: get(&stats.written),
                                dropped: get(&stats.dropped),
                                failed: get(&stats.failed),
                            }
                        }),
                    }
                });
                ControllerReport { status, running }
            })
            .collect();
        StatusReport {
            controllers,
            sources: self.board.sources(),
            informers: self.informer_reports(),
            slots: self.slots.as_ref().map(ExecutionSlots::status),
            ring: self.ring(),
            unhealthy: self.unhealthy(),
            not_ready: self.not_ready(),
        }
    }
}

/// One informer in `/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InformerReport {
    /// What it watches: `deployments.apps/v1 in all namespaces`.
    pub informer: String,
    /// Whether it has listed.
    pub synced: bool,
    /// Whether its latest list or watch request reached the API server.
    pub connected: bool,
    /// Why it did not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `/status` answers: every declared controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// The controllers, by name.
    pub controllers: Vec<ControllerReport>,
    /// Sources that failed (a controllers file that cannot be read).
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, SourceStatus>,
    /// The shared informers and how they stand with the API server.
    #[serde(default)]
    pub informers: Vec<InformerReport>,
    /// The pool of execution slots guest calls run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotsStatus>,
    /// The ring this host joined: its members, who works, hand-overs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<RingStatus>,
    /// Why `/healthz` fails, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<String>,
    /// Why `/readyz` fails, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
}

/// One controller in `/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerReport {
    /// Its declaration's status: phase, digest, reloads.
    #[serde(flatten)]
    pub status: EntryStatus,
    /// Its queue and counters, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningReport>,
}

/// A controller's recording, in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingReport {
    /// The folder it is written to.
    pub dir: String,
    /// Calls written.
    pub written: u64,
    /// Calls dropped because the disk fell behind.
    pub dropped: u64,
    /// Calls that could not be written.
    pub failed: u64,
}

/// The queue and counters of a running controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningReport {
    /// Keys ready for a worker.
    pub queue_depth: usize,
    /// Keys being reconciled.
    pub in_flight: usize,
    /// Keys waiting for a backoff or requeue deadline.
    pub waiting: usize,
    /// Reconciles started.
    pub reconciles: u64,
    /// Reconciles that failed in the guest.
    pub guest_errors: u64,
    /// Reconciles whose actions failed or were denied.
    pub action_errors: u64,
    /// Actions denied by the grant.
    pub denied: u64,
    /// Cache reads refused by the grant.
    pub cache_denied: u64,
    /// How often the version serving now hit the bounds on what it
    /// answers and logs.
    #[serde(default)]
    pub limit_hits: LimitHitCounts,
    /// The flow its guest calls run as (`tenant team-a`, `controller x`).
    #[serde(default)]
    pub flow: String,
    /// The latest failed reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// What its shadow candidate found, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<crate::controller::ShadowReport>,
    /// Its recording, if it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingReport>,
}

/// Serves the endpoint on `addr` until the task is dropped; the bound
/// address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: OpsState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the operations endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.unhealthy() {
        None => (StatusCode::OK, "ok".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.not_ready() {
        None => (StatusCode::OK, "ok".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn status(State(state): State<OpsState>) -> impl IntoResponse {
    axum::Json(state.report())
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

/// The labels of every controller series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
    digest: String,
}

/// The labels of `paddock_guest_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    controller: String,
    digest: String,
    identity: String,
}

/// A controller series split by one more label (`kind`, `limit`,
/// `result`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SplitLabels {
    #[prometheus(flatten)]
    controller: ControllerLabels,
    #[prometheus(flatten)]
    by: [(&'static str, &'static str); 1],
}

/// The labels of a controller's counts by result: its reloads (no digest:
/// a controller that never started has none), its recorded calls.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: &'static str,
}

/// The labels of `paddock_shadow_calls_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    controller: String,
    /// The candidate's module digest.
    candidate: String,
    result: String,
}

/// The labels of `paddock_component_loads_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    /// `shared` (a live guest of this process had it compiled), `cache`
    /// (the compile cache on disk had it) or `compiled`.
    source: &'static str,
}

/// The labels of an informer's series. `group` and `version` tell apart
/// resources of different API groups (or versions) that share a plural.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InformerLabels {
    resource: String,
    namespace: String,
    group: String,
    version: String,
    /// `all`, or on a member of a sharded ring `share` (the primary
    /// objects of its share) or `children` (the objects they control).
    slice: &'static str,
}

/// A family of counters with `Counter`'s default atomics.
type Counters<S> = Family<S, Counter>;
/// A family of gauges with `Gauge`'s default atomics.
type Gauges<S> = Family<S, Gauge>;

/// A gauge's value from a count (saturating: gauges are signed).
fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The reconcile latency histograms, read from the controllers' bucket
/// counters at scrape time (prometheus-client's `Histogram` only records
/// observations, and the counts live in [`ControllerStats`]).
#[derive(Debug, Default)]
struct LatencyHistograms(Vec<LatencySeries>);

#[derive(Debug)]
struct LatencySeries {
    labels: ControllerLabels,
    /// `(upper bound, count in this bucket)`, the last bound `+Inf`.
    buckets: Vec<(f64, u64)>,
    sum_seconds: f64,
    count: u64,
}

impl EncodeMetric for LatencyHistograms {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for series in &self.0 {
            encoder
                .encode_family(&series.labels)?
                .encode_histogram::<NoLabelSet>(
                    series.sum_seconds,
                    series.count,
                    &series.buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The metrics in the Prometheus text format (version 0.0.4), from a
/// registry built for this scrape (no global registry). Every controller
/// series carries the digest of the module serving now; counters count
/// across versions.
pub fn render(state: &OpsState) -> String {
    let mut registry = Registry::default();
    let controllers: Vec<(ControllerHandle, ControllerLabels)> = state
        .controllers()
        .into_iter()
        .map(|controller| {
            let labels = ControllerLabels {
                controller: controller.name().to_owned(),
                digest: controller.digest(),
            };
            (controller, labels)
        })
        .collect();
    let split = |labels: &ControllerLabels, name: &'static str, value: &'static str| SplitLabels {
        controller: labels.clone(),
        by: [(name, value)],
    };

    let info = Gauges::<InfoLabels>::default();
    for (controller, labels) in &controllers {
        info.get_or_create(&InfoLabels {
            controller: labels.controller.clone(),
            digest: labels.digest.clone(),
            identity: controller.identity(),
        })
        .set(1);
    }
    registry.register(
        "paddock_guest_info",
        "The module serving for each controller, and who it acts as (`host` or `serviceaccount <namespace>/<name>`)",
        info,
    );

    let counter =
        |registry: &mut Registry, name: &str, help: &str, value: fn(&ControllerHandle) -> u64| {
            let family = Counters::<ControllerLabels>::default();
            for (controller, labels) in &controllers {
                family.get_or_create(labels).inc_by(value(controller));
            }
            registry.register(name, help, family);
        };
    let gauge =
        |registry: &mut Registry, name: &str, help: &str, value: fn(&ControllerHandle) -> u64| {
            let family = Gauges::<ControllerLabels>::default();
            for (controller, labels) in &controllers {
                family
                    .get_or_create(labels)
                    .set(gauge_value(value(controller)));
            }
            registry.register(name, help, family);
        };
    // prometheus-client adds `_total` to counter names.
    counter(
        &mut registry,
        "paddock_reconciles",
        "Reconciles started",
        |c| ControllerStats::get(&c.stats().reconciles),
    );
    counter(
        &mut registry,
        "paddock_cache_denied",
        "Cache reads refused because they reach outside the grant",
        |c| ControllerStats::get(&c.stats().cache_denied),
    );
    gauge(
        &mut registry,
        "paddock_queue_depth",
        "Keys ready in the work queue",
        |c| c.queue_metrics().depth as u64,
    );
    counter(
        &mut registry,
        "paddock_queue_adds",
        "Keys added to the work queue",
        |c| c.queue_metrics().adds,
    );
    counter(
        &mut registry,
        "paddock_queue_retries",
        "Rate-limited re-adds (retries)",
        |c| c.queue_metrics().retries,
    );

    let guest_errors = Counters::<SplitLabels>::default();
    let limit_hits = Counters::<SplitLabels>::default();
    let actions = Counters::<SplitLabels>::default();
    let mut latency = LatencyHistograms::default();
    for (controller, labels) in &controllers {
        let stats = controller.stats();
        for (kind, value) in GUEST_ERROR_KINDS.iter().zip(&stats.guest_errors_by_kind) {
            guest_errors
                .get_or_create(&split(labels, "kind", kind))
                .inc_by(ControllerStats::get(value));
        }
        for (limit, value) in controller.limit_hits().by_limit() {
            limit_hits
                .get_or_create(&split(labels, "limit", limit))
                .inc_by(value);
        }
        for (result, value) in [
            ("performed", &stats.actions),
            ("failed", &stats.action_errors),
            ("denied", &stats.denied),
        ] {
            actions
                .get_or_create(&split(labels, "result", result))
                .inc_by(ControllerStats::get(value));
        }
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(stats.latency_buckets.iter().map(ControllerStats::get))
            .collect();
        latency.0.push(LatencySeries {
            labels: labels.clone(),
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
            sum_seconds: ControllerStats::get(&stats.latency_sum_micros) as f64 / 1e6,
        });
    }
    registry.register(
        "paddock_guest_errors",
        "Failed guest calls by kind",
        guest_errors,
    );
    registry.register(
        "paddock_guest_limit_hits",
        "Times the serving version hit a bound on what it answers or logs, by limit",
        limit_hits,
    );
    if let Some(slots) = &state.slots {
        let status = slots.status();
        let family = Gauges::<[(&'static str, &'static str); 1]>::default();
        for (what, value) in [
            ("total", status.total),
            ("running", status.running),
            ("waiting", status.waiting),
        ] {
            family
                .get_or_create(&[("state", what)])
                .set(gauge_value(value as u64));
        }
        registry.register(
            "paddock_execution_slots",
            "The pool of execution slots guest calls run in: its size, slots held, calls waiting",
            family,
        );
    }
    registry.register("paddock_actions", "Actions by result", actions);
    registry.register(
        "paddock_reconcile_duration_seconds",
        "Reconcile latency: guest call and actions",
        latency,
    );

    // Shadow runs: each call compared, by verdict (`agreed` or the kind of
    // difference), and those skipped; recordings: calls by what became of
    // them. Labelled with the candidate's digest.
    let shadow_calls = Counters::<ShadowLabels>::default();
    let recorded = Counters::<ResultLabels>::default();
    for (controller, labels) in &controllers {
        if let Some(report) = controller.shadow() {
            let series = |result: String| ShadowLabels {
                controller: labels.controller.clone(),
                candidate: report.digest.clone(),
                result,
            };
            shadow_calls
                .get_or_create(&series("agreed".to_owned()))
                .inc_by(report.agreed);
            shadow_calls
                .get_or_create(&series("skipped".to_owned()))
                .inc_by(report.skipped);
            for (kind, count) in &report.differences {
                shadow_calls
                    .get_or_create(&series(kind.clone()))
                    .inc_by(*count);
            }
        }
        if let Some(recorder) = controller.recorder() {
            let stats = recorder.stats();
            for (result, value) in [
                ("written", &stats.written),
                ("dropped", &stats.dropped),
                ("failed", &stats.failed),
            ] {
                recorded
                    .get_or_create(&ResultLabels {
                        controller: labels.controller.clone(),
                        result,
                    })
                    .inc_by(value.load(Ordering::Relaxed));
            }
        }
    }
    registry.register(
        "paddock_shadow_calls",
        "Calls asked of a shadow candidate, by result: agreed, skipped, or the kind of difference",
        shadow_calls,
    );
    registry.register(
        "paddock_recorded_calls",
        "Calls of a recorded controller, by result: written, dropped (the disk fell behind) or failed",
        recorded,
    );

    let reloads = Counters::<ResultLabels>::default();
    for status in state.board.all() {
        for (result, value) in [
            ("swapped", status.reloads),
            ("failed", status.reload_failures),
        ] {
            reloads
                .get_or_create(&ResultLabels {
                    controller: status.name.clone(),
                    result,
                })
                .inc_by(value);
        }
    }
    registry.register(
        "paddock_reloads",
        "New versions swapped in, or refused, per controller",
        reloads,
    );
    let source_errors = Counters::<[(&'static str, String); 1]>::default();
    for (source, status) in state.board.sources() {
        source_errors
            .get_or_create(&[("source", source)])
            .inc_by(status.errors);
    }
    registry.register(
        "paddock_source_errors",
        "Times a source of controllers (a controllers file) could not be used",
        source_errors,
    );

    if let Some(engine) = &state.engine {
        let loads = Counters::<LoadLabels>::default();
        let counts = engine.loads();
        for (source, count) in [
            ("shared", &counts.shared),
            ("cache", &counts.cached),
            ("compiled", &counts.compiled),
        ] {
            loads
                .get_or_create(&LoadLabels { source })
                .inc_by(count.load(Ordering::Relaxed));
        }
        registry.register(
            "paddock_component_loads",
            "Components loaded, by where their compiled code came from: shared (a live guest), cache (the compile cache on disk) or compiled",
            loads,
        );
    }

    let objects = Gauges::<InformerLabels>::default();
    let store_bytes = Gauges::<InformerLabels>::default();
    let restarts = Counters::<InformerLabels>::default();
    let unparsed = Counters::<InformerLabels>::default();
    let dropped = Counters::<InformerLabels>::default();
    for informer in state.informers.all() {
        let resource = informer.resource();
        let labels = InformerLabels {
            resource: resource.plural.clone(),
            namespace: informer.namespace().unwrap_or("").to_owned(),
            group: resource.group.clone(),
            version: resource.version.clone(),
            slice: informer.slice().label(),
        };
        dropped
            .get_or_create(&labels)
            .inc_by(informer.stats().dropped.load(Ordering::Relaxed));
        objects
            .get_or_create(&labels)
            .set(gauge_value(informer.store().len() as u64));
        store_bytes
            .get_or_create(&labels)
            .set(gauge_value(informer.store().heap_bytes() as u64));
        restarts
            .get_or_create(&labels)
            .inc_by(informer.stats().restarts.load(Ordering::Relaxed));
        unparsed
            .get_or_create(&labels)
            .inc_by(informer.stats().unparsed.load(Ordering::Relaxed));
    }
    registry.register(
        "paddock_informer_objects",
        "Objects in an informer's store",
        objects,
    );
    registry.register(
        "paddock_informer_store_bytes",
        "Heap bytes of an informer's store",
        store_bytes,
    );
    registry.register(
        "paddock_watch_restarts",
        "Informer recoveries (errors, 410 Gone)",
        restarts,
    );
    registry.register(
        "paddock_informer_unparsed",
        "Objects an informer skipped because they could not be read",
        unparsed,
    );
    registry.register(
        "paddock_informer_dropped",
        "Objects an informer did not keep, or stopped keeping, because they are not in this host's share",
        dropped,
    );

    if let Some(ring) = state.ring() {
        register_ring(&mut registry, &ring);
    }

    let mut out = String::new();
    // Writing into a String cannot fail, and neither can the encoders
    // above; were one to, the scrape gets what was written so far.
    if let Err(error) = encode(&mut out, &registry) {
        tracing::error!(%error, "encoding the metrics failed");
    }
    out
}

/// The labels of the ring's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RingLabels {
    ring: String,
    identity: String,
    mode: String,
}

/// The ring's series: whether this host works, the members it sees, and
/// its hand-overs.
fn register_ring(registry: &mut Registry, ring: &RingStatus) {
    let labels = RingLabels {
        ring: ring.ring.clone(),
        identity: ring.identity.clone(),
        mode: ring.mode.to_string(),
    };
    let gauge = |value: u64| {
        let family = Gauges::<RingLabels>::default();
        family.get_or_create(&labels).set(gauge_value(value));
        family
    };
    let counter = |value: u64| {
        let family = Counters::<RingLabels>::default();
        family.get_or_create(&labels).inc_by(value);
        family
    };
    registry.register(
        "paddock_ring_active",
        "1 while this host works (holds the ring's leader Lease), else 0",
        gauge(u64::from(ring.active)),
    );
    registry.register(
        "paddock_ring_members",
        "Live members of the ring, as this host sees their Leases",
        gauge(ring.members.len() as u64),
    );
    registry.register(
        "paddock_ring_acquired",
        "Times this host began working (took the leader Lease)",
        counter(ring.acquired),
    );
    registry.register(
        "paddock_ring_lost",
        "Times this host stopped working without giving its Lease up",
        counter(ring.lost),
    );
    registry.register(
        "paddock_ring_handovers",
        "Times this host's share changed while it worked (a member joined or left)",
        counter(ring.handovers),
    );
    if let Some(owned) = ring.shares.get(&ring.identity) {
        registry.register(
            "paddock_ring_owned_objects",
            "Primary objects of this host's controllers in its share",
            gauge(*owned),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::Resource;

    /// `/metrics` parsed by a Prometheus text-format parser.
    fn scrape(state: &OpsState) -> prometheus_parse::Scrape {
        let text = render(state);
        prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("the metrics parse")
    }

    /// Every sample's name and labels, sorted; histograms as one sample.
    fn series(scrape: &prometheus_parse::Scrape) -> Vec<(String, BTreeMap<String, String>)> {
        let mut series: Vec<_> = scrape
            .samples
            .iter()
            .map(|sample| {
                let labels = sample
                    .labels
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                (sample.metric.clone(), labels)
            })
            .collect();
        series.sort();
        series
    }

    fn widgets(group: &str) -> Arc<Resource> {
        Arc::new(Resource {
            group: group.into(),
            version: "v1".into(),
            api_version: format!("{group}/v1"),
            kind: "Widget".into(),
            plural: "widgets".into(),
            namespaced: true,
            subresources: Vec::new(),
        })
    }

    /// A client for an address nothing answers on: the informers keep
    /// failing to list, which leaves their stores empty.
    fn unreachable_client() -> kube::Client {
        let url = "http://127.0.0.1:9".parse().expect("a URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client")
    }

    #[tokio::test]
    async fn two_groups_with_one_plural_are_two_informer_series() {
        let informers = InformerRegistry::new(unreachable_client());
        let _a = informers.informer(&widgets("a.example.com"), None);
        let _b = informers.informer(&widgets("b.example.com"), None);
        let state = OpsState::new(informers, StatusBoard::default());
        let scrape = scrape(&state);

        let all = series(&scrape);
        let mut unique = all.clone();
        unique.dedup();
        assert_eq!(all, unique, "every series appears once");
        for metric in [
            "paddock_informer_objects",
            "paddock_informer_store_bytes",
            "paddock_watch_restarts_total",
        ] {
            let groups: Vec<&str> = scrape
                .samples
                .iter()
                .filter(|sample| sample.metric == metric)
                .inspect(|sample| {
                    assert_eq!(sample.labels.get("resource"), Some("widgets"));
                    assert_eq!(sample.labels.get("namespace"), Some(""));
                    assert_eq!(sample.labels.get("version"), Some("v1"));
                })
                .filter_map(|sample| sample.labels.get("group"))
                .collect();
            assert_eq!(
                groups.len(),
                2,
                "{metric}: one series per group: {:?}",
                scrape.samples
            );
            assert!(groups.contains(&"a.example.com") && groups.contains(&"b.example.com"));
        }
    }

    /// Waits, 20 s at most, until `check` passes on why the host is not
    /// ready.
    async fn readiness_until(state: &OpsState, what: &str, check: impl Fn(Option<&str>) -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let why = state.not_ready();
            if check(why.as_deref()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; not ready because: {why:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn readiness_follows_the_informers_link_to_the_api_server() {
        use crate::cluster::Discovery;
        use crate::cluster::tests::client_for;

        let dir = tempfile::tempdir().expect("a temporary directory");
        let cluster =
            devcluster::DevCluster::start(devcluster::Options::new().data_dir(dir.path()))
                .await
                .expect("the embedded cluster starts");
        let port = cluster.addr().port();
        let client = client_for(&cluster.kubeconfig_yaml()).await;
        let configmaps = Discovery::new(client.clone())
            .resolve("v1", "ConfigMap")
            .await
            .expect("ConfigMaps are served");
        let informers = InformerRegistry::new(client);
        let _informer = informers.informer(&configmaps, None);
        let state = OpsState::new(informers, StatusBoard::default());
        assert_eq!(state.not_ready().as_deref(), Some("starting"));
        state.mark_started();
        readiness_until(&state, "ready", |why| why.is_none()).await;

        // The API server goes away and comes back, with other credentials.
        cluster.shutdown().await;
        let _cluster = devcluster::DevCluster::start(
            devcluster::Options::new()
                .data_dir(dir.path())
                .port(port)
                .token("a-token-the-host-does-not-have"),
        )
        .await
        .expect("the embedded cluster starts again");
        readiness_until(&state, "a 401 to make the host not ready", |why| {
            why.is_some_and(|why| why.contains("401"))
        })
        .await;
        let response = readyz(State(state.clone())).await.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let report = state.report();
        let [informer] = report.informers.as_slice() else {
            panic!("one informer in {:?}", report.informers);
        };
        assert_eq!(informer.informer, "configmaps/v1 in all namespaces");
        assert!(informer.synced && !informer.connected, "{informer:?}");
        assert!(
            informer
                .error
                .as_deref()
                .is_some_and(|error| error.contains("credentials")),
            "{informer:?}"
        );
        assert!(report.not_ready.is_some_and(|why| why.contains("401")));
    }
}
