//! `replica-floor`: keeps annotated Deployments at or above a minimum.
//!
//! A Deployment annotated `paddock.dev/min-replicas: "N"` whose
//! `spec.replicas` is below N is scaled up to N through its `/scale`
//! subresource, and a Normal `ScaledUp` event says so. An annotation that is
//! not a whole number gets a Warning event instead. Deployments above their
//! floor are left alone: the floor is a minimum, not a target.

use paddock_guest::{Action, Change, Controller, Error, Info, Outcome, Projection, Request, Watch};

/// The annotation that sets the floor.
pub const ANNOTATION: &str = "paddock.dev/min-replicas";

/// The controller.
#[derive(Debug)]
pub struct ReplicaFloor;

impl Controller for ReplicaFloor {
    fn describe() -> Info {
        // Only the annotation and the replicas cross from the host.
        Info::new("replica-floor")
            .watch(Watch::primary("apps/v1", "Deployment"))
            .project(Projection::new(
                "apps/v1",
                "Deployment",
                &[
                    ".metadata.annotations['paddock.dev/min-replicas']",
                    ".spec.replicas",
                ],
            ))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let deployment = request.object;
        if request.change == Change::Deleted || deployment.is_being_deleted() {
            return Ok(Outcome::done());
        }
        let Some(floor) = deployment.annotation(ANNOTATION) else {
            return Ok(Outcome::done());
        };
        let Ok(floor) = floor.trim().parse::<u32>() else {
            return Ok(Outcome::done().with(Action::warning(
                deployment.object_ref(),
                "InvalidMinReplicas",
                format!("annotation {ANNOTATION} is {floor:?}, not a whole number; ignoring it"),
            )));
        };
        // An absent `spec.replicas` means 1, as the API server defaults it.
        let replicas = deployment.i64_at("/spec/replicas").unwrap_or(1);
        if replicas >= i64::from(floor) {
            return Ok(Outcome::done());
        }
        Ok(Outcome::done()
            .with(Action::scale(deployment.object_ref(), floor))
            .with(Action::event(
                deployment.object_ref(),
                "ScaledUp",
                format!("scaled from {replicas} to {floor} replicas to meet {ANNOTATION}"),
            )))
    }
}

paddock_guest::export_controller!(ReplicaFloor);
