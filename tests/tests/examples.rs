//! Every example guest answers each of its fixtures with exactly the
//! expected outcome.

use paddock::harness::Case;
use paddock::wasm::LoadOptions;
use paddock_tests::{engine, guest, workspace_root};

fn check_example(example: &str) {
    let fixtures = workspace_root()
        .join("guest-examples")
        .join(example)
        .join("fixtures");
    let cases = Case::load_all(&fixtures).expect("the fixtures parse");
    assert!(!cases.is_empty(), "{example} has no fixtures");
    let mut failures = Vec::new();
    for case in &cases {
        let loaded = engine()
            .load(&guest(example), LoadOptions::default().clock(case.clock))
            .expect("the example loads");
        let actual = case.actual(&loaded);
        if !case.passes(&actual) {
            failures.push(format!(
                "{example}/{}: expected\n{}\ngot\n{}",
                case.name,
                serde_json::to_string_pretty(&case.expected).unwrap_or_default(),
                serde_json::to_string_pretty(&actual).unwrap_or_default(),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn replica_floor_fixtures() {
    check_example("replica-floor");
}

#[test]
fn label_policy_fixtures() {
    check_example("label-policy");
}

#[test]
fn app_operator_fixtures() {
    check_example("app-operator");
}

/// Written with k8s-openapi's types (the Rust SDK's feature `typed`).
#[test]
fn pdb_keeper_fixtures() {
    check_example("pdb-keeper");
}
