//! `{{name}}`: a Paddock controller. It labels every ConfigMap
//! `example.com/reconciled: "true"`.

use paddock_guest::{Action, Change, Controller, Error, Info, Outcome, Request, Watch, json};

/// The label this controller sets.
const LABEL: &str = "example.com/reconciled";

/// The controller.
struct Reconciler;

impl Controller for Reconciler {
    fn describe() -> Info {
        Info::new("{{name}}").watch(Watch::primary("v1", "ConfigMap"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let config_map = request.object;
        if request.change == Change::Deleted || config_map.label(LABEL).is_some() {
            return Ok(Outcome::done());
        }
        Ok(Outcome::done().with(Action::merge_patch(
            config_map.object_ref(),
            json!({"metadata": {"labels": {LABEL: "true"}}}),
        )))
    }
}

paddock_guest::export_controller!(Reconciler);
