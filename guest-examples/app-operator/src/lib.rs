//! `app-operator`: runs an `App` as a Deployment behind a Service.
//!
//! An `App` (`examples.paddock.dev/v1`, CRD in `deploy/crd.yaml`) names a
//! container image, a replica count and a port. The operator server-side
//! applies a Deployment and a Service owned by the App (so they are
//! garbage-collected with it, and their changes reconcile it), and reports
//! `status.readyReplicas` and a `Ready` condition from the Deployment's
//! status. Fields it does not set are left to others; fields it sets are
//! put back if someone changes them.

use paddock_guest::{
    Action, Change, Controller, Error, Info, Object, ObjectRef, Outcome, Request, Value, Watch,
    cache, json, time,
};

/// The App's apiVersion.
pub const API_VERSION: &str = "examples.paddock.dev/v1";

/// The controller.
#[derive(Debug)]
pub struct AppOperator;

impl Controller for AppOperator {
    fn describe() -> Info {
        Info::new("app-operator")
            .watch(Watch::primary(API_VERSION, "App"))
            .watch(Watch::owned("apps/v1", "Deployment"))
            .watch(Watch::owned("v1", "Service"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let app = request.object;
        if request.change == Change::Deleted || app.is_being_deleted() {
            // The Deployment and Service carry owner references to the App:
            // the cluster's garbage collector removes them.
            return Ok(Outcome::done());
        }
        let Some(image) = app.str_at("/spec/image").filter(|image| !image.is_empty()) else {
            let mut outcome = Outcome::done().with(Action::warning(
                app.object_ref(),
                "InvalidSpec",
                "spec.image is required",
            ));
            let ready = condition("False", "InvalidSpec", "spec.image is required", &app);
            if let Some(update) = status_update(&app, 0, ready) {
                outcome.push(update);
            }
            return Ok(outcome);
        };
        let replicas = app.i64_at("/spec/replicas").unwrap_or(1).max(0);
        let port = app.i64_at("/spec/port").unwrap_or(8080);

        let mut outcome = Outcome::done()
            .with(Action::apply_owned(
                &app,
                deployment(&app, image, replicas, port),
            ))
            .with(Action::apply_owned(&app, service(&app)));

        let current = app.namespace().and_then(|namespace| {
            cache::get(&ObjectRef::namespaced(
                "apps/v1",
                "Deployment",
                namespace,
                app.name(),
            ))
        });
        let ready_replicas = current
            .as_ref()
            .and_then(|deployment| deployment.i64_at("/status/readyReplicas"))
            .unwrap_or(0);
        let ready = match current {
            None => condition(
                "False",
                "DeploymentPending",
                "the Deployment is being created",
                &app,
            ),
            Some(_) if ready_replicas >= replicas => condition(
                "True",
                "AllReplicasReady",
                &format!("{ready_replicas}/{replicas} replicas are ready"),
                &app,
            ),
            Some(_) => condition(
                "False",
                "ReplicasNotReady",
                &format!("{ready_replicas}/{replicas} replicas are ready"),
                &app,
            ),
        };
        if let Some(update) = status_update(&app, ready_replicas, ready) {
            outcome.push(update);
        }
        Ok(outcome)
    }
}

fn labels(app: &Object) -> Value {
    json!({
        "app.kubernetes.io/name": app.name(),
        "app.kubernetes.io/managed-by": "paddock-app-operator",
    })
}

fn deployment(app: &Object, image: &str, replicas: i64, port: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.name(), "labels": labels(app)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": app.name()}},
            "template": {
                "metadata": {"labels": labels(app)},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": image,
                        "ports": [{"name": "http", "containerPort": port}],
                    }],
                },
            },
        },
    })
}

fn service(app: &Object) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app.name(), "labels": labels(app)},
        "spec": {
            "selector": {"app.kubernetes.io/name": app.name()},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    })
}

/// The `Ready` condition, keeping the previous transition time when the
/// status did not change.
fn condition(status: &str, reason: &str, message: &str, app: &Object) -> Value {
    let previous = app
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition["type"] == "Ready")
        });
    let since = match previous {
        Some(previous) if previous["status"] == status => previous["lastTransitionTime"]
            .as_str()
            .map_or_else(time::now, str::to_owned),
        _ => time::now(),
    };
    json!({
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": app.generation().unwrap_or(0),
        "lastTransitionTime": since,
    })
}

/// An `update-status` action when the status differs from what the App
/// already reports; nothing otherwise, so a settled App costs no writes.
fn status_update(app: &Object, ready_replicas: i64, ready: Value) -> Option<Action> {
    let status = json!({
        "observedGeneration": app.generation().unwrap_or(0),
        "readyReplicas": ready_replicas,
        "conditions": [ready],
    });
    if app.pointer("/status") == Some(&status) {
        return None;
    }
    let mut updated = app.clone();
    if let Some(object) = updated.value_mut().as_object_mut() {
        object.insert("status".to_owned(), status);
    }
    Some(Action::update_status(updated))
}

paddock_guest::export_controller!(AppOperator);
