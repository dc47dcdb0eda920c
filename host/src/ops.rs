//! The operations endpoint: `/healthz`, `/readyz` and `/metrics` (Prometheus
//! text format), built from the running controllers and informers at
//! scrape time (no global registry).

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::cluster::InformerRegistry;
use serde::{Deserialize, Serialize};

use crate::controller::{
    ControllerHandle, ControllerStats, GUEST_ERROR_KINDS, LATENCY_BUCKETS, LastError,
};
use crate::reload::{EntryStatus, SourceStatus, StatusBoard};
use crate::wasm::LimitHitCounts;
use crate::wasm::slots::{ExecutionSlots, SlotsStatus};

/// What the endpoint reports on.
#[derive(Debug, Clone)]
pub struct OpsState {
    informers: InformerRegistry,
    board: StatusBoard,
    slots: Option<ExecutionSlots>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl OpsState {
    /// A state over the runtime's informers and the controllers' statuses.
    pub fn new(informers: InformerRegistry, board: StatusBoard) -> Self {
        Self {
            informers,
            board,
            slots: None,
            started: Arc::default(),
        }
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
    /// informer has synced too.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    fn ready(&self) -> bool {
        self.unhealthy().is_none()
            && self.started.load(Ordering::SeqCst)
            && self
                .informers
                .all()
                .iter()
                .all(|informer| informer.is_synced())
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
                    }
                });
                ControllerReport { status, running }
            })
            .collect();
        StatusReport {
            controllers,
            sources: self.board.sources(),
            slots: self.slots.as_ref().map(ExecutionSlots::status),
            unhealthy: self.unhealthy(),
        }
    }
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
    /// The pool of execution slots guest calls run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<SlotsStatus>,
    /// Why `/healthz` fails, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy: Option<String>,
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
    if let Some(why) = state.unhealthy() {
        (StatusCode::SERVICE_UNAVAILABLE, why)
    } else if state.ready() {
        (StatusCode::OK, "ok".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "informers not synced yet".to_owned(),
        )
    }
}

async fn status(State(state): State<OpsState>) -> impl IntoResponse {
    axum::Json(state.report())
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&state),
    )
}

/// A metric with one value per controller: name, help, type, and how to
/// read it.
type SimpleMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ControllerHandle) -> u64,
);

/// The metrics in Prometheus text format. Every controller series carries
/// the digest of the module serving now; counters count across versions.
pub fn render(state: &OpsState) -> String {
    let mut out = String::new();
    let controllers: Vec<(ControllerHandle, String)> = state
        .controllers()
        .into_iter()
        .map(|controller| {
            let labels = format!(
                "controller=\"{}\",digest=\"{}\"",
                controller.name(),
                controller.digest()
            );
            (controller, labels)
        })
        .collect();
    let header = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    header(
        &mut out,
        "paddock_guest_info",
        "The module serving for each controller.",
        "gauge",
    );
    for (_, labels) in &controllers {
        let _ = writeln!(out, "paddock_guest_info{{{labels}}} 1");
    }
    let simple: [SimpleMetric; 5] = [
        (
            "paddock_reconciles_total",
            "Reconciles started.",
            "counter",
            |c| ControllerStats::get(&c.stats().reconciles),
        ),
        (
            "paddock_cache_denied_total",
            "Cache reads refused because they reach outside the grant.",
            "counter",
            |c| ControllerStats::get(&c.stats().cache_denied),
        ),
        (
            "paddock_queue_depth",
            "Keys ready in the work queue.",
            "gauge",
            |c| c.queue_metrics().depth as u64,
        ),
        (
            "paddock_queue_adds_total",
            "Keys added to the work queue.",
            "counter",
            |c| c.queue_metrics().adds,
        ),
        (
            "paddock_queue_retries_total",
            "Rate-limited re-adds (retries).",
            "counter",
            |c| c.queue_metrics().retries,
        ),
    ];
    for (name, help, kind, value) in simple {
        header(&mut out, name, help, kind);
        for (controller, labels) in &controllers {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(controller));
        }
    }
    header(
        &mut out,
        "paddock_guest_errors_total",
        "Failed guest calls by kind.",
        "counter",
    );
    for (controller, labels) in &controllers {
        for (kind, value) in GUEST_ERROR_KINDS
            .iter()
            .zip(&controller.stats().guest_errors_by_kind)
        {
            let _ = writeln!(
                out,
                "paddock_guest_errors_total{{{labels},kind=\"{kind}\"}} {}",
                ControllerStats::get(value)
            );
        }
    }
    header(
        &mut out,
        "paddock_guest_limit_hits_total",
        "Times the serving version hit a bound on what it answers or logs, by limit.",
        "counter",
    );
    for (controller, labels) in &controllers {
        for (limit, value) in controller.limit_hits().by_limit() {
            let _ = writeln!(
                out,
                "paddock_guest_limit_hits_total{{{labels},limit=\"{limit}\"}} {value}"
            );
        }
    }
    if let Some(slots) = &state.slots {
        let status = slots.status();
        header(
            &mut out,
            "paddock_execution_slots",
            "The pool of execution slots guest calls run in: its size, slots held, calls waiting.",
            "gauge",
        );
        for (what, value) in [
            ("total", status.total),
            ("running", status.running),
            ("waiting", status.waiting),
        ] {
            let _ = writeln!(out, "paddock_execution_slots{{state=\"{what}\"}} {value}");
        }
    }
    header(
        &mut out,
        "paddock_actions_total",
        "Actions by result.",
        "counter",
    );
    for (controller, labels) in &controllers {
        let stats = controller.stats();
        for (result, value) in [
            ("performed", &stats.actions),
            ("failed", &stats.action_errors),
            ("denied", &stats.denied),
        ] {
            let _ = writeln!(
                out,
                "paddock_actions_total{{{labels},result=\"{result}\"}} {}",
                ControllerStats::get(value)
            );
        }
    }
    header(
        &mut out,
        "paddock_reconcile_duration_seconds",
        "Reconcile latency: guest call and actions.",
        "histogram",
    );
    for (controller, labels) in &controllers {
        let stats = controller.stats();
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&stats.latency_buckets) {
            cumulative += ControllerStats::get(bucket);
            let _ = writeln!(
                out,
                "paddock_reconcile_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += ControllerStats::get(&stats.latency_buckets[LATENCY_BUCKETS.len()]);
        let sum = ControllerStats::get(&stats.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(
            out,
            "paddock_reconcile_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "paddock_reconcile_duration_seconds_sum{{{labels}}} {sum}"
        );
        let _ = writeln!(
            out,
            "paddock_reconcile_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }
    let statuses = state.board.all();
    header(
        &mut out,
        "paddock_reloads_total",
        "New versions swapped in, or refused, per controller.",
        "counter",
    );
    for status in &statuses {
        for (result, value) in [
            ("swapped", status.reloads),
            ("failed", status.reload_failures),
        ] {
            let _ = writeln!(
                out,
                "paddock_reloads_total{{controller=\"{}\",result=\"{result}\"}} {value}",
                status.name
            );
        }
    }
    header(
        &mut out,
        "paddock_source_errors_total",
        "Times a source of controllers (a controllers file) could not be used.",
        "counter",
    );
    for (source, status) in state.board.sources() {
        let _ = writeln!(
            out,
            "paddock_source_errors_total{{source=\"{}\"}} {}",
            source.replace('\\', "\\\\").replace('"', "\\\""),
            status.errors
        );
    }
    let informers = state.informers.all();
    header(
        &mut out,
        "paddock_informer_objects",
        "Objects in an informer's store.",
        "gauge",
    );
    for informer in &informers {
        let _ = writeln!(
            out,
            "paddock_informer_objects{{resource=\"{}\",namespace=\"{}\"}} {}",
            informer.resource().plural,
            informer.namespace().unwrap_or(""),
            informer.store().len()
        );
    }
    header(
        &mut out,
        "paddock_informer_store_bytes",
        "Heap bytes of an informer's store.",
        "gauge",
    );
    for informer in &informers {
        let _ = writeln!(
            out,
            "paddock_informer_store_bytes{{resource=\"{}\",namespace=\"{}\"}} {}",
            informer.resource().plural,
            informer.namespace().unwrap_or(""),
            informer.store().heap_bytes()
        );
    }
    header(
        &mut out,
        "paddock_watch_restarts_total",
        "Informer recoveries (errors, 410 Gone).",
        "counter",
    );
    for informer in &informers {
        let _ = writeln!(
            out,
            "paddock_watch_restarts_total{{resource=\"{}\",namespace=\"{}\"}} {}",
            informer.resource().plural,
            informer.namespace().unwrap_or(""),
            informer.stats().restarts.load(Ordering::Relaxed)
        );
    }
    out
}
