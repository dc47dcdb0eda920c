//! Conversions between the SDK's types and the generated bindings.

use std::time::Duration;

use crate::__private::wit;
use crate::{Action, Change, Controller, Error, Info, Object, ObjectRef, Outcome, PatchKind};
use crate::{Relation, Request, Watch};

/// `describe`, converted for the bindings.
pub fn describe<C: Controller>() -> wit::Info {
    info_to_wit(C::describe())
}

/// `finalizes`: what `describe` declares.
pub fn finalizes<C: Controller>() -> bool {
    C::describe().finalizes
}

/// `reads`: what `describe` declares.
pub fn reads<C: Controller>() -> Vec<wit::Read> {
    C::describe()
        .reads
        .into_iter()
        .map(|read| wit::Read {
            api_version: read.api_version,
            kind: read.kind,
            namespace: read.namespace,
        })
        .collect()
}

/// `indexes`: what `describe` declares.
pub fn indexes<C: Controller>() -> Vec<wit::Index> {
    C::describe()
        .indexes
        .into_iter()
        .map(|index| wit::Index {
            name: index.name,
            api_version: index.api_version,
            kind: index.kind,
            paths: index.paths,
        })
        .collect()
}

/// `projections`: what `describe` declares.
pub fn projections<C: Controller>() -> Vec<wit::Projection> {
    C::describe()
        .projections
        .into_iter()
        .map(|projection| wit::Projection {
            api_version: projection.api_version,
            kind: projection.kind,
            paths: projection.paths,
        })
        .collect()
}

/// `reconcile`, converted for the bindings.
pub fn reconcile<C: Controller>(request: wit::Request) -> Result<wit::Outcome, wit::Error> {
    let object = Object::from_host(request.object);
    let change = match request.change {
        wit::Change::Applied => Change::Applied,
        wit::Change::Deleted => Change::Deleted,
    };
    let request = Request {
        object,
        change,
        attempt: request.attempt,
    };
    C::reconcile(request)
        .map(outcome_to_wit)
        .map_err(|error| match error {
            Error::Transient(message) => wit::Error::Transient(message),
            Error::Permanent(message) => wit::Error::Permanent(message),
        })
}

/// `map`, converted for the bindings.
pub fn map<C: Controller>(changed: String) -> Vec<wit::ObjectRef> {
    C::map(Object::from_host(changed))
        .into_iter()
        .map(ref_to_wit)
        .collect()
}

pub(crate) fn ref_to_wit(reference: ObjectRef) -> wit::ObjectRef {
    wit::ObjectRef {
        api_version: reference.api_version,
        kind: reference.kind,
        namespace: reference.namespace,
        name: reference.name,
    }
}

fn info_to_wit(info: Info) -> wit::Info {
    wit::Info {
        name: info.name,
        watches: info.watches.into_iter().map(watch_to_wit).collect(),
    }
}

fn watch_to_wit(watch: Watch) -> wit::Watch {
    wit::Watch {
        api_version: watch.api_version,
        kind: watch.kind,
        relation: match watch.relation {
            Relation::Primary => wit::Relation::Primary,
            Relation::Owned => wit::Relation::Owned,
            Relation::Mapped => wit::Relation::Mapped,
        },
        namespace: watch.namespace,
        label_selector: watch.label_selector,
    }
}

fn outcome_to_wit(outcome: Outcome) -> wit::Outcome {
    wit::Outcome {
        actions: outcome.actions.into_iter().map(action_to_wit).collect(),
        requeue_after_ms: outcome.requeue_after.map(duration_to_ms),
    }
}

fn duration_to_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn action_to_wit(action: Action) -> wit::Action {
    match action {
        Action::Create(object) => wit::Action::Create(object.to_string()),
        Action::Update(object) => wit::Action::Update(object.to_string()),
        Action::UpdateStatus(object) => wit::Action::UpdateStatus(object.to_string()),
        Action::Patch {
            target,
            kind,
            body,
            force,
        } => wit::Action::Patch(wit::Patch {
            target: ref_to_wit(target),
            kind: match kind {
                PatchKind::Merge => wit::PatchKind::Merge,
                PatchKind::Json => wit::PatchKind::Json,
                PatchKind::Strategic => wit::PatchKind::Strategic,
                PatchKind::Apply => wit::PatchKind::Apply,
            },
            body: body.to_string(),
            force,
        }),
        Action::Delete(target) => wit::Action::Delete(ref_to_wit(target)),
        Action::Scale { target, replicas } => wit::Action::Scale(wit::Scale {
            target: ref_to_wit(target),
            replicas,
        }),
        Action::Event {
            regarding,
            warning,
            reason,
            message,
        } => wit::Action::RecordEvent(wit::Event {
            regarding: ref_to_wit(regarding),
            warning,
            reason,
            message,
        }),
    }
}
