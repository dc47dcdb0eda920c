//! The sandbox holds against hostile guests written in Python and
//! JavaScript too: each limit fails its call with its own error, and the
//! next call of the same guest works, in a fresh instance.

use std::sync::Arc;
use std::time::Duration;

use paddock::actions::{Action, Outcome};
use paddock::wasm::{Change, EmptyCache, Guest, GuestError, Limits, LoadOptions, Read};
use paddock_tests::{engine, guest};
use serde_json::json;

/// Interpreters need room: 64 MiB is the default cap.
const MEMORY_CAP: u64 = 64 * 1024 * 1024;
const DEADLINE: Duration = Duration::from_millis(300);
/// The deadline where another limit is under test: filling 64 MiB from an
/// interpreter takes longer than `DEADLINE` on a loaded 2-core machine,
/// and that race is not what those tests ask about.
const AMPLE_DEADLINE: Duration = Duration::from_secs(20);

/// The hostile guests, by component name.
const HOSTILE: [&str; 2] = ["hostile-py", "hostile-js"];

fn hostile(name: &str) -> Guest {
    hostile_with(name, DEADLINE)
}

fn hostile_with(name: &str, deadline: Duration) -> Guest {
    hostile_under(name, Limits::default().deadline(deadline))
}

/// The guest under `limits`, with the interpreters' memory cap.
fn hostile_under(name: &str, limits: Limits) -> Guest {
    engine()
        .load(
            &guest(name),
            LoadOptions::default().limits(limits.memory_bytes(MEMORY_CAP)),
        )
        .unwrap_or_else(|error| panic!("{name} loads: {error:#}"))
}

fn reconcile(guest: &Guest, mode: &str) -> Result<Outcome, GuestError> {
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("mode-{mode}"),
            "namespace": "default",
            "annotations": {"paddock.dev/test-mode": mode},
        },
    });
    guest.reconcile(
        &object.to_string(),
        Change::Applied,
        0,
        Arc::new(EmptyCache),
    )
}

fn event_message(outcome: &Outcome) -> &str {
    match outcome.actions.first() {
        Some(Action::Event { message, .. }) => message,
        other => panic!("the answer should be an event, got {other:?}"),
    }
}

/// Counts twice (the instance is reused), fails with `mode`, and counts
/// again from 1: the failed instance was discarded and the guest carries on.
fn fails_then_recovers(name: &str, mode: &str, deadline: Duration) -> GuestError {
    fails_then_recovers_under(name, mode, Limits::default().deadline(deadline))
}

/// As `fails_then_recovers`, under `limits`.
fn fails_then_recovers_under(name: &str, mode: &str, limits: Limits) -> GuestError {
    let guest = hostile_under(name, limits);
    assert_eq!(
        event_message(&reconcile(&guest, "count").expect("counts")),
        "1"
    );
    assert_eq!(
        event_message(&reconcile(&guest, "count").expect("counts")),
        "2"
    );
    let error = reconcile(&guest, mode).expect_err("the call fails");
    let outcome = reconcile(&guest, "count").expect("the next call succeeds");
    assert_eq!(
        event_message(&outcome),
        "1",
        "{name}: a fresh instance after {mode}"
    );
    error
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    for name in HOSTILE {
        let error = fails_then_recovers(name, "loop", DEADLINE);
        assert!(
            matches!(&error, GuestError::Deadline { deadline, .. } if *deadline == DEADLINE),
            "{name}: expected a deadline error, got {error:?}"
        );
    }
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_cap() {
    for name in HOSTILE {
        let error = fails_then_recovers(name, "allocate", AMPLE_DEADLINE);
        match &error {
            GuestError::MemoryLimit {
                limit, requested, ..
            } => {
                assert_eq!(*limit, MEMORY_CAP, "{name}");
                assert!(*requested > MEMORY_CAP, "{name} asked for {requested}");
            }
            other => panic!("{name}: expected a memory limit error, got {other:?}"),
        }
    }
}

#[test]
fn an_uncaught_exception_is_a_trap() {
    for name in HOSTILE {
        let error = fails_then_recovers(name, "trap", DEADLINE);
        assert!(
            matches!(error, GuestError::Trap { .. }),
            "{name}: expected a trap, got {error:?}"
        );
    }
}

/// The JavaScript SDK answers through `reconcile-json`: the host reads
/// the JSON and holds it to the same limits and checks as an outcome of
/// records. (Through `reconcile`, a number where a string belongs would
/// have thrown inside the bindings: a trap, not a malformed answer.)
#[test]
fn a_javascript_answer_in_json_is_held_to_the_limits_and_the_contract() {
    let name = "hostile-js";
    let limits = Limits::default().deadline(AMPLE_DEADLINE);
    let error = fails_then_recovers_under(name, "flood", limits.max_answer_bytes(16 * 1024));
    assert!(
        matches!(
            &error,
            GuestError::OutputLimit {
                limit: "maxAnswerBytes",
                ..
            }
        ),
        "{name}: expected the answer-bytes limit, got {error:?}"
    );
    let error = fails_then_recovers_under(name, "malformed", limits);
    match &error {
        GuestError::Malformed { source, .. } => {
            assert_eq!((source.index, source.verb), (0, "record-event"), "{error}");
            assert!(
                source.problem.contains("invalid type: integer `42`"),
                "{error}"
            );
        }
        other => panic!("{name}: expected a malformed answer, got {other:?}"),
    }
    // Within the limits, the same event crosses whole.
    let guest = hostile_with(name, AMPLE_DEADLINE);
    let outcome = reconcile(&guest, "flood").expect("64 KiB is within the default limit");
    assert_eq!(event_message(&outcome).len(), 64 * 1024);
}

#[test]
fn a_well_behaved_call_answers() {
    for name in HOSTILE {
        let guest = hostile(name);
        assert_eq!(guest.info().name, "hostile", "{name}");
        let outcome = reconcile(&guest, "behave").expect("behaves");
        assert_eq!(event_message(&outcome), "all good", "{name}");
    }
}

#[test]
fn the_sdks_declare_finalizing_and_reads_and_tell_a_deletion() {
    for name in HOSTILE {
        let guest = hostile(name);
        assert!(guest.info().finalizes, "{name} declares that it finalizes");
        assert_eq!(
            guest.info().reads,
            [Read {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some("default".into()),
            }],
            "{name} declares what it reads"
        );
        let deletion = |deleting: bool, change: Change| {
            let mut metadata = json!({
                "name": "mode-deletion",
                "namespace": "default",
                "annotations": {"paddock.dev/test-mode": "deletion"},
            });
            if deleting {
                metadata["deletionTimestamp"] = json!("2026-12-02T00:00:00Z");
            }
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata});
            let outcome = guest
                .reconcile(&object.to_string(), change, 0, Arc::new(EmptyCache))
                .unwrap_or_else(|error| panic!("{name} answers: {error:#}"));
            event_message(&outcome).to_owned()
        };
        assert_eq!(deletion(false, Change::Applied), "no deletion", "{name}");
        assert_eq!(deletion(true, Change::Applied), "deletion", "{name}");
        assert_eq!(deletion(false, Change::Deleted), "deletion", "{name}");
    }
}
