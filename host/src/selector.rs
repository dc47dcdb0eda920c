//! Kubernetes label selectors: parsing and matching.
//!
//! The syntax is the API server's: requirements separated by commas, each
//! one of `key`, `!key`, `key=value` (or `==`), `key!=value`,
//! `key in (a,b)`, `key notin (a,b)`, `key>1`, `key<1`. All must hold.

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

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a selector in the API server's syntax.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let fail = |problem: String| SelectorError {
            selector: text.to_owned(),
            problem,
        };
        let requirements = split_requirements(text)
            .map_err(fail)?
            .into_iter()
            .map(|part| parse_requirement(part).map_err(fail))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Exists(key) => labels(key).is_some(),
                Requirement::NotExists(key) => labels(key).is_none(),
                Requirement::In(key, values) => {
                    labels(key).is_some_and(|value| values.iter().any(|v| v == value))
                }
                Requirement::NotIn(key, values) => {
                    labels(key).is_none_or(|value| values.iter().all(|v| v != value))
                }
                Requirement::GreaterThan(key, bound) => labels(key)
                    .and_then(|value| value.parse::<i64>().ok())
                    .is_some_and(|value| value > *bound),
                Requirement::LessThan(key, bound) => labels(key)
                    .and_then(|value| value.parse::<i64>().ok())
                    .is_some_and(|value| value < *bound),
            })
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

/// Splits on commas that are not inside parentheses.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unbalanced `)`".to_owned())?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".into());
    }
    parts.push(&text[start..]);
    if parts.len() == 1 && parts[0].trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let part = part.trim();
    if part.is_empty() {
        return Err("empty requirement between commas".into());
    }
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_of(key)?));
    }
    for (operator, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(operator) {
            let key = key_of(key)?;
            let value = value_of(value)?;
            return Ok(if negated {
                Requirement::NotIn(key, vec![value])
            } else {
                Requirement::In(key, vec![value])
            });
        }
    }
    for (operator, greater) in [(">", true), ("<", false)] {
        if let Some((key, bound)) = part.split_once(operator) {
            let key = key_of(key)?;
            let bound = bound
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("`{}` is not an integer", bound.trim()))?;
            return Ok(if greater {
                Requirement::GreaterThan(key, bound)
            } else {
                Requirement::LessThan(key, bound)
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = key_of(words.next().unwrap_or_default())?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Requirement::Exists(key));
    };
    let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
        (true, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (false, list)
    } else {
        return Err(format!(
            "expected `in` or `notin` after `{key}`, found `{rest}`"
        ));
    };
    let list = list.trim();
    let inner = list
        .strip_prefix('(')
        .and_then(|list| list.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised list of values after `{key}`"))?;
    let values = inner
        .split(',')
        .map(value_of)
        .collect::<Result<Vec<_>, _>>()?;
    if values.iter().all(String::is_empty) {
        return Err(format!("the list of values for `{key}` is empty"));
    }
    Ok(if negated {
        Requirement::NotIn(key, values)
    } else {
        Requirement::In(key, values)
    })
}

fn key_of(key: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(format!("`{key}` is not a valid label key"))
    }
}

fn value_of(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("`{value}` is not a valid label value"))
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
    fn empty_selector_matches_everything() {
        assert!(matches("", &[]));
        assert!(matches("  ", &[("a", "b")]));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "app=web,",
            "tier in front",
            "tier in ()",
            "a b c",
            "app=(",
            "=x",
            "k=v v",
        ] {
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
