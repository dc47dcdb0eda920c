//! Cross-language conformance: the Rust, Python and JavaScript builds of
//! each example answer every fixture of the Rust example with the same
//! actions, and those are the expected ones.

use paddock::harness::Case;
use paddock::wasm::LoadOptions;
use paddock_tests::{engine, guest, workspace_root};
use serde_json::Value;

/// The examples written in every language.
const EXAMPLES: [&str; 2] = ["replica-floor", "label-policy"];

/// Each language's build of an example, by component name.
const LANGUAGES: [(&str, &str); 3] = [("rust", ""), ("python", "-py"), ("js", "-js")];

#[test]
fn every_language_answers_every_fixture_identically() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for example in EXAMPLES {
        let fixtures = workspace_root()
            .join("guest-examples")
            .join(example)
            .join("fixtures");
        let cases = Case::load_all(&fixtures).expect("the fixtures parse");
        assert!(!cases.is_empty(), "{example} has no fixtures");
        for case in &cases {
            let answers: Vec<(&str, Value)> = LANGUAGES
                .iter()
                .map(|(language, suffix)| {
                    let loaded = engine()
                        .load(
                            &guest(&format!("{example}{suffix}")),
                            LoadOptions::default().clock(case.clock),
                        )
                        .unwrap_or_else(|error| panic!("{example} in {language} loads: {error:#}"));
                    (*language, case.actual(&loaded))
                })
                .collect();
            for (language, actual) in &answers {
                checked += 1;
                if *actual != case.expected {
                    failures.push(format!(
                        "{example}/{} in {language}: expected\n{}\ngot\n{}",
                        case.name,
                        serde_json::to_string_pretty(&case.expected).unwrap_or_default(),
                        serde_json::to_string_pretty(actual).unwrap_or_default(),
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} answers differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
