//! The checks behind the fuzz targets in `fuzz/`, one function per target,
//! each taking the fuzzer's raw bytes. The targets and the test that
//! replays the committed corpora (`tests/fuzz_corpus.rs`) call these same
//! functions, so the properties checked cannot drift apart. A property that
//! does not hold panics.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::value::RawValue;

use crate::actions::{self, Action, ObjectRef, Outcome, PatchKind};
use crate::cluster::StoredObject;
use crate::config::{ControllersFile, check_settings, is_dns_label};
use crate::crd::{ClusterWasmController, WasmController};
use crate::reload::cluster::{TenantLimits, declare_offline};
use crate::wasm::bindings as wit;

/// The guest-output decoder: a guest's `reconcile` outcome and `map`
/// answer, built from the bytes, through [`actions::outcome_from_guest`]
/// and [`actions::refs_from_guest`]. What is accepted must name only
/// objects a request path can hold, validate again to itself when handed
/// back, and survive a serde round trip.
pub fn guest_output(data: &[u8]) {
    let mut input = Bytes(data);
    let outcome = input.outcome();
    let refs = (0..input.byte() % 4).map(|_| input.object_ref()).collect();

    if let Ok(decoded) = actions::outcome_from_guest(outcome.clone()) {
        assert_eq!(decoded.actions.len(), outcome.actions.len());
        assert_eq!(
            decoded.requeue_after,
            outcome
                .requeue_after_ms
                .map(std::time::Duration::from_millis)
        );
        for action in &decoded.actions {
            check_action(action);
            let _ = action.summary();
        }
        let again = actions::outcome_from_guest(to_guest(&decoded))
            .expect("an accepted outcome, handed back, is accepted again");
        assert_eq!(again, decoded, "validation changed an accepted outcome");
        let json = serde_json::to_string(&decoded).expect("an outcome serialises");
        let parsed: Outcome = serde_json::from_str(&json).expect("its JSON reads back");
        assert_eq!(parsed, decoded, "serde round trip: {json}");
    }
    if let Ok(decoded) = actions::refs_from_guest(refs) {
        decoded.iter().for_each(check_ref);
        let again = actions::refs_from_guest(decoded.iter().map(ref_to_guest).collect())
            .expect("accepted refs, handed back, are accepted again");
        assert_eq!(again, decoded);
    }
}

/// The controllers-file loader: the bytes as the text of a controllers
/// file in a folder holding `guest.wasm`, through [`ControllersFile::parse`].
/// A file that loads has unique DNS-label names, modules that exist (paths
/// resolved to absolute ones), and settings that pass the checks again; an error names the
/// file.
pub fn controllers_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = controllers_fixture();
    match ControllersFile::parse(path, text) {
        Ok(file) => {
            let mut names = std::collections::HashSet::new();
            for controller in &file.controllers {
                assert!(is_dns_label(&controller.name), "{:?}", controller.name);
                assert!(
                    names.insert(&controller.name),
                    "duplicate {}",
                    controller.name
                );
                // Relative paths were resolved against the folder (absolute
                // ones may point anywhere): either way the module exists.
                assert!(
                    controller
                        .module
                        .as_ref()
                        .is_none_or(|module| module.is_absolute() && module.is_file())
                );
                check_settings(
                    &controller.namespaces,
                    &controller.grant,
                    &controller.limits,
                    &controller.queue,
                )
                .expect("a loaded controller's settings pass the checks again");
                let _ = controller.limits.sandbox();
                let _ = controller.grant();
            }
            for manifest in &file.manifests {
                assert!(manifest.is_absolute(), "{}", manifest.display());
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains(&*path.to_string_lossy()),
                "the error does not name the file: {message}"
            );
        }
    }
}

/// The `WasmController` spec reader: the bytes as a stored object's JSON,
/// through [`StoredObject::parse`] and [`declare_offline`] (a namespaced
/// object is a tenant's `WasmController`, any other a
/// `ClusterWasmController`). A declaration keeps a tenant in its namespace
/// and under the tenant caps, and is the same when read again from its own
/// re-serialised resource.
pub fn wasm_controller_spec(data: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(data) else {
        return;
    };
    let Ok(object) = StoredObject::parse(raw, "paddock.dev/v1alpha1", "WasmController") else {
        return;
    };
    let stored: serde_json::Value =
        serde_json::from_str(&object.json).expect("a stored object's JSON parses");
    assert!(stored["apiVersion"].is_string() && stored["kind"].is_string());
    assert_eq!(stored["metadata"]["name"].as_str(), Some(&*object.name));

    let tenant = TenantLimits::default();
    let Ok(declared) = declare_offline(&object, &tenant) else {
        return;
    };
    assert_eq!(declare_offline(&object, &tenant), Ok(declared.clone()));
    if object.namespace.is_empty() {
        assert_eq!(declared.namespaces, declared.settings.namespaces);
        assert_eq!(declared.limits, declared.settings.limits);
        assert!(declared.cut.is_empty());
    } else {
        assert_eq!(declared.namespaces, [object.namespace.to_string()]);
        let limits = declared.limits;
        assert!(limits.memory_mib <= tenant.max_memory_mib);
        assert!(limits.deadline_ms <= tenant.max_deadline_ms);
        assert!(limits.concurrency <= tenant.max_concurrency);
        assert!(limits.max_actions <= tenant.max_actions);
        assert!(limits.max_answer_bytes <= tenant.max_answer_bytes);
        assert!(limits.max_log_line_bytes <= tenant.max_log_line_bytes);
        assert!(limits.max_log_bytes_per_call <= tenant.max_log_bytes_per_call);
        assert!(limits.log_lines_per_second <= tenant.max_log_lines_per_second);
        assert!(limits.min_requeue_ms >= tenant.min_requeue_ms);
        let others = declared
            .settings
            .namespaces
            .iter()
            .any(|namespace| **namespace != *object.namespace);
        assert_eq!(
            declared.limits == declared.settings.limits && !others,
            declared.cut.is_empty(),
            "the cut list says exactly what changed: {:?}",
            declared.cut
        );
    }

    // The resource, written back as the API server would store it, reads
    // to the same declaration.
    let rewritten = if object.namespace.is_empty() {
        serde_json::from_str::<ClusterWasmController>(&object.json)
            .and_then(|resource| serde_json::to_string(&resource))
    } else {
        serde_json::from_str::<WasmController>(&object.json)
            .and_then(|resource| serde_json::to_string(&resource))
    }
    .expect("a declared resource reads and writes as its type");
    let raw = RawValue::from_string(rewritten).expect("serde_json writes JSON");
    let again = StoredObject::parse(&raw, "paddock.dev/v1alpha1", "WasmController")
        .expect("the re-serialised resource parses");
    assert_eq!(declare_offline(&again, &tenant), Ok(declared));
}

/// Path of a controllers file in a folder holding an (empty) `guest.wasm`.
fn controllers_fixture() -> &'static Path {
    static FIXTURE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = FIXTURE.get_or_init(|| {
        let folder = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(folder.path().join("guest.wasm"), b"").expect("write guest.wasm");
        let path = folder.path().join("controllers.yaml");
        (folder, path)
    });
    path
}

/// An accepted action may only name objects by names that are one path
/// segment, in namespaces that are DNS labels.
fn check_action(action: &Action) {
    match action {
        Action::Create { object } | Action::Update { object } | Action::UpdateStatus { object } => {
            assert!(object.is_object());
            if let Some(name) = object.pointer("/metadata/name").and_then(|n| n.as_str()) {
                check_segment(name);
            }
            if let Some(namespace) = object.pointer("/metadata/namespace") {
                assert!(is_dns_label(namespace.as_str().expect("a string")));
            }
            let _ = actions::target_of(action);
        }
        Action::Patch {
            target, kind, body, ..
        } => {
            check_ref(target);
            match kind {
                PatchKind::Json => assert!(body.is_array()),
                _ => assert!(body.is_object()),
            }
        }
        Action::Delete { target } | Action::Scale { target, .. } => check_ref(target),
        Action::Event {
            regarding, reason, ..
        } => {
            check_ref(regarding);
            assert!(!reason.is_empty());
        }
    }
}

fn check_ref(target: &ObjectRef) {
    assert!(!target.api_version.is_empty() && !target.kind.is_empty());
    check_segment(&target.name);
    if let Some(namespace) = &target.namespace {
        assert!(is_dns_label(namespace), "namespace {namespace:?}");
    }
}

/// A name the host puts into a request path stays one segment and does
/// not change the request.
fn check_segment(name: &str) {
    assert!(
        !name.is_empty() && name.len() <= 253,
        "name of {} bytes",
        name.len()
    );
    assert!(name != "." && name != "..");
    assert!(
        !name.contains(['/', '%', '?', '#', ' ', '\0']) && name.is_ascii(),
        "name {name:?}"
    );
}

fn to_guest(outcome: &Outcome) -> wit::Outcome {
    let text = |value: &serde_json::Value| value.to_string();
    let actions = outcome
        .actions
        .iter()
        .map(|action| match action {
            Action::Create { object } => wit::Action::Create(text(object)),
            Action::Update { object } => wit::Action::Update(text(object)),
            Action::UpdateStatus { object } => wit::Action::UpdateStatus(text(object)),
            Action::Patch {
                target,
                kind,
                body,
                force,
            } => wit::Action::Patch(wit::Patch {
                target: ref_to_guest(target),
                kind: match kind {
                    PatchKind::Merge => wit::PatchKind::Merge,
                    PatchKind::Json => wit::PatchKind::Json,
                    PatchKind::Strategic => wit::PatchKind::Strategic,
                    PatchKind::Apply => wit::PatchKind::Apply,
                },
                body: text(body),
                force: *force,
            }),
            Action::Delete { target } => wit::Action::Delete(ref_to_guest(target)),
            Action::Scale { target, replicas } => wit::Action::Scale(wit::Scale {
                target: ref_to_guest(target),
                replicas: *replicas,
            }),
            Action::Event {
                regarding,
                event_type,
                reason,
                message,
            } => wit::Action::RecordEvent(wit::Event {
                regarding: ref_to_guest(regarding),
                warning: *event_type == actions::EventType::Warning,
                reason: reason.clone(),
                message: message.clone(),
            }),
        })
        .collect();
    wit::Outcome {
        actions,
        requeue_after_ms: outcome
            .requeue_after
            .map(|delay| u64::try_from(delay.as_millis()).expect("set from a u64")),
    }
}

fn ref_to_guest(target: &ObjectRef) -> wit::ObjectRef {
    wit::ObjectRef {
        api_version: target.api_version.clone(),
        kind: target.kind.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    }
}

/// Reads a guest's answer out of fuzzer bytes: single bytes choose
/// variants, strings run to the next `0xff` (or the end), so the fuzzer
/// edits text directly.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn text(&mut self) -> String {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0xff)
            .unwrap_or(self.0.len());
        let text = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = self.0.get(end + 1..).unwrap_or_default();
        text
    }

    fn number(&mut self) -> u64 {
        (0..8).fold(0, |number, _| number << 8 | u64::from(self.byte()))
    }

    fn object_ref(&mut self) -> wit::ObjectRef {
        wit::ObjectRef {
            api_version: self.text(),
            kind: self.text(),
            namespace: (self.byte() % 2 == 1).then(|| self.text()),
            name: self.text(),
        }
    }

    fn outcome(&mut self) -> wit::Outcome {
        let count = self.byte() % 8;
        let requeue_after_ms = (self.byte() % 2 == 1).then(|| self.number());
        let actions = (0..count).map(|_| self.action()).collect();
        wit::Outcome {
            actions,
            requeue_after_ms,
        }
    }

    fn action(&mut self) -> wit::Action {
        match self.byte() % 7 {
            0 => wit::Action::Create(self.text()),
            1 => wit::Action::Update(self.text()),
            2 => wit::Action::UpdateStatus(self.text()),
            3 => {
                let kind = match self.byte() % 4 {
                    0 => wit::PatchKind::Merge,
                    1 => wit::PatchKind::Json,
                    2 => wit::PatchKind::Strategic,
                    _ => wit::PatchKind::Apply,
                };
                wit::Action::Patch(wit::Patch {
                    force: self.byte() % 2 == 1,
                    kind,
                    target: self.object_ref(),
                    body: self.text(),
                })
            }
            4 => wit::Action::Delete(self.object_ref()),
            5 => wit::Action::Scale(wit::Scale {
                replicas: self.number() as u32,
                target: self.object_ref(),
            }),
            _ => wit::Action::RecordEvent(wit::Event {
                warning: self.byte() % 2 == 1,
                regarding: self.object_ref(),
                reason: self.text(),
                message: self.text(),
            }),
        }
    }
}
