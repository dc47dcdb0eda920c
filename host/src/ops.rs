//! The operations endpoint: `/healthz`, `/readyz` and `/metrics` (Prometheus
//! text format), built from the running controllers and informers at
//! scrape time (no global registry).

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::cluster::InformerRegistry;
use crate::controller::{ControllerHandle, ControllerStats, GUEST_ERROR_KINDS, LATENCY_BUCKETS};

/// What the endpoint reports on.
#[derive(Debug, Clone)]
pub struct OpsState {
    informers: InformerRegistry,
    controllers: Arc<RwLock<Vec<ControllerHandle>>>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl OpsState {
    /// A state over the runtime's informers, with no controller yet.
    pub fn new(informers: InformerRegistry) -> Self {
        Self {
            informers,
            controllers: Arc::default(),
            started: Arc::default(),
        }
    }

    /// Adds a running controller.
    pub fn add(&self, controller: ControllerHandle) {
        self.controllers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(controller);
    }

    /// Marks start-up as finished: `/readyz` answers 200 once every
    /// informer has synced too.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    fn ready(&self) -> bool {
        self.started.load(Ordering::SeqCst)
            && self
                .informers
                .all()
                .iter()
                .all(|informer| informer.is_synced())
    }
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
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the operations endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    if state.ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "informers not synced yet")
    }
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&state),
    )
}

/// The metrics in Prometheus text format.
pub fn render(state: &OpsState) -> String {
    let mut out = String::new();
    let controllers = state
        .controllers
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let counter = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    counter(
        &mut out,
        "paddock_reconciles_total",
        "Reconciles started.",
        "counter",
    );
    for controller in &controllers {
        let _ = writeln!(
            out,
            "paddock_reconciles_total{{controller=\"{}\",digest=\"{}\"}} {}",
            controller.name(),
            controller.digest(),
            ControllerStats::get(&controller.stats().reconciles)
        );
    }
    counter(
        &mut out,
        "paddock_guest_errors_total",
        "Failed guest calls by kind.",
        "counter",
    );
    for controller in &controllers {
        for (kind, value) in GUEST_ERROR_KINDS
            .iter()
            .zip(&controller.stats().guest_errors_by_kind)
        {
            let _ = writeln!(
                out,
                "paddock_guest_errors_total{{controller=\"{}\",kind=\"{kind}\"}} {}",
                controller.name(),
                ControllerStats::get(value)
            );
        }
    }
    counter(
        &mut out,
        "paddock_actions_total",
        "Actions by result.",
        "counter",
    );
    for controller in &controllers {
        let stats = controller.stats();
        for (result, value) in [
            ("performed", &stats.actions),
            ("failed", &stats.action_errors),
            ("denied", &stats.denied),
        ] {
            let _ = writeln!(
                out,
                "paddock_actions_total{{controller=\"{}\",result=\"{result}\"}} {}",
                controller.name(),
                ControllerStats::get(value)
            );
        }
    }
    counter(
        &mut out,
        "paddock_queue_depth",
        "Keys ready in the work queue.",
        "gauge",
    );
    for controller in &controllers {
        let queue = controller.queue_metrics();
        let _ = writeln!(
            out,
            "paddock_queue_depth{{controller=\"{}\"}} {}",
            controller.name(),
            queue.depth
        );
    }
    counter(
        &mut out,
        "paddock_queue_adds_total",
        "Keys added to the work queue.",
        "counter",
    );
    for controller in &controllers {
        let queue = controller.queue_metrics();
        let _ = writeln!(
            out,
            "paddock_queue_adds_total{{controller=\"{}\"}} {}",
            controller.name(),
            queue.adds
        );
    }
    counter(
        &mut out,
        "paddock_queue_retries_total",
        "Rate-limited re-adds (retries).",
        "counter",
    );
    for controller in &controllers {
        let queue = controller.queue_metrics();
        let _ = writeln!(
            out,
            "paddock_queue_retries_total{{controller=\"{}\"}} {}",
            controller.name(),
            queue.retries
        );
    }
    counter(
        &mut out,
        "paddock_reconcile_duration_seconds",
        "Reconcile latency: guest call and actions.",
        "histogram",
    );
    for controller in &controllers {
        let stats = controller.stats();
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&stats.latency_buckets) {
            cumulative += ControllerStats::get(bucket);
            let _ = writeln!(
                out,
                "paddock_reconcile_duration_seconds_bucket{{controller=\"{}\",le=\"{bound}\"}} {cumulative}",
                controller.name()
            );
        }
        cumulative += ControllerStats::get(&stats.latency_buckets[LATENCY_BUCKETS.len()]);
        let name = controller.name();
        let sum = ControllerStats::get(&stats.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(
            out,
            "paddock_reconcile_duration_seconds_bucket{{controller=\"{name}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "paddock_reconcile_duration_seconds_sum{{controller=\"{name}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "paddock_reconcile_duration_seconds_count{{controller=\"{name}\"}} {cumulative}"
        );
    }
    let informers = state.informers.all();
    counter(
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
    counter(
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
    counter(
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
