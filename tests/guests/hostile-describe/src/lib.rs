//! A guest whose `describe` sleeps 20 s through WASI before answering: a
//! load must end at the deadline instead of waiting for it.

use paddock_guest::{Action, Controller, Error, Info, Outcome, Request, Watch};

/// The controller.
#[derive(Debug)]
pub struct HostileDescribe;

impl Controller for HostileDescribe {
    fn describe() -> Info {
        std::thread::sleep(std::time::Duration::from_secs(20));
        Info::new("hostile-describe").watch(Watch::primary("v1", "ConfigMap"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let me = request.object.object_ref();
        Ok(Outcome::done().with(Action::event(me, "Reconciled", "after a slow describe")))
    }
}

paddock_guest::export_controller!(HostileDescribe);
