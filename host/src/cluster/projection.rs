//! Projections: the fields of a kind a guest reads. The host narrows an
//! object to them once per object version and hands the narrowed JSON to
//! the guest in `reconcile`, `map` and cache reads, so a guest that reads
//! 200 bytes of a 2 KB object parses 200 bytes.
//!
//! Narrowing works on the text: kept values are copied byte for byte and
//! fields keep their order, as the API server wrote them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use jsonpath_rust::parser::model::{Segment, Selector};
use serde::Deserialize;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::index::{PathError, rooted};

/// The fields every projection keeps: what names the object, what the
/// host and the SDKs read to route and to tell a deletion.
pub const ALWAYS_KEPT: [&str; 9] = [
    ".apiVersion",
    ".kind",
    ".metadata.name",
    ".metadata.namespace",
    ".metadata.uid",
    ".metadata.resourceVersion",
    ".metadata.generation",
    ".metadata.ownerReferences",
    ".metadata.deletionTimestamp",
];

/// A guest's projection of one kind, parsed. Two projections with the
/// same paths are equal, and share their narrowed objects in a store.
#[derive(Debug, Clone)]
pub struct Projection {
    /// The paths as declared.
    source: Vec<String>,
    root: Node,
}

/// What to keep of one JSON value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// Keep the whole value.
    whole: bool,
    /// Members to keep, narrowed by their node.
    fields: BTreeMap<String, Node>,
    /// `[*]`: every element of a list (or member of a map), narrowed.
    each: Option<Box<Node>>,
}

impl Node {
    /// Adds the path of `selectors` below this node.
    fn add(&mut self, steps: &[Vec<Step>]) {
        if self.whole {
            return;
        }
        let Some((first, rest)) = steps.split_first() else {
            // Keeping the whole value covers every narrower path.
            *self = Node {
                whole: true,
                ..Node::default()
            };
            return;
        };
        for step in first {
            let child = match step {
                Step::Name(name) => self.fields.entry(name.clone()).or_default(),
                Step::Each => self.each.get_or_insert_with(Box::default),
            };
            child.add(rest);
        }
    }

    /// The node a member named `key` is narrowed by: its own and `[*]`'s,
    /// merged when both exist.
    fn member(&self, key: &str) -> Option<Cow<'_, Node>> {
        match (self.fields.get(key), self.each.as_deref()) {
            (Some(named), None) => Some(Cow::Borrowed(named)),
            (None, Some(each)) => Some(Cow::Borrowed(each)),
            (Some(named), Some(each)) => {
                let mut merged = named.clone();
                merged.merge(each);
                Some(Cow::Owned(merged))
            }
            (None, None) => None,
        }
    }

    fn merge(&mut self, other: &Node) {
        if self.whole || other.whole {
            *self = Node {
                whole: true,
                ..Node::default()
            };
            return;
        }
        for (name, node) in &other.fields {
            self.fields.entry(name.clone()).or_default().merge(node);
        }
        if let Some(each) = &other.each {
            self.each.get_or_insert_with(Box::default).merge(each);
        }
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Name(String),
    Each,
}

impl Projection {
    /// Parses `paths`, in kubectl's JSONPath syntax made of field names and
    /// `[*]` only (`.spec.replicas`, `.metadata.annotations['a.b/c']`,
    /// `.spec.containers[*].image`). At least one is needed; the fields in
    /// [`ALWAYS_KEPT`] are added.
    pub fn parse(paths: &[String]) -> Result<Self, PathError> {
        if paths.is_empty() {
            return Err(PathError {
                path: String::new(),
                problem: "a projection needs at least one path".into(),
            });
        }
        let mut root = Node::default();
        for path in paths {
            root.add(&steps(path)?);
        }
        for path in ALWAYS_KEPT {
            root.add(&steps(path).expect("the fields always kept parse"));
        }
        Ok(Self {
            source: paths.to_vec(),
            root,
        })
    }

    /// The paths as declared.
    pub fn source(&self) -> &[String] {
        &self.source
    }

    /// `json` narrowed to the projection's fields. Text that is not a JSON
    /// object is returned as it is (the host stores only objects).
    pub fn narrow(&self, json: &str) -> String {
        let mut out = String::with_capacity(json.len().min(1024));
        if !narrow_value(json, &self.root, &mut out) {
            return json.to_owned();
        }
        out
    }
}

/// A guest's projections, by kind: what each of its calls and cache reads
/// hands it of an object. Empty for a guest that reads whole objects.
#[derive(Debug, Clone, Default)]
pub struct Projections(Vec<KindProjection>);

#[derive(Debug, Clone)]
struct KindProjection {
    api_version: String,
    kind: String,
    projection: Arc<Projection>,
}

impl Projections {
    /// No projection: every object whole.
    pub fn none() -> Arc<Self> {
        static NONE: std::sync::OnceLock<Arc<Projections>> = std::sync::OnceLock::new();
        Arc::clone(NONE.get_or_init(Arc::default))
    }

    /// The projections of `(api_version, kind, paths)`; the first error
    /// names the kind and the path.
    pub fn parse<'a>(
        declared: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
    ) -> Result<Self, (String, String, PathError)> {
        declared
            .into_iter()
            .map(|(api_version, kind, paths)| {
                Projection::parse(paths)
                    .map(|projection| KindProjection {
                        api_version: api_version.to_owned(),
                        kind: kind.to_owned(),
                        projection: Arc::new(projection),
                    })
                    .map_err(|error| (api_version.to_owned(), kind.to_owned(), error))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether every object is seen whole.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The projection of `api_version` `kind`; `None` when such objects
    /// are seen whole.
    pub fn of(&self, api_version: &str, kind: &str) -> Option<&Arc<Projection>> {
        self.0
            .iter()
            .find(|declared| declared.api_version == api_version && declared.kind == kind)
            .map(|declared| &declared.projection)
    }

    /// `json` as the guest sees it, its kind read from its `apiVersion`
    /// and `kind`: for JSON that is not in a store (fixtures, recordings),
    /// narrowed on every call. Stored objects are narrowed once per version
    /// with [`StoredObject::seen_through`](super::StoredObject::seen_through).
    pub fn narrow(&self, json: String) -> String {
        if self.0.is_empty() {
            return json;
        }
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(default, borrow, rename = "apiVersion")]
            api_version: Cow<'a, str>,
            #[serde(default, borrow)]
            kind: Cow<'a, str>,
        }
        let Ok(head) = serde_json::from_str::<Kind<'_>>(&json) else {
            return json;
        };
        match self.of(&head.api_version, &head.kind) {
            Some(projection) => projection.narrow(&json),
            None => json,
        }
    }

    /// [`Self::narrow`] of each of `objects`.
    pub fn narrow_all(&self, objects: Vec<String>) -> Vec<String> {
        if self.0.is_empty() {
            return objects;
        }
        objects.into_iter().map(|json| self.narrow(json)).collect()
    }
}

impl PartialEq for Projection {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Eq for Projection {}

/// The steps of one path; an error for what a projection cannot keep.
fn steps(path: &str) -> Result<Vec<Vec<Step>>, PathError> {
    let error = |problem: String| PathError {
        path: path.to_owned(),
        problem,
    };
    let rooted = rooted(path).ok_or_else(|| error("is empty".into()))?;
    let query = jsonpath_rust::parser::parse_json_path(&rooted)
        .map_err(|parse| PathError::unparsed(path, parse))?;
    let unsupported = |what: &str| {
        error(format!(
            "selects with {what}, but a projection keeps whole fields: write field names and `[*]` only, keeping a list whole (`.spec.containers`) or one field of every element (`.spec.containers[*].image`)"
        ))
    };
    let selector = |selector: &Selector| match selector {
        Selector::Name(name) => Ok(Step::Name(name.clone())),
        Selector::Wildcard => Ok(Step::Each),
        Selector::Index(_) => Err(unsupported("an index")),
        Selector::Slice(..) => Err(unsupported("a slice")),
        Selector::Filter(_) => Err(unsupported("a filter")),
    };
    query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(one) => Ok(vec![selector(one)?]),
            Segment::Selectors(several) => several.iter().map(selector).collect(),
            Segment::Descendant(_) => Err(unsupported("`..`")),
        })
        .collect()
}

/// Writes `raw` narrowed by `node` to `out`; `false`, writing nothing,
/// when nothing of it is kept (a path that goes on below a string, say).
fn narrow_value(raw: &str, node: &Node, out: &mut String) -> bool {
    if node.whole {
        out.push_str(raw.trim());
        return true;
    }
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => {
            let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(raw) else {
                return false;
            };
            let start = out.len();
            out.push('{');
            let mut first = true;
            for (key, value) in members {
                let Some(child) = node.member(&key) else {
                    continue;
                };
                let before = out.len();
                if !first {
                    out.push(',');
                }
                write_key(&key, out);
                if narrow_value(value.get(), &child, out) {
                    first = false;
                } else {
                    out.truncate(before);
                }
            }
            if first && !node.fields.is_empty() && node.each.is_none() {
                // None of the named fields is there: leave the object out.
                out.truncate(start);
                return false;
            }
            out.push('}');
            true
        }
        Some(b'[') => {
            let Some(each) = node.each.as_deref() else {
                return false;
            };
            let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw) else {
                return false;
            };
            out.push('[');
            let mut first = true;
            for item in items {
                let before = out.len();
                if !first {
                    out.push(',');
                }
                if narrow_value(item.get(), each, out) {
                    first = false;
                } else if item.get().trim_start().starts_with('{') {
                    // An element without the fields stays, empty, so
                    // that positions are kept.
                    out.push_str("{}");
                    first = false;
                } else {
                    out.truncate(before);
                }
            }
            out.push(']');
            true
        }
        _ => false,
    }
}

fn write_key(key: &str, out: &mut String) {
    if key
        .bytes()
        .any(|byte| byte == b'"' || byte == b'\\' || byte < 0x20)
    {
        let _ = write!(out, "{}:", serde_json::Value::from(key));
    } else {
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
    }
}

/// The members of a JSON object, in order, their values unparsed; each
/// key borrowed from the text when it has no escapes.
pub(super) struct Members<'a>(pub(super) Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key_seed(BorrowedKey)? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A key, borrowed from the text when it has no escapes.
struct BorrowedKey;

impl<'de> DeserializeSeed<'de> for BorrowedKey {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(key))
            }
            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(key.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop","uid":"u-1","resourceVersion":"7","generation":3,"labels":{"app":"web"},"annotations":{"paddock.dev/min-replicas":"3","note":"a \"quoted\" note"},"ownerReferences":[{"apiVersion":"v1","kind":"X","name":"x","uid":"u-0"}]},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"app","image":"web:1","env":[{"name":"A","value":"1"}]},{"name":"side","image":"side:2"}]}}},"status":{"replicas":1}}"#;

    fn narrow(paths: &[&str]) -> serde_json::Value {
        let paths: Vec<String> = paths.iter().map(|path| (*path).to_owned()).collect();
        let narrowed = Projection::parse(&paths)
            .expect("parses")
            .narrow(DEPLOYMENT);
        serde_json::from_str(&narrowed).expect("narrowed JSON parses")
    }

    #[test]
    fn keeps_the_named_fields_and_the_identity() {
        let narrowed = narrow(&[
            ".metadata.annotations['paddock.dev/min-replicas']",
            ".spec.replicas",
        ]);
        assert_eq!(
            narrowed,
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                    "resourceVersion": "7", "generation": 3,
                    "annotations": {"paddock.dev/min-replicas": "3"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u-0"}]},
                "spec": {"replicas": 1},
            })
        );
    }

    #[test]
    fn keeps_the_order_and_the_bytes_of_what_it_keeps() {
        let paths = vec![".metadata.annotations".to_owned(), ".status".to_owned()];
        let narrowed = Projection::parse(&paths)
            .expect("parses")
            .narrow(DEPLOYMENT);
        assert!(
            narrowed.starts_with(
                r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web""#
            ),
            "{narrowed}"
        );
        assert!(
            narrowed.contains(r#""note":"a \"quoted\" note""#),
            "{narrowed}"
        );
        assert!(
            narrowed.ends_with(r#""status":{"replicas":1}}"#),
            "{narrowed}"
        );
        assert!(!narrowed.contains("spec"), "{narrowed}");
    }

    #[test]
    fn each_narrows_every_element_and_keeps_positions() {
        let narrowed = narrow(&[".spec.template.spec.containers[*].env"]);
        assert_eq!(
            narrowed["spec"],
            serde_json::json!({"template": {"spec": {"containers": [
                {"env": [{"name": "A", "value": "1"}]}, {}
            ]}}})
        );
        let images = narrow(&[".spec.template.spec.containers[*].image"]);
        assert_eq!(
            images["spec"]["template"]["spec"]["containers"],
            serde_json::json!([{"image": "web:1"}, {"image": "side:2"}])
        );
    }

    #[test]
    fn paths_into_what_is_absent_or_a_scalar_keep_nothing() {
        let narrowed = narrow(&[".spec.strategy.rollingUpdate", ".spec.replicas.value"]);
        assert!(narrowed.get("spec").is_none(), "{narrowed}");
        let whole = narrow(&[".spec", ".spec.replicas"]);
        assert_eq!(
            whole["spec"]["template"]["spec"]["containers"][1]["name"],
            "side"
        );
    }

    #[test]
    fn refuses_what_it_cannot_keep() {
        for (path, word) in [
            (".spec.containers[0]", "an index"),
            (".spec.containers[?(@.name==\"app\")]", "a filter"),
            ("$..image", "`..`"),
            (".spec.containers[0:2]", "a slice"),
        ] {
            let error = Projection::parse(&[path.to_owned()]).expect_err(path);
            assert!(error.to_string().contains(word), "{path}: {error}");
            assert!(error.to_string().contains(path), "{path}: {error}");
        }
        assert!(Projection::parse(&[]).is_err());
        assert!(Projection::parse(&["spec..x".to_owned()]).is_err());
    }

    #[test]
    fn equal_paths_make_equal_projections() {
        let one = Projection::parse(&[".spec".to_owned(), ".spec.replicas".to_owned()]).unwrap();
        let other = Projection::parse(&[".spec".to_owned()]).unwrap();
        assert_eq!(one, other);
    }
}
