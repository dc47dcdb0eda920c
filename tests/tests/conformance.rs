//! Cross-language conformance: the Rust, Python and JavaScript builds of
//! each example answer every fixture of the Rust example with the same
//! actions, and those are the expected ones; so do the Rust, Python and
//! JavaScript guests written without an SDK (`tests/guests/sdkless`), which
//! also declare the same things. Guests that declare projections answer
//! alike handed objects narrowed to them and handed them whole.

use std::path::Path;

use paddock::harness::Case;
use paddock::wasm::LoadOptions;
use paddock_tests::{engine, guest, workspace_root};

/// The examples written in every language.
const EXAMPLES: [&str; 2] = ["replica-floor", "label-policy"];

/// Each language's build of an example, by component name.
const LANGUAGES: [(&str, &str); 3] = [("rust", ""), ("python", "-py"), ("js", "-js")];

/// Runs every fixture case under `fixtures` through each of `builds`
/// (`(language, component name)`), pushing a message to `failures` for
/// each answer that is not the expected one. Returns how many answers it
/// checked.
fn check_fixtures(fixtures: &Path, builds: &[(&str, String)], failures: &mut Vec<String>) -> usize {
    let cases = Case::load_all(fixtures).expect("the fixtures parse");
    assert!(
        !cases.is_empty(),
        "{} holds no fixtures",
        fixtures.display()
    );
    let mut checked = 0;
    for case in &cases {
        for (language, component) in builds {
            for whole in [false, true] {
                let mut options = LoadOptions::default().clock(case.clock);
                if whole {
                    options = options.whole_objects();
                }
                let loaded = engine()
                    .load(&guest(component), options)
                    .unwrap_or_else(|error| panic!("{component} in {language} loads: {error:#}"));
                let actual = case.actual(&loaded);
                checked += 1;
                if !case.passes(&actual) {
                    failures.push(format!(
                        "{}/{} in {language}, {}: expected\n{}\ngot\n{}",
                        fixtures.display(),
                        case.name,
                        if whole { "whole objects" } else { "projected" },
                        serde_json::to_string_pretty(&case.expected).unwrap_or_default(),
                        serde_json::to_string_pretty(&actual).unwrap_or_default(),
                    ));
                }
            }
        }
    }
    checked
}

#[test]
fn every_language_answers_every_fixture_identically() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for example in EXAMPLES {
        let fixtures = workspace_root()
            .join("guest-examples")
            .join(example)
            .join("fixtures");
        let builds: Vec<(&str, String)> = LANGUAGES
            .iter()
            .map(|(language, suffix)| (*language, format!("{example}{suffix}")))
            .collect();
        if example == "replica-floor" {
            // It reads two fields: every build declares them, so the
            // projected runs below are narrowed.
            for (language, component) in &builds {
                let loaded = engine()
                    .load(&guest(component), LoadOptions::default())
                    .expect("loads");
                let projection = loaded
                    .projection("apps/v1", "Deployment")
                    .unwrap_or_else(|| panic!("{component} in {language} declares a projection"));
                assert_eq!(
                    projection.source(),
                    [
                        ".metadata.annotations['paddock.dev/min-replicas']",
                        ".spec.replicas"
                    ],
                    "{language}"
                );
            }
        }
        checked += check_fixtures(&fixtures, &builds, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} answers differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The guide's "Without an SDK": guests on wit-bindgen, componentize-py and
/// componentize-js alone, against `wit/`, declare the same watches and
/// index and answer every fixture (reconciles, and a `map` through the
/// index) with the expected result.
#[test]
fn guests_without_an_sdk_declare_and_answer_alike() {
    let builds = LANGUAGES.map(|(language, suffix)| (language, format!("sdkless{suffix}")));
    let [(_, rust), others @ ..] = builds.each_ref().map(|(language, component)| {
        let loaded = engine()
            .load(&guest(component), LoadOptions::default())
            .unwrap_or_else(|error| panic!("{component} in {language} loads: {error:#}"));
        (*language, loaded)
    });
    let info = rust.info();
    assert_eq!(info.name, "tenant-quota");
    assert_eq!(info.watches.len(), 3, "{info:?}");
    assert_eq!(
        info.indexes
            .iter()
            .map(|index| index.name.as_str())
            .collect::<Vec<_>>(),
        ["tenant"]
    );
    assert_eq!(
        info.projections
            .iter()
            .map(|projection| projection.kind.as_str())
            .collect::<Vec<_>>(),
        ["Namespace", "ConfigMap"]
    );
    for (language, loaded) in &others {
        assert_eq!(
            loaded.info(),
            info,
            "the {language} guest declares what the Rust one does"
        );
    }

    let mut failures = Vec::new();
    let fixtures = workspace_root().join("tests/guests/sdkless/fixtures");
    let checked = check_fixtures(&fixtures, &builds, &mut failures);
    assert!(
        failures.is_empty(),
        "{} of {checked} answers differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
