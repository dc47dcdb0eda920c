//! Kubernetes label selectors: parsing and matching.
//!
//! The syntax is the API server's: requirements separated by commas, each
//! one of `key`, `!key`, `key=value` (or `==`), `key!=value`,
//! `key in (a,b)`, `key notin (a,b)`, `key>1`, `key<1`. All must hold.
//! Parsed by the embedded cluster's parser, so the host and `devcluster`
//! accept the same selectors and refuse the same ones with the API server's
//! words (a key of more than 63 characters, an empty value list, ...).

use std::collections::BTreeMap;

/// A label selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector `{selector}`: {problem}")]
pub struct SelectorError {
    /// The selector text.
    pub selector: String,
    /// What is wrong.
    pub problem: String,
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(devcluster::LabelSelector);

impl LabelSelector {
    /// Parses a selector in the API server's syntax.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        devcluster::LabelSelector::parse(text)
            .map(Self)
            .map_err(|error| SelectorError {
                selector: text.to_owned(),
                problem: error.to_string(),
            })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.matches_with(labels)
    }

    /// Whether a map of labels satisfies the selector.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(|key| labels.get(key).map(String::as_str))
    }

    /// Whether the labels of a JSON object (`metadata.labels`) satisfy the
    /// selector.
    pub fn matches_object(&self, object: &serde_json::Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.matches(|key| labels?.get(key)?.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matches(selector: &str, pairs: &[(&str, &str)]) -> bool {
        LabelSelector::parse(selector)
            .expect("valid selector")
            .matches_map(&labels(pairs))
    }

    #[test]
    fn equality_and_inequality() {
        assert!(matches("app=web", &[("app", "web")]));
        assert!(matches("app==web", &[("app", "web")]));
        assert!(!matches("app=web", &[("app", "db")]));
        assert!(matches("app!=web", &[("app", "db")]));
        assert!(matches("app!=web", &[]));
        assert!(matches(
            "app=web,tier=front",
            &[("app", "web"), ("tier", "front")]
        ));
        assert!(!matches("app=web,tier=front", &[("app", "web")]));
    }

    #[test]
    fn set_based() {
        assert!(matches("tier in (front, back)", &[("tier", "back")]));
        assert!(!matches("tier in (front,back)", &[("tier", "db")]));
        assert!(!matches("tier in (front,back)", &[]));
        assert!(matches("tier notin (front,back)", &[("tier", "db")]));
        assert!(matches("tier notin (front,back)", &[]));
        assert!(matches("tier", &[("tier", "x")]));
        assert!(matches("!tier", &[]));
        assert!(!matches("!tier", &[("tier", "x")]));
        assert!(matches(
            "app=web,tier in (a,b),!legacy",
            &[("app", "web"), ("tier", "a")]
        ));
    }

    #[test]
    fn numeric_comparisons() {
        assert!(matches("rank>2", &[("rank", "3")]));
        assert!(!matches("rank>2", &[("rank", "two")]));
        assert!(matches("rank<2", &[("rank", "1")]));
    }

    #[test]
    fn an_empty_value_list_is_the_empty_value_as_the_api_server_reads_it() {
        assert!(matches("tier in ()", &[("tier", "")]));
        assert!(!matches("tier in ()", &[("tier", "x")]));
    }

    #[test]
    fn keys_are_checked_as_the_api_server_checks_them() {
        let long = format!("{}=x", "k".repeat(64));
        assert!(LabelSelector::parse(&long).is_err());
        assert!(LabelSelector::parse("-bad=x").is_err());
        assert!(LabelSelector::parse("example.com/app=web").is_ok());
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(matches("", &[]));
        assert!(matches("  ", &[("a", "b")]));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in ["app=web,", "tier in front", "a b c", "app=(", "=x", "k=v v"] {
            let error = LabelSelector::parse(bad).expect_err(bad);
            assert_eq!(error.selector, bad);
        }
    }

    #[test]
    fn matches_json_objects() {
        let object = serde_json::json!({"metadata": {"labels": {"app": "web"}}});
        let selector = LabelSelector::parse("app=web").expect("valid");
        assert!(selector.matches_object(&object));
        assert!(!selector.matches_object(&serde_json::json!({"metadata": {}})));
    }
}
