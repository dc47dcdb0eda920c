//! `floor-next`: the replica-floor example as a new version might change
//! it, for the shadow-run and replay tests. It answers exactly as
//! `replica-floor` does, except that a floor above [`CAP`] counts as
//! [`CAP`]: on a Deployment whose floor is above 2 and whose replicas are
//! below its floor, it scales to 2 (or, at 2 replicas already, does
//! nothing) where `replica-floor` scales to the floor. Everywhere else the
//! two agree, action for action.
//!
//! For the tests of a candidate that fails, the annotation
//! `floor-next.paddock.dev/fail` makes it trap (`trap`) or run past its
//! deadline (`spin`) on that Deployment.

use paddock_guest::{Action, Change, Controller, Error, Info, Outcome, Request, Watch};

/// The annotation that sets the floor.
const ANNOTATION: &str = "paddock.dev/min-replicas";

/// The highest floor this version keeps.
const CAP: u32 = 2;

/// The annotation that makes this version fail.
const FAIL: &str = "floor-next.paddock.dev/fail";

/// The controller.
#[derive(Debug)]
pub struct FloorNext;

impl Controller for FloorNext {
    fn describe() -> Info {
        Info::new("replica-floor").watch(Watch::primary("apps/v1", "Deployment"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let deployment = request.object;
        match deployment.annotation(FAIL) {
            Some("trap") => panic!("floor-next was told to trap"),
            Some("spin") => {
                let mut turns: u64 = 0;
                loop {
                    turns = std::hint::black_box(turns.wrapping_add(1));
                }
            }
            _ => {}
        }
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
        let replicas = deployment.i64_at("/spec/replicas").unwrap_or(1);
        // The new rule: the floor that counts is at most CAP, but a
        // Deployment is only touched where replica-floor touches it.
        if replicas >= i64::from(floor) {
            return Ok(Outcome::done());
        }
        let target = floor.min(CAP);
        if replicas >= i64::from(target) {
            return Ok(Outcome::done());
        }
        Ok(Outcome::done()
            .with(Action::scale(deployment.object_ref(), target))
            .with(Action::event(
                deployment.object_ref(),
                "ScaledUp",
                format!("scaled from {replicas} to {target} replicas to meet {ANNOTATION}"),
            )))
    }
}

paddock_guest::export_controller!(FloorNext);
