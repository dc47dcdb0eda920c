//! A guest for the routing tests: a cluster-scoped primary with namespaced
//! children, and a `map` that fails until the cache holds what it needs.
//!
//! It reconciles Namespaces labelled `keeper.paddock.dev/keep`. For each it
//! server-side applies a ConfigMap `keeper` in that namespace, owned by the
//! Namespace (`controller: true`), whose data names the owner and counts
//! the Secrets the cache holds in the namespace.
//!
//! A deleted Namespace is answered with a Normal event `Forgotten` (in
//! `default`, as events about cluster-scoped objects are).
//!
//! Secrets are mapped: a changed Secret maps to its namespace's Namespace,
//! but only once a ConfigMap `gate` exists in that namespace. Until then
//! `map` traps, as a guest whose lookup is not ready yet would.

use paddock_guest::{
    Action, Change, Controller, Error, Info, Object, ObjectRef, Outcome, Request, Watch, cache,
    json,
};

/// The controller.
#[derive(Debug)]
pub struct Keeper;

impl Controller for Keeper {
    fn describe() -> Info {
        Info::new("keeper")
            .watch(Watch::primary("v1", "Namespace").with_label_selector("keeper.paddock.dev/keep"))
            .watch(Watch::owned("v1", "ConfigMap"))
            .watch(Watch::mapped("v1", "Secret"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        if request.change == Change::Deleted {
            // Its ConfigMap went with it; say that the deletion was seen.
            return Ok(Outcome::done().with(Action::event(
                request.object.object_ref(),
                "Forgotten",
                "the Namespace is gone",
            )));
        }
        let namespace = request.object;
        let name = namespace.name();
        let secrets = cache::list("v1", "Secret", Some(name), None).len();
        Ok(Outcome::done().with(Action::apply_owned(
            &namespace,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"namespace": name, "name": "keeper"},
                "data": {"owner": name, "secrets": secrets.to_string()},
            }),
        )))
    }

    fn map(changed: Object) -> Vec<ObjectRef> {
        let Some(namespace) = changed.namespace() else {
            return Vec::new();
        };
        let gate = ObjectRef::namespaced("v1", "ConfigMap", namespace, "gate");
        assert!(
            cache::get(&gate).is_some(),
            "no ConfigMap `gate` in {namespace} yet"
        );
        vec![ObjectRef::cluster("v1", "Namespace", namespace)]
    }
}

paddock_guest::export_controller!(Keeper);
