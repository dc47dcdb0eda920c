//! A guest that writes down what it is handed, for the projection tests.
//!
//! It reconciles the ConfigMaps labelled `seen=probe` and reads only their
//! `data.keep` (its projection). Reconciling the one named `probe`, it
//! creates the ConfigMap `probe-seen` (unlabelled, so not reconciled in
//! turn) whose `data` holds the JSON text it was handed: `object`, the
//! probe itself; `cached`, the ConfigMap `other` as `cache::get` answers
//! it; `listed`, the ConfigMaps `cache::list` answers, as a JSON array.

use paddock_guest::{
    Action, Controller, Error, Info, ObjectRef, Outcome, Projection, Request, Watch, cache, json,
};

/// The controller.
#[derive(Debug)]
pub struct Seen;

impl Controller for Seen {
    fn describe() -> Info {
        Info::new("seen")
            .watch(Watch::primary("v1", "ConfigMap").with_label_selector("seen=probe"))
            .project(Projection::new("v1", "ConfigMap", &[".data.keep"]))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let probe = request.object;
        if probe.name() != "probe" {
            return Ok(Outcome::done());
        }
        let namespace = probe.namespace().unwrap_or("default");
        let cached = cache::get(&ObjectRef::namespaced(
            "v1",
            "ConfigMap",
            namespace,
            "other",
        ))
        .map(|other| other.to_json())
        .unwrap_or_default();
        let listed: Vec<String> = cache::list("v1", "ConfigMap", Some(namespace), None)
            .iter()
            .map(paddock_guest::Object::to_json)
            .collect();
        Ok(Outcome::done().with(Action::apply(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "probe-seen", "namespace": namespace},
            "data": {
                "object": probe.to_json(),
                "cached": cached,
                "listed": format!("[{}]", listed.join(",")),
            },
        }))))
    }
}

paddock_guest::export_controller!(Seen);
