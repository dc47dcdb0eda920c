//! The sandbox holds against purpose-built hostile guests: each limit fails
//! its call with its own error, the host carries on, and the next call works.

use std::sync::Arc;
use std::time::Duration;

use paddock::actions::{Action, Outcome};
use paddock::harness::FixtureCache;
use paddock::wasm::{Change, EmptyCache, Guest, GuestError, Instances, Limits, LoadOptions};
use paddock_tests::{engine, guest};
use serde_json::{Value, json};

const MEMORY_CAP: u64 = 32 * 1024 * 1024;
const DEADLINE: Duration = Duration::from_millis(100);

fn hostile() -> Guest {
    hostile_with(Instances::default())
}

fn hostile_with(instances: Instances) -> Guest {
    engine()
        .load(
            &guest("hostile"),
            LoadOptions::default()
                .limits(
                    Limits::default()
                        .memory_bytes(MEMORY_CAP)
                        .deadline(DEADLINE),
                )
                .instances(instances),
        )
        .expect("the hostile guest loads")
}

fn config_map(mode: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("mode-{mode}"),
            "namespace": "default",
            "annotations": {"paddock.dev/test-mode": mode},
        },
    })
    .to_string()
}

fn reconcile(guest: &Guest, mode: &str) -> Result<Outcome, GuestError> {
    guest.reconcile(&config_map(mode), Change::Applied, 0, Arc::new(EmptyCache))
}

fn event_message(outcome: &Outcome, index: usize) -> &str {
    match &outcome.actions[index] {
        Action::Event { message, .. } => message,
        other => panic!("action #{index} should be an event, got {other:?}"),
    }
}

/// The guest still serves a good call after a failed one.
fn assert_recovers(guest: &Guest) {
    let outcome = reconcile(guest, "behave").expect("the next good call succeeds");
    assert_eq!(event_message(&outcome, 0), "all good");
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline() {
    let guest = hostile();
    let error = reconcile(&guest, "loop").expect_err("the loop never returns");
    assert!(
        matches!(&error, GuestError::Deadline { guest, deadline } if guest == "hostile" && *deadline == DEADLINE),
        "expected a deadline error, got {error:?}"
    );
    assert_eq!(
        error.to_string(),
        "guest `hostile` ran past its deadline of 100 ms and was stopped"
    );
    assert_recovers(&guest);
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_cap() {
    let guest = hostile();
    let error = reconcile(&guest, "allocate").expect_err("allocation is unbounded");
    match &error {
        GuestError::MemoryLimit {
            guest,
            limit,
            requested,
        } => {
            assert_eq!(guest, "hostile");
            assert_eq!(*limit, MEMORY_CAP);
            assert!(*requested > MEMORY_CAP, "asked for {requested}");
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("exceeded its memory limit of 33554432 bytes")
    );
    assert_recovers(&guest);
}

#[test]
fn a_panic_is_a_trap_that_carries_the_panic_message() {
    let guest = hostile();
    let error = reconcile(&guest, "trap").expect_err("the guest panics");
    assert!(matches!(error, GuestError::Trap { .. }), "got {error:?}");
    assert!(
        error
            .to_string()
            .contains("panicked: hostile guest panicked on purpose"),
        "the message should carry the panic: {error}"
    );
    assert_recovers(&guest);
}

#[test]
fn an_action_that_is_not_an_object_fails_the_whole_reconcile() {
    let guest = hostile();
    let error = reconcile(&guest, "not-an-object").expect_err("malformed output");
    let GuestError::Malformed {
        guest: name,
        source,
    } = &error
    else {
        panic!("expected malformed output, got {error:?}");
    };
    assert_eq!(name, "hostile");
    assert_eq!(source.index, 1, "the first, good action is not the culprit");
    assert_eq!(source.verb, "create");
    assert_eq!(source.problem, "expected a JSON object, got an array");
    assert_recovers(&guest);
}

#[test]
fn an_object_without_a_name_is_malformed() {
    let guest = hostile();
    let error = reconcile(&guest, "missing-name").expect_err("malformed output");
    let GuestError::Malformed { source, .. } = &error else {
        panic!("expected malformed output, got {error:?}");
    };
    assert_eq!(
        source.problem,
        "`metadata.name` and `metadata.generateName` are both missing"
    );
}

#[test]
fn guest_errors_keep_their_kind() {
    let guest = hostile();
    let error = reconcile(&guest, "fail-transient").expect_err("the guest fails");
    assert!(!error.is_permanent());
    assert_eq!(error.kind(), "transient");
    assert_eq!(
        error.to_string(),
        "guest `hostile` failed (transient): asked to fail"
    );
}

#[test]
fn printing_never_fails_the_guest() {
    let guest = hostile();
    let outcome = reconcile(&guest, "print").expect("stdout and stderr are writable");
    assert_eq!(event_message(&outcome, 0), "printed two lines");
}

fn count(guest: &Guest) -> String {
    let outcome = reconcile(guest, "count").expect("counts");
    event_message(&outcome, 0).to_owned()
}

/// Fresh instances come from the engine's pool, whose slots keep the pages
/// an instance wrote mapped for the next instance of the same component:
/// the counter's page is reset in place, for the same guest and for
/// another guest (another tenant) of the same component alike.
#[test]
fn no_state_survives_from_one_call_to_the_next() {
    let guest = hostile_with(Instances::FreshPerCall);
    let other = hostile_with(Instances::FreshPerCall);
    for _ in 0..3 {
        for guest in [&guest, &other] {
            let outcome = reconcile(guest, "count").expect("counts");
            assert_eq!(
                event_message(&outcome, 0),
                "1",
                "every call gets a fresh instance"
            );
        }
    }
}

/// A guest that writes its heap in hundreds of separate runs of pages (more
/// than a pooled slot's page scan reports at once) finds none of it in the
/// next fresh instance, whichever guest of the component the slot served
/// last; a reused instance, called again, finds all of it, so the probe sees
/// leftovers where there are some.
#[test]
fn a_scattered_heap_does_not_survive_into_the_next_fresh_instance() {
    let reused = hostile();
    assert_eq!(scattered(&reused), 0, "the first call finds a clean heap");
    assert_eq!(
        scattered(&reused),
        512,
        "a reused instance finds what its last call wrote"
    );
    let guest = hostile_with(Instances::FreshPerCall);
    let other = hostile_with(Instances::FreshPerCall);
    for round in 0..3 {
        for guest in [&guest, &other] {
            assert_eq!(
                scattered(guest),
                0,
                "round {round}: a fresh instance finds nothing of the last one's heap"
            );
        }
    }
}

fn scattered(guest: &Guest) -> usize {
    let outcome = reconcile(guest, "scatter").expect("scatters");
    event_message(&outcome, 0)
        .parse()
        .expect("the guest reports a count")
}

#[test]
fn reused_instances_keep_state_within_one_guest_only() {
    let first = hostile();
    assert_eq!(first.instances(), Instances::Reused, "reuse is the default");
    assert_eq!(count(&first), "1");
    assert_eq!(count(&first), "2", "the instance served the second call");
    assert_eq!(first.idle_instances(), 1);
    let clone = first.clone();
    assert_eq!(count(&clone), "3", "clones share one guest's instances");

    let second = hostile();
    assert_eq!(second.idle_instances(), 0);
    assert_eq!(count(&second), "1", "another guest never gets them");
    assert_eq!(count(&first), "4");
}

#[test]
fn a_failed_call_discards_its_instance() {
    let guest = hostile();
    assert_eq!(count(&guest), "1");
    assert_eq!(count(&guest), "2");
    for mode in ["trap", "loop", "allocate", "not-an-object"] {
        reconcile(&guest, mode).expect_err("the call fails");
        assert_eq!(guest.idle_instances(), 0, "{mode}: the instance is gone");
        assert_eq!(count(&guest), "1", "{mode}: the next call starts fresh");
    }
}

#[test]
fn a_guest_error_keeps_the_instance() {
    let guest = hostile();
    assert_eq!(count(&guest), "1");
    reconcile(&guest, "fail-transient").expect_err("the guest fails");
    assert_eq!(
        count(&guest),
        "2",
        "an error the guest answered is not a fault"
    );
}

#[test]
fn concurrent_callers_get_an_instance_each() {
    let guest = hostile();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| reconcile(&guest, "slow")))
            .collect();
        for handle in handles {
            handle.join().expect("no panic").expect("the call succeeds");
        }
    });
    let idle = guest.idle_instances();
    assert!(
        (1..=4).contains(&idle),
        "at most one idle instance per concurrent caller, got {idle}"
    );
}

#[test]
fn calls_from_many_threads_run_side_by_side() {
    let guest = hostile_with(Instances::FreshPerCall);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| reconcile(&guest, "count")))
            .collect();
        for handle in handles {
            let outcome = handle.join().expect("no panic").expect("the call succeeds");
            assert_eq!(event_message(&outcome, 0), "1");
        }
    });
}

#[test]
fn the_cache_import_reads_what_the_host_provides() {
    let guest = hostile();
    let cache = FixtureCache::new(vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "other"}}),
    ]);
    let outcome = guest
        .reconcile(&config_map("cache"), Change::Applied, 0, Arc::new(cache))
        .expect("reads the cache");
    assert_eq!(event_message(&outcome, 0), "a,b");
}

#[test]
fn a_guest_gets_no_files_environment_network_or_names() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();

    let probe = engine()
        .load(&guest("sandbox-probe"), LoadOptions::default())
        .expect("the probe loads");
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": "default"},
        "data": {"port": port.to_string()},
    });
    let outcome = probe
        .reconcile(
            &object.to_string(),
            Change::Applied,
            0,
            Arc::new(EmptyCache),
        )
        .expect("the probe answers");
    let Action::Create { object: results } = &outcome.actions[0] else {
        panic!("the probe answers with a create, got {:?}", outcome.actions);
    };
    let data = &results["data"];
    for attempt in [
        "readFile",
        "readDir",
        "readCwd",
        "writeFile",
        "envHome",
        "tcp",
        "dns",
    ] {
        let result = data[attempt].as_str().unwrap_or_default();
        assert!(
            result.starts_with("denied"),
            "{attempt} should be denied, the guest got: {result}"
        );
    }
    assert_eq!(
        data["envCount"],
        Value::from("0"),
        "no environment variables"
    );
    assert_eq!(data["argsCount"], Value::from("0"), "no arguments");
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest must not reach the loopback listener: {other:?}"),
    }
    assert!(!std::path::Path::new("/tmp/paddock-sandbox-probe").exists());
}

#[test]
fn a_guest_sleeping_in_wasi_is_stopped_at_its_deadline() {
    // The guest sleeps 20 s through `wasi:io/poll`, where epoch
    // interruption cannot reach it; the call must still end at 100 ms.
    let guest = hostile();
    let error = reconcile(&guest, "sleep").expect_err("the sleep outlasts the deadline");
    assert!(
        matches!(&error, GuestError::Deadline { deadline, .. } if *deadline == DEADLINE),
        "expected a deadline error, got {error:?}"
    );
    assert_recovers(&guest);
}

#[test]
fn a_describe_that_sleeps_fails_the_load_at_its_deadline() {
    let loaded = engine().load(
        &guest("hostile_describe"),
        LoadOptions::default().limits(Limits::default().deadline(DEADLINE)),
    );
    match loaded {
        Err(paddock::wasm::LoadError::Describe { source, .. }) => assert!(
            matches!(*source, GuestError::Deadline { .. }),
            "expected a deadline error, got {source:?}"
        ),
        other => panic!("expected describe to fail at its deadline, got {other:?}"),
    }
}

/// The hostile guest with `limits`, and time enough to build 100,000 actions.
fn hostile_limited(limits: Limits) -> Guest {
    engine()
        .load(
            &guest("hostile"),
            LoadOptions::default().limits(limits.deadline(Duration::from_secs(10))),
        )
        .expect("the hostile guest loads")
}

#[test]
fn an_answer_of_too_many_actions_is_refused_whole() {
    let guest = hostile_limited(Limits::default());
    let error = reconcile(&guest, "flood-actions").expect_err("100,000 actions");
    assert!(
        matches!(
            &error,
            GuestError::OutputLimit {
                limit: "maxActions",
                ..
            }
        ),
        "got {error:?}"
    );
    assert_eq!(
        error.to_string(),
        "guest `hostile` answered 100000 actions, more than the 1000 allowed (limits.maxActions)"
    );
    assert_eq!(guest.limit_hits().actions, 1);
    assert_recovers(&guest);
}

#[test]
fn an_answer_larger_than_its_byte_limit_is_refused() {
    // 100,000 events of some 60 bytes each: allowed by count, over 64 KiB.
    let guest = hostile_limited(
        Limits::default()
            .max_actions(200_000)
            .max_answer_bytes(64 * 1024),
    );
    let error = reconcile(&guest, "flood-actions").expect_err("too large");
    assert!(
        matches!(
            &error,
            GuestError::OutputLimit {
                limit: "maxAnswerBytes",
                ..
            }
        ),
        "got {error:?}"
    );
    assert_eq!(guest.limit_hits().answer_bytes, 1);
}

#[test]
fn a_log_flood_is_cut_to_the_line_and_call_budgets_and_counted() {
    let guest = hostile_limited(Limits::default());
    // 64 lines of 1 MiB: each line is cut to 4 KiB, and the call's 64 KiB
    // budget ends the rest. The reconcile itself succeeds.
    let outcome = reconcile(&guest, "flood-log").expect("logging never fails a call");
    assert_eq!(event_message(&outcome, 0), "64 MiB");
    let hits = guest.limit_hits();
    assert!(hits.log_lines_cut >= 1, "{hits:?}");
    assert!(hits.log_lines_dropped >= 40, "{hits:?}");
    assert_eq!(hits.log_lines_cut + hits.log_lines_dropped, 64, "{hits:?}");
}

#[test]
fn a_requeue_shorter_than_the_floor_is_raised_to_it() {
    let guest = hostile();
    let outcome = reconcile(&guest, "requeue-zero").expect("answers");
    assert_eq!(
        outcome.requeue_after,
        Some(paddock::wasm::DEFAULT_MIN_REQUEUE_AFTER)
    );
    assert_eq!(guest.limit_hits().requeue_raised, 1);
    let fifty = reconcile(&guest, "requeue").expect("answers");
    assert_eq!(
        fifty.requeue_after,
        Some(paddock::wasm::DEFAULT_MIN_REQUEUE_AFTER)
    );
}
