//! The baselines Paddock is measured against, not part of the product:
//! replica-floor's logic as a native kube-runtime `Controller`, and the
//! same controller delegating its decision to a local HTTP JSON webhook, in
//! the style of Metacontroller or shell-operator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::webhook;

/// The annotation that sets the floor (as replica-floor's).
pub const ANNOTATION: &str = "paddock.dev/min-replicas";

/// replica-floor's decision on a Deployment as JSON: the replicas to scale
/// to, if it is below its floor.
pub fn decide(deployment: &Value) -> Option<u32> {
    if deployment["metadata"]["deletionTimestamp"].is_string() {
        return None;
    }
    let floor: u32 = deployment["metadata"]["annotations"][ANNOTATION]
        .as_str()?
        .trim()
        .parse()
        .ok()?;
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    (replicas < i64::from(floor)).then_some(floor)
}

/// The webhook's answer for one Deployment: the actions, as JSON.
pub fn webhook_answer(body: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<Value>(body) {
        Ok(deployment) => match decide(&deployment) {
            Some(floor) => json!({"scale": floor, "event": {
                "reason": "ScaledUp",
                "message": format!("scaled to {floor} replicas to meet {ANNOTATION}"),
            }}),
            None => json!({}),
        },
        Err(error) => json!({"error": error.to_string()}),
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

/// How the native controller decides.
#[derive(Debug, Clone)]
pub enum Decider {
    /// In-process: the logic compiled into the controller.
    Native,
    /// A POST of the object's JSON to a local webhook.
    Webhook(webhook::Client),
}

/// Counters of a native controller.
#[derive(Debug, Default)]
pub struct Counters {
    /// Reconciles run.
    pub reconciles: AtomicU64,
    /// Reconciles that failed.
    pub errors: AtomicU64,
}

struct Context {
    client: Client,
    decider: Decider,
    counters: Arc<Counters>,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("webhook: {0}")]
    Webhook(String),
}

async fn reconcile(
    deployment: Arc<Deployment>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    context.counters.reconciles.fetch_add(1, Ordering::Relaxed);
    let floor = match &context.decider {
        Decider::Native => {
            // The same work as a guest call: the object as JSON, decided.
            let value = serde_json::to_value(deployment.as_ref())
                .map_err(|error| ReconcileError::Webhook(error.to_string()))?;
            decide(&value)
        }
        Decider::Webhook(hook) => {
            let body = serde_json::to_vec(deployment.as_ref())
                .map_err(|error| ReconcileError::Webhook(error.to_string()))?;
            let answer = hook.call(body).await.map_err(ReconcileError::Webhook)?;
            let answer: Value = serde_json::from_slice(&answer)
                .map_err(|error| ReconcileError::Webhook(error.to_string()))?;
            answer["scale"]
                .as_u64()
                .and_then(|floor| u32::try_from(floor).ok())
        }
    };
    let Some(floor) = floor else {
        return Ok(Action::await_change());
    };
    let namespace = deployment.namespace().unwrap_or_else(|| "default".into());
    let name = deployment.name_any();
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
    deployments
        .patch_scale(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": floor}})),
        )
        .await?;
    // The Event as kube-runtime's own `Recorder` writes it (and Paddock):
    // `events.k8s.io/v1`, named `<object>.<nanoseconds in hex>`.
    let events: Api<Event> = Api::namespaced(context.client.clone(), &namespace);
    let now = jiff::Timestamp::now();
    events
        .create(
            &PostParams::default(),
            &Event {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                    namespace: Some(namespace.clone()),
                    ..Default::default()
                },
                event_time: Some(MicroTime(now)),
                action: Some("Reconcile".into()),
                reason: Some("ScaledUp".into()),
                note: Some(format!("scaled to {floor} replicas to meet {ANNOTATION}")),
                type_: Some("Normal".into()),
                regarding: Some(ObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: Some("Deployment".into()),
                    name: Some(name.clone()),
                    namespace: Some(namespace),
                    uid: deployment.uid(),
                    ..Default::default()
                }),
                reporting_controller: Some("native-floor".into()),
                reporting_instance: Some("native-floor".into()),
                ..Default::default()
            },
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Deployment>, _: &ReconcileError, context: Arc<Context>) -> Action {
    context.counters.errors.fetch_add(1, Ordering::Relaxed);
    Action::requeue(Duration::from_millis(100))
}

/// Runs replica-floor as a kube-runtime `Controller` over every Deployment,
/// with at most `concurrency` reconciles at once, until the stream ends.
pub async fn run(client: Client, decider: Decider, concurrency: u16, counters: Arc<Counters>) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let context = Arc::new(Context {
        client,
        decider,
        counters,
    });
    Controller::new(deployments, watcher::Config::default())
        .with_config(Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
}
