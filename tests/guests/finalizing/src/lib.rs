//! A guest that finalizes its primary objects, for the finalizer tests.
//!
//! It reconciles ConfigMaps labelled `finalize.paddock.dev/watch` and
//! declares that it finalizes them. A reconcile about a deletion records
//! its cleanup in a ConfigMap `<name>-cleaned` beside the object: the
//! object's uid and how the deletion reached it (`being-deleted` while the
//! finalizer held the object, `deleted` once it was gone). Other reconciles
//! do nothing.

use paddock_guest::{Action, Change, Controller, Error, Info, Outcome, Request, Watch, json};

/// The controller.
#[derive(Debug)]
pub struct Finalizing;

impl Controller for Finalizing {
    fn describe() -> Info {
        Info::new("finalizing")
            .watch(
                Watch::primary("v1", "ConfigMap").with_label_selector("finalize.paddock.dev/watch"),
            )
            .finalizes()
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        if !request.is_deletion() {
            return Ok(Outcome::done());
        }
        let object = &request.object;
        let seen = match request.change {
            Change::Applied => "being-deleted",
            Change::Deleted => "deleted",
        };
        Ok(Outcome::done().with(Action::apply(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "namespace": object.namespace().unwrap_or("default"),
                "name": format!("{}-cleaned", object.name()),
            },
            "data": {"uid": object.uid(), "seen": seen},
        }))))
    }
}

paddock_guest::export_controller!(Finalizing);
