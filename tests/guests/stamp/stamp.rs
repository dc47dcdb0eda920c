//! A guest built twice, as `stamp-v1` and `stamp-v2`, for the hot-reload
//! tests: two versions of one controller with different desired states.
//!
//! It watches ConfigMaps labelled `paddock.dev/stamp` and stamps each with
//! two annotations: the version that reconciled it last
//! (`stamp.paddock.dev/version`, the crate's name) and the `data.value` it
//! saw (`stamp.paddock.dev/value`). An object stamped by this version with
//! its current value needs nothing.

use paddock_guest::{Action, Change, Controller, Error, Info, Outcome, Request, Watch, json};

/// This build's version: its crate name.
const VERSION: &str = env!("CARGO_PKG_NAME");

/// The controller.
#[derive(Debug)]
pub struct Stamp;

impl Controller for Stamp {
    fn describe() -> Info {
        Info::new("stamp")
            .watch(Watch::primary("v1", "ConfigMap").with_label_selector("paddock.dev/stamp"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let object = request.object;
        if request.change == Change::Deleted || object.is_being_deleted() {
            return Ok(Outcome::done());
        }
        let value = object.str_at("/data/value").unwrap_or("");
        if object.annotation("stamp.paddock.dev/version") == Some(VERSION)
            && object.annotation("stamp.paddock.dev/value") == Some(value)
        {
            return Ok(Outcome::done());
        }
        Ok(Outcome::done().with(Action::merge_patch(
            object.object_ref(),
            json!({"metadata": {"annotations": {
                "stamp.paddock.dev/version": VERSION,
                "stamp.paddock.dev/value": value,
            }}}),
        )))
    }
}

paddock_guest::export_controller!(Stamp);
