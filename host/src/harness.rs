//! The offline harness behind `paddock test`: reconcile one object against
//! a cache made of YAML files, with no cluster.
//!
//! Guest examples keep fixture cases in `fixtures/<case>/`:
//! - `object.yaml`: the object to reconcile;
//! - `cache/*.yaml` (optional): the objects `cache.get` and `cache.list` see,
//!   of the kinds the guest declares (watches and `reads`), as on a cluster;
//! - `case.yaml` (optional): `change: deleted`, `attempt: N`, `now: <RFC 3339>`;
//! - `expected.yaml`: the outcome, exactly as `paddock test -o yaml` prints it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;

use crate::actions::{ObjectRef, Outcome};
use crate::cluster::{IndexPaths, Projections};
use crate::record::CallKind;
use crate::selector::LabelSelector;
use crate::wasm::{
    CacheReader, Change, Clock, Guest, GuestError, Index, IndexQuery, Info, ListQuery,
};

/// The instant fixture cases read from the wall clock unless their
/// `case.yaml` says otherwise: 2025-01-01T00:00:00Z.
pub const FIXTURE_NOW: &str = "2025-01-01T00:00:00Z";

/// An error reading fixtures. Each variant names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML (or JSON).
    #[error("{} is not valid YAML", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Where and why (the file, line and column).
        #[source]
        source: Box<crate::yaml::YamlError>,
    },
    /// A document is not a Kubernetes object.
    #[error("{}: document #{index} is not a Kubernetes object: {problem}", path.display())]
    NotAnObject {
        /// The file.
        path: PathBuf,
        /// The document's position, from 1.
        index: usize,
        /// What is missing.
        problem: String,
    },
    /// The object file holds no object or more than one.
    #[error("{} must hold exactly one object, found {count}", path.display())]
    ObjectCount {
        /// The file.
        path: PathBuf,
        /// How many documents it holds.
        count: usize,
    },
    /// A field of `case.yaml` is invalid.
    #[error("{}: field `{field}`: {problem}", path.display())]
    Case {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// Reads every YAML document of a file as JSON values, accepting `kind:
/// List` documents by taking their items.
pub fn read_objects(path: &Path) -> Result<Vec<Value>, FixtureError> {
    let text = std::fs::read_to_string(path).map_err(|source| FixtureError::Read {
        path: path.to_owned(),
        source,
    })?;
    let documents: Vec<Value> =
        crate::yaml::from_multiple(path, &text).map_err(|source| FixtureError::Yaml {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        if document.get("kind").and_then(Value::as_str) == Some("List") {
            let items = document.get("items").and_then(Value::as_array).cloned();
            objects.extend(items.unwrap_or_default());
            continue;
        }
        if ObjectRef::of(&document).is_none() {
            return Err(FixtureError::NotAnObject {
                path: path.to_owned(),
                index: index + 1,
                problem: "it needs `apiVersion`, `kind` and `metadata.name`".into(),
            });
        }
        objects.push(document);
    }
    Ok(objects)
}

/// Reads the one object of a file.
pub fn read_object(path: &Path) -> Result<Value, FixtureError> {
    let mut objects = read_objects(path)?;
    if objects.len() != 1 {
        return Err(FixtureError::ObjectCount {
            path: path.to_owned(),
            count: objects.len(),
        });
    }
    Ok(objects.remove(0))
}

/// A cache made of fixed objects, sorted by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct FixtureCache {
    objects: Vec<(ObjectRef, Value)>,
}

impl FixtureCache {
    /// A cache holding `objects`.
    pub fn new(objects: Vec<Value>) -> Self {
        let mut objects: Vec<(ObjectRef, Value)> = objects
            .into_iter()
            .filter_map(|object| Some((ObjectRef::of(&object)?, object)))
            .collect();
        objects.sort_by(|(a, _), (b, _)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Self { objects }
    }

    /// A cache holding every object of every `.yaml`, `.yml` and `.json`
    /// file in `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, FixtureError> {
        let entries = std::fs::read_dir(dir).map_err(|source| FixtureError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| FixtureError::Read {
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            let is_yaml = path
                .extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"));
            if is_yaml {
                files.push(path);
            }
        }
        files.sort();
        let mut objects = Vec::new();
        for file in files {
            objects.extend(read_objects(&file)?);
        }
        Ok(Self::new(objects))
    }
}

impl CacheReader for FixtureCache {
    fn get(&self, target: &ObjectRef, seen: &Projections) -> Option<String> {
        self.objects
            .iter()
            .find(|(reference, _)| reference == target)
            .map(|(_, object)| seen.narrow(object.to_string()))
    }

    fn list(&self, query: &ListQuery<'_>, seen: &Projections) -> Vec<String> {
        let selector = match query.label_selector.map(LabelSelector::parse) {
            None => LabelSelector::default(),
            Some(Ok(selector)) => selector,
            Some(Err(_)) => return Vec::new(),
        };
        self.objects
            .iter()
            .filter(|(reference, object)| {
                reference.api_version == query.api_version
                    && reference.kind == query.kind
                    && query
                        .namespace
                        .is_none_or(|namespace| reference.namespace.as_deref() == Some(namespace))
                    && selector.matches_object(object)
            })
            .map(|(_, object)| seen.narrow(object.to_string()))
            .collect()
    }

    /// Fixtures know no index: [`Declared`] evaluates a guest's.
    fn by_index(&self, _query: &IndexQuery<'_>, _seen: &Projections) -> Vec<String> {
        Vec::new()
    }
}

/// A cache narrowed to the kinds a guest declares, in the namespaces it
/// declares them in: a read of anything else reads as absent, as the
/// runtime's view of the informers answers it.
#[derive(Debug, Clone)]
pub struct Declared<C> {
    cache: C,
    /// `(apiVersion, kind, namespace)`; `None`: every namespace.
    kinds: Vec<(String, String, Option<String>)>,
    /// The guest's indexes, evaluated over what `list` answers.
    indexes: Vec<(Index, IndexPaths)>,
}

impl<C: CacheReader> Declared<C> {
    /// `cache`, as `info`'s guest may read it.
    pub fn new(cache: C, info: &Info) -> Self {
        let watched = info.watches.iter().map(|watch| {
            (
                watch.api_version.clone(),
                watch.kind.clone(),
                watch.namespace.clone(),
            )
        });
        let read = info.reads.iter().map(|read| {
            (
                read.api_version.clone(),
                read.kind.clone(),
                read.namespace.clone(),
            )
        });
        let indexes = info
            .indexes
            .iter()
            .filter_map(|index| Some((index.clone(), IndexPaths::parse(&index.paths).ok()?)))
            .collect();
        Self {
            cache,
            kinds: watched.chain(read).collect(),
            indexes,
        }
    }

    /// Whether a `kind` object in `namespace` (`None`: in any) is declared.
    fn declares(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> bool {
        self.kinds.iter().any(|(version, declared, scope)| {
            version == api_version
                && declared == kind
                && (scope.is_none() || namespace.is_none() || scope.as_deref() == namespace)
        })
    }
}

impl<C: CacheReader> CacheReader for Declared<C> {
    fn get(&self, target: &ObjectRef, seen: &Projections) -> Option<String> {
        self.declares(
            &target.api_version,
            &target.kind,
            target.namespace.as_deref(),
        )
        .then(|| self.cache.get(target, seen))
        .flatten()
    }

    fn list(&self, query: &ListQuery<'_>, seen: &Projections) -> Vec<String> {
        if !self.declares(query.api_version, query.kind, query.namespace) {
            return Vec::new();
        }
        let scopes: Vec<&Option<String>> = self
            .kinds
            .iter()
            .filter(|(version, kind, _)| version == query.api_version && kind == query.kind)
            .map(|(_, _, scope)| scope)
            .collect();
        let everywhere = query.namespace.is_some() || scopes.iter().any(|scope| scope.is_none());
        let mut objects = self.cache.list(query, seen);
        if !everywhere {
            // Declared in some namespaces only: a list across namespaces
            // holds those.
            objects.retain(|object| {
                let namespace = serde_json::from_str::<Value>(object)
                    .ok()
                    .and_then(|object| {
                        object
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    });
                scopes
                    .iter()
                    .any(|scope| scope.as_deref() == namespace.as_deref())
            });
        }
        objects
    }

    /// Evaluated over the objects `list` answers, as the host's stores
    /// would have evaluated it when storing them.
    fn by_index(&self, query: &IndexQuery<'_>, seen: &Projections) -> Vec<String> {
        let Some((index, paths)) = self
            .indexes
            .iter()
            .find(|(index, _)| index.name == query.index)
        else {
            return Vec::new();
        };
        // Whole, as a store evaluates its indexes; then narrowed.
        let mut objects = self.list(
            &ListQuery {
                api_version: &index.api_version,
                kind: &index.kind,
                namespace: query.namespace,
                label_selector: None,
            },
            &Projections::none(),
        );
        objects.retain(|object| paths.values_of(object).contains(query.value));
        seen.narrow_all(objects)
    }
}

/// The optional `case.yaml` of a fixture case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// `reconcile` (default) or `map`: `object.yaml` is then the changed
    /// object, and `expected.yaml` the primaries it maps to.
    #[serde(default)]
    call: CallKind,
    /// `applied` (default) or `deleted`.
    #[serde(default)]
    change: Change,
    /// The attempt number handed to the guest.
    #[serde(default)]
    attempt: u32,
    /// The wall clock's instant, RFC 3339.
    now: Option<String>,
}

/// One fixture case of a guest example.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's folder name.
    pub name: String,
    /// `reconcile` or `map`.
    pub call: CallKind,
    /// The object to reconcile.
    pub object: Value,
    /// What the cache holds.
    pub cache: FixtureCache,
    /// Applied or deleted.
    pub change: Change,
    /// The attempt number.
    pub attempt: u32,
    /// The clock the guest reads.
    pub clock: Clock,
    /// The expected outcome (`expected.yaml`).
    pub expected: Value,
    /// The case's folder.
    pub dir: PathBuf,
}

impl Case {
    /// Reads a case folder.
    pub fn load(dir: &Path) -> Result<Self, FixtureError> {
        let case_path = dir.join("case.yaml");
        let case: CaseFile = if case_path.is_file() {
            let text =
                std::fs::read_to_string(&case_path).map_err(|source| FixtureError::Read {
                    path: case_path.clone(),
                    source,
                })?;
            crate::yaml::from_str(&case_path, &text).map_err(|source| FixtureError::Yaml {
                path: case_path.clone(),
                source: Box::new(source),
            })?
        } else {
            CaseFile::default()
        };
        if case.call == CallKind::Map {
            let misplaced = [
                ("change", case.change != Change::Applied),
                ("attempt", case.attempt != 0),
            ];
            if let Some((field, _)) = misplaced.into_iter().find(|(_, set)| *set) {
                return Err(FixtureError::Case {
                    path: case_path,
                    field,
                    problem: "only a reconcile has it: remove it from this `call: map` case".into(),
                });
            }
        }
        let now = case.now.as_deref().unwrap_or(FIXTURE_NOW);
        let clock = parse_instant(now)
            .map(Clock::Fixed)
            .map_err(|problem| FixtureError::Case {
                path: case_path.clone(),
                field: "now",
                problem,
            })?;
        let cache_dir = dir.join("cache");
        let cache = if cache_dir.is_dir() {
            FixtureCache::from_dir(&cache_dir)?
        } else {
            FixtureCache::default()
        };
        let expected_path = dir.join("expected.yaml");
        let expected_text =
            std::fs::read_to_string(&expected_path).map_err(|source| FixtureError::Read {
                path: expected_path.clone(),
                source,
            })?;
        let expected: Value =
            crate::yaml::from_str(&expected_path, &expected_text).map_err(|source| {
                FixtureError::Yaml {
                    path: expected_path.clone(),
                    source: Box::new(source),
                }
            })?;
        Ok(Self {
            name: dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            object: read_object(&dir.join("object.yaml"))?,
            call: case.call,
            cache,
            change: case.change,
            attempt: case.attempt,
            clock,
            expected,
            dir: dir.to_owned(),
        })
    }

    /// Every case under `fixtures_dir`, sorted by name.
    pub fn load_all(fixtures_dir: &Path) -> Result<Vec<Self>, FixtureError> {
        let entries = std::fs::read_dir(fixtures_dir).map_err(|source| FixtureError::Read {
            path: fixtures_dir.to_owned(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .collect();
        dirs.sort();
        dirs.iter().map(|dir| Self::load(dir)).collect()
    }

    /// Runs the case's reconcile on `guest` (loaded with the case's clock).
    /// The guest reads only the kinds it declares, as on a cluster.
    pub fn run(&self, guest: &Guest) -> Result<Outcome, GuestError> {
        guest.reconcile(
            &guest.projections().narrow(self.object.to_string()),
            self.change,
            self.attempt,
            Arc::new(Declared::new(self.cache.clone(), guest.info())),
        )
    }

    /// Runs the case and renders the result the way `expected.yaml` holds
    /// it: for a reconcile the outcome, or `error: {transient|permanent|sandbox:
    /// message}`; for a map `primaries: [...]` (sorted), or `error: {sandbox:
    /// message}`.
    pub fn actual(&self, guest: &Guest) -> Value {
        match self.call {
            CallKind::Reconcile => outcome_value(self.run(guest)),
            CallKind::Map => primaries_value(guest.map(
                &guest.projections().narrow(self.object.to_string()),
                Arc::new(Declared::new(self.cache.clone(), guest.info())),
            )),
        }
    }

    /// Whether `actual` is what the case expects; a map's primaries in any
    /// order, as the host queues them.
    pub fn passes(&self, actual: &Value) -> bool {
        let mut expected = self.expected.clone();
        sort_primaries(&mut expected);
        *actual == expected
    }
}

/// What a map answered, as `paddock test --map` prints it and a `call:
/// map` fixture's `expected.yaml` holds it: the primaries, sorted by
/// namespace, name, kind and apiVersion, each once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Primaries {
    /// The primary objects to reconcile.
    pub primaries: Vec<ObjectRef>,
}

impl Primaries {
    /// `primaries`, sorted, each once.
    pub fn new(mut primaries: Vec<ObjectRef>) -> Self {
        primaries.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.kind, &a.api_version).cmp(&(
                &b.namespace,
                &b.name,
                &b.kind,
                &b.api_version,
            ))
        });
        primaries.dedup();
        Self { primaries }
    }
}

/// A map's result as a fixture's `expected.yaml` holds it: the
/// [`Primaries`], or the sandbox error.
pub fn primaries_value(result: Result<Vec<ObjectRef>, GuestError>) -> Value {
    match result {
        Ok(primaries) => serde_json::to_value(Primaries::new(primaries)).unwrap_or(Value::Null),
        Err(error) => serde_json::json!({"error": {"sandbox": error.to_string()}}),
    }
}

/// Sorts `primaries` by namespace, name, kind and apiVersion, each once.
fn sort_primaries(value: &mut Value) {
    let Some(Value::Array(primaries)) = value.get_mut("primaries") else {
        return;
    };
    let key = |reference: &Value| {
        ["namespace", "name", "kind", "apiVersion"].map(|field| {
            reference
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
    };
    primaries.sort_by_key(key);
    primaries.dedup();
}

/// A reconcile's result as a fixture's `expected.yaml` holds it.
pub fn outcome_value(result: Result<Outcome, GuestError>) -> Value {
    match result {
        Ok(outcome) => serde_json::to_value(&outcome).unwrap_or(Value::Null),
        Err(GuestError::Transient { message, .. }) => {
            serde_json::json!({"error": {"transient": message}})
        }
        Err(GuestError::Permanent { message, .. }) => {
            serde_json::json!({"error": {"permanent": message}})
        }
        Err(other) => serde_json::json!({"error": {"sandbox": other.to_string()}}),
    }
}

/// Parses an RFC 3339 instant such as `2025-01-01T00:00:00Z`.
pub fn parse_instant(text: &str) -> Result<SystemTime, String> {
    let timestamp: jiff::Timestamp = text.parse().map_err(|error| {
        format!("`{text}` is not an RFC 3339 instant ({error}); write e.g. 2025-01-01T00:00:00Z")
    })?;
    Ok(SystemTime::from(timestamp))
}

/// Renders an outcome the way `paddock test -o yaml` prints it.
pub fn outcome_yaml(outcome: &Outcome) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache() -> FixtureCache {
        FixtureCache::new(vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "b", "namespace": "x", "labels": {"app": "web"}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "namespace": "x"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "y", "labels": {"app": "web"}}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
        ])
    }

    fn names(objects: Vec<String>) -> Vec<String> {
        objects
            .iter()
            .map(|json| {
                let value: Value = serde_json::from_str(json).expect("json");
                value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    fn query<'a>(namespace: Option<&'a str>, selector: Option<&'a str>) -> ListQuery<'a> {
        ListQuery {
            api_version: "v1",
            kind: "ConfigMap",
            namespace,
            label_selector: selector,
        }
    }

    #[test]
    fn lists_sorted_and_filtered() {
        let cache = cache();
        assert_eq!(
            names(cache.list(&query(None, None), &Projections::none())),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(cache.list(&query(Some("x"), None), &Projections::none())),
            ["a", "b"]
        );
        assert_eq!(
            names(cache.list(&query(None, Some("app=web")), &Projections::none())),
            ["b", "c"]
        );
        assert!(
            cache
                .list(&query(None, Some("app in")), &Projections::none())
                .is_empty()
        );
    }

    #[test]
    fn gets_by_reference() {
        let cache = cache();
        let namespace = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "x".into(),
        };
        assert!(cache.get(&namespace, &Projections::none()).is_some());
        let missing = ObjectRef {
            name: "nope".into(),
            ..namespace
        };
        assert!(cache.get(&missing, &Projections::none()).is_none());
    }

    #[test]
    fn a_guest_reads_only_the_kinds_and_namespaces_it_declares() {
        use crate::wasm::{Read, Relation, Watch};
        let info = Info {
            name: "reader".into(),
            watches: vec![Watch {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                relation: Relation::Primary,
                namespace: None,
                label_selector: None,
            }],
            finalizes: false,
            reads: vec![Read {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("x".into()),
            }],
            indexes: vec![crate::wasm::Index {
                name: "app".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                paths: vec![".metadata.labels.app".into()],
            }],
            projections: Vec::new(),
        };
        let declared = Declared::new(cache(), &info);
        let configmap = |namespace: &str, name: &str| ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        };
        assert!(
            declared
                .get(&configmap("x", "a"), &Projections::none())
                .is_some()
        );
        assert!(
            declared
                .get(&configmap("y", "c"), &Projections::none())
                .is_none(),
            "not in x"
        );
        assert_eq!(
            names(declared.list(&query(None, None), &Projections::none())),
            ["a", "b"]
        );
        assert_eq!(
            names(declared.list(&query(Some("x"), None), &Projections::none())),
            ["a", "b"]
        );
        assert!(
            declared
                .list(&query(Some("y"), None), &Projections::none())
                .is_empty()
        );
        let namespace = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "x".into(),
        };
        assert!(cache().get(&namespace, &Projections::none()).is_some());
        assert!(
            declared.get(&namespace, &Projections::none()).is_none(),
            "Namespaces undeclared"
        );
        // Indexes are evaluated over what the guest may list.
        let lookup = |index, namespace| IndexQuery {
            index,
            value: "web",
            namespace,
        };
        assert_eq!(
            names(declared.by_index(&lookup("app", None), &Projections::none())),
            ["b"]
        );
        assert_eq!(
            names(declared.by_index(&lookup("app", Some("x")), &Projections::none())),
            ["b"]
        );
        assert!(
            declared
                .by_index(&lookup("app", Some("y")), &Projections::none())
                .is_empty()
        );
        assert!(
            declared
                .by_index(&lookup("undeclared", None), &Projections::none())
                .is_empty()
        );
    }

    #[test]
    fn reads_multi_document_yaml_and_names_bad_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("objects.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: s}}\n",
        )
        .expect("write");
        assert_eq!(read_objects(&path).expect("valid").len(), 2);

        std::fs::write(&path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").expect("write");
        let error = read_objects(&path).expect_err("no name");
        assert!(error.to_string().contains("document #1"), "{error}");

        std::fs::write(&path, "kind: [unclosed\n").expect("write");
        let error = read_objects(&path).expect_err("bad yaml");
        assert!(
            error.to_string().contains("objects.yaml is not valid YAML"),
            "{error}"
        );
    }

    #[test]
    fn parses_instants() {
        assert!(parse_instant(FIXTURE_NOW).is_ok());
        assert!(
            parse_instant("yesterday")
                .unwrap_err()
                .contains("2025-01-01T00:00:00Z")
        );
    }
}
