//! A guest that misbehaves on request, for the sandbox tests.
//!
//! The object's annotation `paddock.dev/test-mode` picks the misbehaviour:
//! `loop` (never returns), `allocate` (grows memory without bound), `trap`
//! (panics), `not-an-object` and `missing-name` (malformed actions),
//! `print` (writes to stdout and stderr), `count` (reports how many calls
//! this instance has seen), `fail-transient`, `requeue` (asks to be reconciled again in 50 ms),
//! `slow` (works 20 ms, then reports `data.value` in an event), `cache` (reports what
//! `cache.list` of ConfigMaps returns), `sleep` (sleeps 20 s through WASI, then
//! reports it woke), `flood-actions` (answers 100,000 events), `flood-log` (logs
//! 1 MiB lines, 64 of them), `requeue-zero` (asks to be reconciled again at
//! once), `merge-patch` (merge-patches the object `data.target` names, as
//! `{"apiVersion","kind","namespace","name"}`, with the body in `data.body`) and
//! `update-status` (sends `data.object` as an update-status) and `scatter`
//! (writes a byte in each of 512 pages 16 KiB apart, and reports in how many
//! the byte was there before it wrote it). Anything else behaves: one Normal
//! event.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use paddock_guest::log::{Level, log};
use paddock_guest::{
    Action, Controller, Error, Info, ObjectRef, Outcome, Request, Value, Watch, cache, json,
    serde_json,
};

/// Calls this instance has seen: stays at 1 when every call gets a fresh
/// instance, and counts up while the host reuses one.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// The controller.
#[derive(Debug)]
pub struct Hostile;

impl Controller for Hostile {
    fn describe() -> Info {
        Info::new("hostile").watch(Watch::primary("v1", "ConfigMap"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let object = request.object;
        let me = object.object_ref();
        match object.annotation("paddock.dev/test-mode").unwrap_or("") {
            "loop" => {
                let mut counter = 0u64;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "trap" => panic!("hostile guest panicked on purpose"),
            "not-an-object" => Ok(Outcome::done()
                .with(Action::event(me, "Fine", "a good action first"))
                .with(Action::create(json!(["not", "an", "object"])))),
            "missing-name" => Ok(Outcome::done().with(Action::create(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"namespace": "default"},
            })))),
            "print" => {
                println!("hello from the guest's stdout");
                eprintln!("hello from the guest's stderr");
                Ok(Outcome::done().with(Action::event(me, "Printed", "printed two lines")))
            }
            "cache" => {
                let names: Vec<String> = cache::list("v1", "ConfigMap", object.namespace(), None)
                    .iter()
                    .map(|item| item.name().to_owned())
                    .collect();
                Ok(Outcome::done().with(Action::event(me, "CacheRead", names.join(","))))
            }
            "count" => {
                let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Outcome::done().with(Action::event(me, "Counted", calls.to_string())))
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(20));
                Ok(Outcome::done().with(Action::event(me, "Woke", "slept 20 s")))
            }
            "flood-actions" => {
                let mut outcome = Outcome::done();
                for index in 0..100_000 {
                    outcome.push(Action::event(me.clone(), "Flood", index.to_string()));
                }
                Ok(outcome)
            }
            "flood-log" => {
                let line = "x".repeat(1 << 20);
                for _ in 0..64 {
                    log(Level::Info, &line);
                }
                Ok(Outcome::done().with(Action::event(me, "Logged", "64 MiB")))
            }
            "requeue-zero" => Ok(Outcome::done()
                .with(Action::event(me, "Again", "at once"))
                .requeue_after(std::time::Duration::ZERO)),
            "merge-patch" => {
                let target = target_of(&data_json(&object, "target")?);
                let body = data_json(&object, "body")?;
                Ok(Outcome::done().with(Action::merge_patch(target, body)))
            }
            "update-status" => {
                Ok(Outcome::done().with(Action::update_status(data_json(&object, "object")?)))
            }
            "fail-transient" => Err(Error::transient("asked to fail")),
            "requeue" => Ok(Outcome::done()
                .with(Action::event(me, "Requeued", "see you in 50 ms"))
                .requeue_after(std::time::Duration::from_millis(50))),
            "slow" => {
                // Busy for 20 ms, then report the value this reconcile saw.
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(20) {
                    black_box(());
                }
                let value = object.str_at("/data/value").unwrap_or("").to_owned();
                Ok(Outcome::done().with(Action::event(me, "Saw", value)))
            }
            "scatter" => {
                Ok(Outcome::done().with(Action::event(me, "Scattered", scatter().to_string())))
            }
            _ => Ok(Outcome::done().with(Action::event(me, "Reconciled", "all good"))),
        }
    }
}

/// Writes [`MARK`] into 512 pages 16 KiB apart (each 8 KiB into its stride,
/// clear of what the allocator writes at a freed block's start), in memory
/// the guest grows for it: 512 separate runs of written pages on hosts with
/// pages of 16 KiB or less. Answers how many of those bytes held the mark
/// before: an instance that starts from its memory image finds none, the
/// same instance called again finds them all.
#[allow(unsafe_code)]
fn scatter() -> usize {
    const STRIDE: usize = 16 << 10;
    const PAGES: usize = 512;
    const MARK: u8 = 0xA5;
    let mut heap: Vec<u8> = Vec::with_capacity(STRIDE * PAGES);
    let base = heap.as_mut_ptr();
    let mut found = 0;
    for page in 0..PAGES {
        // SAFETY: the offset is inside the allocation. The byte is read
        // before anything wrote it: what it holds is what the memory held,
        // which is the point of the probe, and any value is a valid `u8`.
        unsafe {
            let byte = base.add(page * STRIDE + STRIDE / 2);
            if byte.read_volatile() == MARK {
                found += 1;
            }
            byte.write_volatile(MARK);
        }
    }
    black_box(heap);
    found
}

/// The JSON held in the object's `data.<key>`.
fn data_json(object: &paddock_guest::Object, key: &str) -> Result<Value, Error> {
    let text = object.str_at(&format!("/data/{key}")).unwrap_or("{}");
    serde_json::from_str(text).map_err(|error| Error::permanent(format!("data.{key}: {error}")))
}

/// An object reference written as JSON.
fn target_of(value: &Value) -> ObjectRef {
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    ObjectRef {
        api_version: field("apiVersion"),
        kind: field("kind"),
        namespace: value["namespace"].as_str().map(str::to_owned),
        name: field("name"),
    }
}

paddock_guest::export_controller!(Hostile);
