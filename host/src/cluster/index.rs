//! Indexes of an informer store, as client-go's Indexer keeps them: a
//! guest declares JSONPath expressions, the store evaluates them whenever
//! it stores an object, and `cache.by-index` looks objects up by value
//! without scanning the store.

use std::collections::BTreeSet;

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

/// An index's expressions, parsed. Two declarations with the same
/// expressions share one index in a store.
#[derive(Debug, Clone)]
pub struct IndexPaths {
    /// The expressions as declared.
    source: Vec<String>,
    queries: Vec<JpQuery>,
}

/// A path of an index or a projection that does not parse, or selects
/// what a projection cannot keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", if path.is_empty() { problem.clone() } else { format!("the path `{path}` {problem}") })]
pub struct PathError {
    /// The expression as declared (empty when none was).
    pub path: String,
    /// What is wrong with it, and the fix.
    pub problem: String,
}

impl PathError {
    /// The error of a path the JSONPath parser refused.
    pub(crate) fn unparsed(path: &str, error: impl std::fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            problem: format!(
                "is not a JSONPath expression ({error}); write it as kubectl does, e.g. `.spec.template.spec.volumes[*].configMap.name`"
            ),
        }
    }
}

impl IndexPaths {
    /// Parses `paths`, in kubectl's syntax (`.spec.nodeName`, with or
    /// without braces, or from `$`). At least one is needed.
    pub fn parse(paths: &[String]) -> Result<Self, PathError> {
        if paths.is_empty() {
            return Err(PathError {
                path: String::new(),
                problem: "an index needs at least one path".into(),
            });
        }
        let queries = paths
            .iter()
            .map(|path| {
                let rooted = rooted(path).ok_or_else(|| PathError {
                    path: path.clone(),
                    problem: "is empty".into(),
                })?;
                jsonpath_rust::parser::parse_json_path(&rooted)
                    .map_err(|error| PathError::unparsed(path, error))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            source: paths.to_vec(),
            queries,
        })
    }

    /// The expressions as declared.
    pub fn source(&self) -> &[String] {
        &self.source
    }

    /// The values an object has for the index: the strings, numbers and
    /// booleans the expressions select, and each such element of a
    /// selected list, as text; sorted, each once.
    pub fn values(&self, object: &Value) -> BTreeSet<String> {
        let mut values = BTreeSet::new();
        for query in &self.queries {
            let Ok(found) = jsonpath_rust::query::js_path_process(query, object) else {
                continue;
            };
            for value in found {
                match value.val() {
                    Value::Array(items) => values.extend(items.iter().filter_map(scalar)),
                    other => values.extend(scalar(other)),
                }
            }
        }
        values
    }

    /// [`Self::values`] of an object's JSON text; none when it does not
    /// parse.
    pub fn values_of(&self, json: &str) -> BTreeSet<String> {
        serde_json::from_str::<Value>(json)
            .map(|object| self.values(&object))
            .unwrap_or_default()
    }
}

impl PartialEq for IndexPaths {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for IndexPaths {}

/// A kubectl-style expression rooted at `$`; `None` when empty.
pub(crate) fn rooted(path: &str) -> Option<String> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or(path)
        .trim();
    if path.is_empty() {
        return None;
    }
    Some(if path.starts_with('$') {
        path.to_owned()
    } else if path.starts_with('.') || path.starts_with('[') {
        format!("${path}")
    } else {
        format!("$.{path}")
    })
}

/// A string, number or boolean as index text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(paths: &[&str]) -> IndexPaths {
        IndexPaths::parse(&paths.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
            .expect("the paths parse")
    }

    fn deployment() -> Value {
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 3,
                "paused": false,
                "template": {"spec": {
                    "volumes": [
                        {"name": "config", "configMap": {"name": "web-config"}},
                        {"name": "data", "emptyDir": {}},
                        {"name": "more", "configMap": {"name": "shared"}},
                    ],
                    "containers": [
                        {"name": "app", "image": "web:1", "envFrom": [{"configMapRef": {"name": "shared"}}]},
                        {"name": "proxy", "image": "envoy:1"},
                    ],
                }},
            },
        })
    }

    #[test]
    fn kubectl_paths_select_every_value_once() {
        let index = paths(&[
            ".spec.template.spec.volumes[*].configMap.name",
            "{.spec.template.spec.containers[*].envFrom[*].configMapRef.name}",
        ]);
        assert_eq!(
            index.values(&deployment()),
            BTreeSet::from(["shared".to_owned(), "web-config".to_owned()])
        );
    }

    #[test]
    fn scalars_and_lists_of_them_are_text() {
        assert_eq!(
            paths(&["spec.replicas", "$.spec.paused", ".metadata.finalizers"])
                .values(&deployment()),
            BTreeSet::from(["3", "false", "a", "b"].map(str::to_owned))
        );
        // Objects and missing fields give nothing.
        assert!(
            paths(&[".spec.template", ".status.ready"])
                .values(&deployment())
                .is_empty()
        );
    }

    #[test]
    fn filters_select_by_sibling() {
        assert_eq!(
            paths(&[r#".spec.template.spec.containers[?(@.name=="app")].image"#])
                .values(&deployment()),
            BTreeSet::from(["web:1".to_owned()])
        );
    }

    #[test]
    fn bad_paths_are_named() {
        let error = IndexPaths::parse(&[".spec".into(), ".spec[".into()]).unwrap_err();
        assert_eq!(error.path, ".spec[");
        assert!(error.to_string().contains("write it as kubectl does"));
        let error = IndexPaths::parse(&["  ".into()]).unwrap_err();
        assert!(error.problem.contains("empty"), "{error}");
        assert!(IndexPaths::parse(&[]).is_err());
    }
}
