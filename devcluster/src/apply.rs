//! Server-side apply and field ownership: the `metadata.managedFields` of every write.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::openapi::{SchemaFn, TypedSchema};
use crate::status::{ApiError, apply_conflict};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    /// A map field.
    Field(String),
    /// A list-map item by its key: each key field's name and value (as JSON), sorted by name.
    Key(Vec<(String, String)>),
    /// A member of a set-like list of scalars, as JSON.
    Member(String),
}

/// A field path such as `.spec.containers[name="app"].image`.
pub(crate) type Path = Vec<Seg>;

/// How an entry of `managedFields` was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub fields: BTreeSet<Path>,
}

/// Renders a path the way apply conflicts print it.
pub(crate) fn display(path: &Path) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Seg::Key(key) => {
                let fields: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", fields.join(",")));
            }
            Seg::Member(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// Fields the server owns itself and no manager is recorded for.
fn ignored(path: &[Seg]) -> bool {
    fn name(seg: &Seg) -> Option<&str> {
        match seg {
            Seg::Field(f) => Some(f),
            _ => None,
        }
    }
    match path {
        [top] => matches!(name(top), Some("apiVersion" | "kind")),
        [meta, field] => {
            name(meta) == Some("metadata")
                && matches!(
                    name(field),
                    Some(
                        "name"
                            | "namespace"
                            | "uid"
                            | "resourceVersion"
                            | "generation"
                            | "creationTimestamp"
                            | "managedFields"
                            | "deletionTimestamp"
                            | "deletionGracePeriodSeconds"
                            | "selfLink"
                    )
                )
        }
        _ => false,
    }
}

/// How an object's lists and maps merge, read off its schema: a built-in kind's typed schema
/// (with the upstream `x-kubernetes-*` extensions), or a CRD's `openAPIV3Schema`, whose
/// `metadata` is typed as `ObjectMeta`. `x-kubernetes-list-type` `map` keys items by its
/// `x-kubernetes-list-map-keys` (defaulted key fields filled in), `set` makes a list of
/// scalars a set, and anything else (no schema, no list type) is atomic; a map whose
/// `x-kubernetes-map-type` is `atomic` is owned whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lists<'a> {
    /// The schema at this node (`None`: nothing is known, lists are atomic).
    node: Option<&'a Value>,
    /// Where `$ref`s resolve, for built-in types.
    typed: Option<&'static TypedSchema>,
    /// At the top of a custom resource, where `metadata` takes ObjectMeta's rules.
    custom_root: bool,
}

/// How one list merges.
enum ListKind {
    Atomic,
    Set,
    /// Keyed by these fields, with their defaults.
    Map(Vec<(String, Option<Value>)>),
}

impl<'a> Lists<'a> {
    /// The rules for a custom resource with this schema (or none).
    pub(crate) fn custom(schema: Option<&'a Value>) -> Self {
        Self {
            node: schema,
            typed: None,
            custom_root: true,
        }
    }

    /// The rules of a built-in type.
    pub(crate) fn typed(schema_fn: SchemaFn) -> Self {
        let typed = crate::openapi::typed(schema_fn);
        Self {
            node: Some(&typed.root),
            typed: Some(typed),
            custom_root: false,
        }
    }

    /// The node itself, `$ref`s and single-entry `allOf`s followed.
    fn resolved(self) -> Option<&'a Value> {
        let mut node = self.node?;
        for _ in 0..8 {
            if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
                node = self.typed?.resolve(reference)?;
            } else if let Some([only]) = node
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                node = only;
            } else {
                break;
            }
        }
        Some(node)
    }

    /// An extension of the node, on the node itself (a property) or on what it refers to.
    fn extension(self, name: &str) -> Option<&'a Value> {
        self.node
            .and_then(|node| node.get(name))
            .or_else(|| self.resolved().and_then(|node| node.get(name)))
    }

    fn at(self, node: Option<&'a Value>) -> Self {
        Self {
            node,
            typed: self.typed,
            custom_root: false,
        }
    }

    /// The rules of the field `key` of the map here.
    pub(crate) fn child(self, key: &str) -> Self {
        if self.custom_root && key == "metadata" {
            return Self::typed(crate::openapi::schema_of::<ObjectMeta>);
        }
        let node = self.resolved().and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        self.at(node)
    }

    /// The rules of the items of the list here.
    pub(crate) fn items(self) -> Self {
        let node = self.resolved().and_then(|s| s.get("items"));
        self.at(node)
    }

    /// How a strategic merge patch merges the list here: by this merge key
    /// (`Some(Some(key))`), as a set of scalars (`Some(None)`), or not at all (`None`: the
    /// patch replaces it), from `x-kubernetes-patch-strategy` and
    /// `x-kubernetes-patch-merge-key`.
    pub(crate) fn patch_merge(self) -> Option<Option<&'a str>> {
        let strategy = self
            .extension("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)?;
        strategy.split(',').any(|part| part == "merge").then(|| {
            self.extension("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str)
        })
    }

    /// Whether the map here is owned whole.
    fn atomic_map(self) -> bool {
        self.extension("x-kubernetes-map-type")
            .and_then(Value::as_str)
            == Some("atomic")
    }

    /// How the list here merges, given its items.
    fn kind<'v>(self, mut items: impl Iterator<Item = &'v Value>) -> ListKind {
        match self
            .extension("x-kubernetes-list-type")
            .and_then(Value::as_str)
        {
            Some("set") => ListKind::Set,
            Some("map") => {
                let Some(names) = self
                    .extension("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                else {
                    return ListKind::Atomic;
                };
                let item = self.items();
                let keys: Vec<(String, Option<Value>)> = names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|name| {
                        let default = item
                            .child(name)
                            .resolved()
                            .and_then(|field| field.get("default"))
                            .cloned();
                        (name.to_owned(), default)
                    })
                    .collect();
                let keyed = !keys.is_empty()
                    && items.all(|i| {
                        i.is_object()
                            && keys
                                .iter()
                                .all(|(name, default)| i.get(name).is_some() || default.is_some())
                    });
                if keyed {
                    ListKind::Map(keys)
                } else {
                    ListKind::Atomic
                }
            }
            _ => ListKind::Atomic,
        }
    }
}

impl Lists<'_> {
    /// Calls `visit` on every object within `v`, outermost first, with the rules that apply
    /// to it. Only built-in types are walked: the Go markers these walks read exist for them
    /// alone.
    fn each_typed_object(
        self,
        v: &mut Value,
        visit: &mut impl FnMut(Self, &mut Map<String, Value>),
    ) {
        if self.typed.is_none() {
            return;
        }
        match v {
            Value::Object(m) => {
                visit(self, m);
                for (key, child) in m.iter_mut() {
                    self.child(key).each_typed_object(child, visit);
                }
            }
            Value::Array(items) => {
                let item = self.items();
                for i in items {
                    item.each_typed_object(i, visit);
                }
            }
            _ => {}
        }
    }

    /// A built-in object as the server holds it once decoded into its Go type: every field Go
    /// always writes (`{}` for a struct held by value, `null` for a nil slice or a zero time,
    /// `""` for a string without `omitempty`) is filled in where absent. Field ownership
    /// compares these values, so that a struct every object has (`spec`, `spec.template`) is
    /// not taken as added by the first writer, as a newly created `labels` map is. A custom
    /// resource has no Go type and is left as it is.
    fn fill_go_zero_values(self, v: &mut Value) {
        self.each_typed_object(v, &mut |rules, m| {
            let zeros = rules
                .resolved()
                .and_then(|s| s.get(crate::openapi::GO_ZERO))
                .and_then(Value::as_object);
            for (key, zero) in zeros.into_iter().flatten() {
                if !m.contains_key(key) {
                    m.insert(key.clone(), zero.clone());
                }
            }
        });
    }

    /// Leaves out what a real server's storage leaves out: a built-in object is decoded into
    /// its Go type and stored re-encoded, so a field tagged `omitempty` that holds its zero
    /// value (`paused: false`, `minReadySeconds: 0`, `ports: []`, which protobuf bodies always
    /// carry) is not stored. Pointers keep a zero (`replicas: 0`), and a custom resource keeps
    /// everything.
    pub(crate) fn drop_go_omitted(self, obj: &mut Map<String, Value>) {
        let mut value = Value::Object(std::mem::take(obj));
        self.each_typed_object(&mut value, &mut |rules, m| {
            let omitted = rules
                .resolved()
                .and_then(|s| s.get(crate::openapi::OMITEMPTY))
                .and_then(Value::as_array);
            for field in omitted.into_iter().flatten().filter_map(Value::as_str) {
                if m.get(field).is_some_and(is_go_empty) {
                    m.remove(field);
                }
            }
        });
        if let Value::Object(m) = value {
            *obj = m;
        }
    }
}

/// Whether a value is what Go's `omitempty` leaves out of a string, number, boolean, slice
/// or map field.
fn is_go_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
    }
}

/// The key of a list-map item: each key field's value (its default when absent) as JSON, in
/// the order of the field names, as structured merge sorts them.
fn item_key(item: &Value, keys: &[(String, Option<Value>)]) -> Vec<(String, String)> {
    let mut key: Vec<(String, String)> = keys
        .iter()
        .map(|(name, default)| {
            let value = item.get(name).or(default.as_ref()).map(Value::to_string);
            (name.clone(), value.unwrap_or_default())
        })
        .collect();
    key.sort();
    key
}

/// Fills the defaulted key fields an item leaves out, as the server defaults them.
fn default_keys(item: &mut Value, keys: &[(String, Option<Value>)]) {
    if let Some(map) = item.as_object_mut() {
        for (name, default) in keys {
            if let (false, Some(default)) = (map.contains_key(name), default) {
                map.insert(name.clone(), default.clone());
            }
        }
    }
}

/// Whether a list item has this key.
fn has_key(item: &Value, key: &[(String, String)]) -> bool {
    key.iter()
        .all(|(name, value)| item.get(name).map(Value::to_string).as_deref() == Some(value))
}

/// Collects the leaf field paths a value sets.
pub(crate) fn leaves(obj: &Map<String, Value>, lists: Lists<'_>) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    walk_map(obj, &mut Vec::new(), lists, &mut out);
    out
}

fn walk_map(m: &Map<String, Value>, path: &mut Path, lists: Lists<'_>, out: &mut BTreeSet<Path>) {
    for (k, v) in m {
        path.push(Seg::Field(k.clone()));
        if !ignored(path) {
            walk_value(v, path, lists.child(k), out);
        }
        path.pop();
    }
}

fn walk_value(v: &Value, path: &mut Path, lists: Lists<'_>, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() && !lists.atomic_map() => walk_map(m, path, lists, out),
        Value::Array(items) if !items.is_empty() => match lists.kind(items.iter()) {
            ListKind::Set => {
                for item in items {
                    path.push(Seg::Member(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                let item_lists = lists.items();
                for item in items {
                    path.push(Seg::Key(item_key(item, &keys)));
                    out.insert(path.clone());
                    if let Some(m) = item.as_object().filter(|_| !item_lists.atomic_map()) {
                        walk_map(m, path, item_lists, out);
                    }
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a path.
pub(crate) fn value_at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Field(f) => cur.as_object()?.get(f)?,
            Seg::Key(key) => cur.as_array()?.iter().find(|i| has_key(i, key))?,
            Seg::Member(val) => cur.as_array()?.iter().find(|i| i.to_string() == *val)?,
        };
    }
    Some(cur)
}

/// Removes the value at a path, if present.
pub(crate) fn remove_at(v: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = match seg {
            Seg::Field(f) => cur.as_object_mut().and_then(|m| m.get_mut(f)),
            Seg::Key(key) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| has_key(i, key))),
            Seg::Member(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        Seg::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Seg::Key(key) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !has_key(i, key));
            }
        }
        Seg::Member(val) => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| i.to_string().as_str() != val.as_str());
            }
        }
    }
}

/// Merges an applied configuration into an object: maps deeply, keyed lists by key (new items
/// appended), sets by member, everything else replaced.
pub(crate) fn merge_applied(
    target: &mut Map<String, Value>,
    applied: &Map<String, Value>,
    lists: Lists<'_>,
) {
    for (k, av) in applied {
        let child = lists.child(k);
        match (target.get_mut(k), av) {
            (Some(Value::Object(t)), Value::Object(a)) if !a.is_empty() && !child.atomic_map() => {
                merge_applied(t, a, child)
            }
            (Some(Value::Array(t)), Value::Array(a)) => match child.kind(a.iter()) {
                ListKind::Set => {
                    for v in a {
                        if !t.contains(v) {
                            t.push(v.clone());
                        }
                    }
                }
                ListKind::Map(keys) => {
                    let items = child.items();
                    for item in a {
                        let key = item_key(item, &keys);
                        match t.iter_mut().find(|i| item_key(i, &keys) == key) {
                            Some(Value::Object(existing)) if !items.atomic_map() => {
                                if let Some(im) = item.as_object() {
                                    merge_applied(existing, im, items);
                                }
                            }
                            Some(existing) => *existing = item.clone(),
                            None => {
                                let mut item = item.clone();
                                default_keys(&mut item, &keys);
                                t.push(item);
                            }
                        }
                    }
                }
                ListKind::Atomic => *t = a.clone(),
            },
            _ => {
                target.insert(k.clone(), av.clone());
            }
        }
    }
}

/// Reads `metadata.managedFields`.
pub(crate) fn read_entries(obj: &Map<String, Value>) -> Vec<Entry> {
    let Some(list) = obj
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1").and_then(Value::as_object) {
                parse_fields(f, &mut Vec::new(), &mut fields);
            }
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                subresource: s("subresource"),
                time: s("time"),
                fields,
            }
        })
        .collect()
}

fn parse_fields(m: &Map<String, Value>, path: &mut Path, out: &mut BTreeSet<Path>) {
    for (k, v) in m {
        if k == "." {
            out.insert(path.clone());
            continue;
        }
        let seg = if let Some(f) = k.strip_prefix("f:") {
            Seg::Field(f.to_owned())
        } else if let Some(key) = k.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            if parsed.is_empty() {
                continue;
            }
            let mut key: Vec<(String, String)> = parsed
                .into_iter()
                .map(|(name, value)| (name, value.to_string()))
                .collect();
            key.sort();
            Seg::Key(key)
        } else if let Some(val) = k.strip_prefix("v:") {
            Seg::Member(val.to_owned())
        } else {
            continue;
        };
        path.push(seg);
        match v.as_object() {
            Some(child) if !child.is_empty() => parse_fields(child, path, out),
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

fn fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for (i, seg) in path.iter().enumerate() {
            let key = match seg {
                Seg::Field(f) => format!("f:{f}"),
                Seg::Key(key) => {
                    let fields: Vec<String> = key
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                        .collect();
                    format!("k:{{{}}}", fields.join(","))
                }
                Seg::Member(v) => format!("v:{v}"),
            };
            let entry = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else { break };
            cur = next;
            let is_last = i + 1 == path.len();
            if is_last
                && fields
                    .iter()
                    .any(|p| p.len() > path.len() && p.starts_with(path))
            {
                cur.insert(".".into(), Value::Object(Map::new()));
            }
        }
    }
    Value::Object(root)
}

/// Writes `metadata.managedFields` from entries (entries without fields are dropped).
pub(crate) fn write_entries(obj: &mut Map<String, Value>, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), Value::from(e.manager.clone()));
            m.insert("operation".into(), Value::from(e.operation.clone()));
            m.insert("apiVersion".into(), Value::from(e.api_version.clone()));
            m.insert("time".into(), Value::from(e.time.clone()));
            m.insert("fieldsType".into(), Value::from("FieldsV1"));
            m.insert("fieldsV1".into(), fields_v1(&e.fields));
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), Value::from(e.subresource.clone()));
            }
            Value::Object(m)
        })
        .collect();
    let meta = crate::json::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Who is writing, and how.
#[derive(Debug, Clone)]
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub time: &'a str,
}

fn entry_for<'e>(entries: &'e mut Vec<Entry>, w: &Writer<'_>, operation: &str) -> &'e mut Entry {
    let pos = entries.iter().position(|e| {
        e.manager == w.manager && e.operation == operation && e.subresource == w.subresource
    });
    match pos {
        Some(p) => &mut entries[p],
        None => {
            entries.push(Entry {
                manager: w.manager.to_owned(),
                operation: operation.to_owned(),
                api_version: w.api_version.to_owned(),
                subresource: w.subresource.to_owned(),
                time: w.time.to_owned(),
                fields: BTreeSet::new(),
            });
            let last = entries.len() - 1;
            &mut entries[last]
        }
    }
}

/// What a write changed, as structured merge compares two objects: the fields and items it
/// added (a map, struct or list item counts as added with its fields, and shows as a `"."`
/// entry), the leaf values it modified, and what it removed.
#[derive(Debug, Default)]
struct Comparison {
    added: BTreeSet<Path>,
    modified: BTreeSet<Path>,
    removed: BTreeSet<Path>,
}

impl Comparison {
    fn of(lhs: &Value, rhs: &Value, lists: Lists<'_>) -> Self {
        let mut c = Self::default();
        c.walk(Some(lhs), Some(rhs), lists, &mut Vec::new());
        // The object and its metadata are nobody's: only their fields are owned.
        let metadata = [Seg::Field("metadata".into())];
        for set in [&mut c.added, &mut c.modified, &mut c.removed] {
            set.retain(|p| !p.is_empty() && p.as_slice() != metadata);
        }
        c
    }

    fn leaf(&mut self, lhs: Option<&Value>, rhs: Option<&Value>, path: &Path) {
        match (lhs, rhs) {
            (None, Some(_)) => self.added.insert(path.clone()),
            (Some(_), None) => self.removed.insert(path.clone()),
            (Some(a), Some(b)) if a != b => self.modified.insert(path.clone()),
            _ => false,
        };
    }

    /// After a map's or list's items: the container itself appeared or went.
    fn container(&mut self, lhs: Option<&Value>, rhs: Option<&Value>, path: &Path) {
        match (lhs, rhs) {
            (None, Some(_)) => self.added.insert(path.clone()),
            (Some(_), None) => self.removed.insert(path.clone()),
            _ => false,
        };
    }

    fn walk(
        &mut self,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        lists: Lists<'_>,
        path: &mut Path,
    ) {
        let objects = (
            lhs.and_then(Value::as_object),
            rhs.and_then(Value::as_object),
        );
        let arrays = (lhs.and_then(Value::as_array), rhs.and_then(Value::as_array));
        if let (Some(_), _) | (_, Some(_)) = objects {
            let (l, r) = objects;
            let empty = |m: Option<&Map<String, Value>>| m.is_none_or(Map::is_empty);
            if lists.atomic_map() || (empty(l) && empty(r)) {
                return self.leaf(lhs, rhs, path);
            }
            let keys: BTreeSet<&String> = l.into_iter().chain(r).flat_map(Map::keys).collect();
            for key in keys {
                path.push(Seg::Field(key.clone()));
                if !ignored(path) {
                    let (lv, rv) = (l.and_then(|m| m.get(key)), r.and_then(|m| m.get(key)));
                    self.walk(lv, rv, lists.child(key), path);
                }
                path.pop();
            }
            return self.container(lhs, rhs, path);
        }
        if let (Some(_), _) | (_, Some(_)) = arrays {
            let (l, r) = (
                arrays.0.map_or(&[][..], Vec::as_slice),
                arrays.1.map_or(&[][..], Vec::as_slice),
            );
            if l.is_empty() && r.is_empty() {
                return self.leaf(lhs, rhs, path);
            }
            match lists.kind(l.iter().chain(r)) {
                ListKind::Atomic => return self.leaf(lhs, rhs, path),
                ListKind::Set => {
                    let members: BTreeSet<String> =
                        l.iter().chain(r).map(Value::to_string).collect();
                    for member in members {
                        let is_member = |v: &&Value| v.to_string() == member;
                        let (lv, rv) = (l.iter().find(is_member), r.iter().find(is_member));
                        path.push(Seg::Member(member));
                        self.leaf(lv, rv, path);
                        path.pop();
                    }
                }
                ListKind::Map(keys) => {
                    let item_lists = lists.items();
                    let ids: BTreeSet<Vec<(String, String)>> =
                        l.iter().chain(r).map(|i| item_key(i, &keys)).collect();
                    for id in ids {
                        let keyed = |i: &&Value| item_key(i, &keys) == id;
                        let (lv, rv) = (l.iter().find(keyed), r.iter().find(keyed));
                        path.push(Seg::Key(id));
                        self.walk(lv, rv, item_lists, path);
                        path.pop();
                    }
                }
            }
            return self.container(lhs, rhs, path);
        }
        self.leaf(lhs, rhs, path);
    }
}

/// Records a non-apply write (create, update, patch), as structured merge updates field
/// ownership: the writer takes what the write added or modified, from every other manager,
/// and what it removed is nobody's any more. With `reset_status`, the write went to the main
/// resource of a kind with a status subresource, whose `status` it cannot set.
pub(crate) fn record_update(
    old: Option<&Map<String, Value>>,
    new: &mut Map<String, Value>,
    w: &Writer<'_>,
    lists: Lists<'_>,
    reset_status: bool,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let mut before = Value::Object(old.cloned().unwrap_or_default());
    let mut after = Value::Object(new.clone());
    lists.fill_go_zero_values(&mut before);
    lists.fill_go_zero_values(&mut after);
    let mut cmp = Comparison::of(&before, &after, lists);
    if reset_status {
        let status = Seg::Field("status".into());
        for set in [&mut cmp.added, &mut cmp.modified, &mut cmp.removed] {
            set.retain(|p| p.first() != Some(&status));
        }
    }
    let taken: BTreeSet<Path> = cmp.added.union(&cmp.modified).cloned().collect();
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !taken.contains(p) && !cmp.removed.contains(p));
    }
    if !taken.is_empty() {
        // A write that took any field changed the object: its entry is stamped anew.
        let e = entry_for(&mut entries, w, "Update");
        e.fields.extend(taken);
        e.time = w.time.to_owned();
        e.api_version = w.api_version.to_owned();
    }
    write_entries(new, &entries);
}

/// Server-side apply of `applied` onto `current` (`None` when the object is new) by `w.manager`.
pub(crate) fn apply(
    current: Option<&Map<String, Value>>,
    applied: &Map<String, Value>,
    w: &Writer<'_>,
    force: bool,
    lists: Lists<'_>,
) -> Result<Map<String, Value>, ApiError> {
    let mut entries = current.map(read_entries).unwrap_or_default();
    let new_set = leaves(applied, lists);
    let cur_value = Value::Object(current.cloned().unwrap_or_default());
    // A field conflicts when applying would change its value, as structured
    // merge compares the live object with the merged one: an identical value,
    // or a list item whose applied fields all match, becomes shared ownership.
    let mut preview = current.cloned().unwrap_or_default();
    merge_applied(&mut preview, applied, lists);
    let merged_value = Value::Object(preview);
    let mut conflicts = Vec::new();
    for e in entries.iter_mut() {
        if e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource {
            continue;
        }
        let clashing: Vec<Path> = e
            .fields
            .iter()
            .filter(|p| new_set.contains(*p) && changes(p, &cur_value, &merged_value))
            .cloned()
            .collect();
        for p in clashing {
            if force {
                e.fields.remove(&p);
            } else {
                conflicts.push((manager_label(e), display(&p)));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(apply_conflict(&conflicts));
    }
    let mut obj = cur_value;
    let own = entry_for(&mut entries, w, "Apply");
    let previous = std::mem::take(&mut own.fields);
    own.fields = new_set.clone();
    if own.fields != previous {
        own.time = w.time.to_owned();
        own.api_version = w.api_version.to_owned();
    }
    for p in previous.difference(&new_set) {
        let owned_elsewhere = entries.iter().any(|e| e.fields.contains(p));
        if !owned_elsewhere && !new_set.iter().any(|n| n.starts_with(p)) {
            remove_at(&mut obj, p);
        }
    }
    let Value::Object(mut obj) = obj else {
        return Err(ApiError::internal("object is not a map"));
    };
    merge_applied(&mut obj, applied, lists);
    write_entries(&mut obj, &entries);
    Ok(obj)
}

/// Whether applying changes what a manager owns at `path`: the value of a field, or, for a
/// list-map item, whether it exists (its fields are owned one by one).
fn changes(path: &[Seg], current: &Value, merged: &Value) -> bool {
    let (before, after) = (value_at(current, path), value_at(merged, path));
    match path.last() {
        Some(Seg::Key(_)) => before.is_some() != after.is_some(),
        _ => before != after,
    }
}

fn manager_label(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        s.push_str(&format!(" with subresource {:?}", e.subresource));
    }
    if e.operation == "Update" {
        if e.time.is_empty() {
            s.push_str(&format!(" using {}", e.api_version));
        } else {
            s.push_str(&format!(" using {} at {}", e.api_version, e.time));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn w(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            subresource: "",
            time: "2026-01-01T00:00:00Z",
        }
    }

    fn configmaps() -> Lists<'static> {
        Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::core::v1::ConfigMap>)
    }

    fn pods() -> Lists<'static> {
        Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::core::v1::Pod>)
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let a = apply(None, &map(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"shared": "1"}})), &w("mgr-a"), false, configmaps()).unwrap();
        let err = apply(
            Some(&a),
            &map(json!({"metadata": {"name": "x"}, "data": {"shared": "2"}})),
            &w("mgr-b"),
            false,
            configmaps(),
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"mgr-a\": .data.shared"
        );
        let b = apply(
            Some(&a),
            &map(json!({"metadata": {"name": "x"}, "data": {"shared": "2"}})),
            &w("mgr-b"),
            true,
            configmaps(),
        )
        .unwrap();
        assert_eq!(b["data"]["shared"], "2");
        let entries = read_entries(&b);
        assert_eq!(entries.len(), 1, "mgr-a lost its only field: {entries:?}");
        assert_eq!(entries[0].manager, "mgr-b");
    }

    #[test]
    fn apply_removes_fields_the_manager_stopped_applying_and_appends_list_items() {
        let spec = |containers: Value| {
            map(
                json!({"metadata": {"name": "d"}, "spec": {"containers": containers}, "data": {"x": "1"}}),
            )
        };
        let a = apply(
            None,
            &spec(json!([{"name": "app", "image": "a"}])),
            &w("m"),
            false,
            pods(),
        )
        .unwrap();
        let b = apply(
            Some(&a),
            &spec(json!([{"name": "app", "image": "a"}, {"name": "sidecar", "image": "s"}])),
            &w("m"),
            false,
            pods(),
        )
        .unwrap();
        let names: Vec<&str> = b["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app", "sidecar"]);
        let c = apply(Some(&b), &map(json!({"metadata": {"name": "d"}, "spec": {"containers": [{"name": "app", "image": "a"}]}})), &w("m"), false, pods()).unwrap();
        assert_eq!(c["spec"]["containers"].as_array().unwrap().len(), 1);
        assert!(c.get("data").and_then(|d| d.get("x")).is_none(), "{c:?}");
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = map(
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "app", "image": "i"}]}}),
        );
        let set = leaves(&obj, pods());
        let mut parsed = BTreeSet::new();
        parse_fields(
            fields_v1(&set).as_object().unwrap(),
            &mut Vec::new(),
            &mut parsed,
        );
        assert_eq!(parsed, set);
    }

    #[test]
    fn built_in_lists_and_maps_follow_the_upstream_extensions() {
        let deployments =
            Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::apps::v1::Deployment>);
        let deployment = |ports: Value| {
            map(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "nginx", "ports": ports}]}},
                },
            }))
        };
        // Ports are keyed by port and protocol, the protocol defaulted: the same port over
        // TCP and UDP are two items.
        let both =
            deployment(json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}]));
        let set = leaves(&both, deployments);
        let port = |protocol: &str| {
            vec![
                Seg::Field("spec".into()),
                Seg::Field("template".into()),
                Seg::Field("spec".into()),
                Seg::Field("containers".into()),
                Seg::Key(vec![("name".into(), "\"c\"".into())]),
                Seg::Field("ports".into()),
                Seg::Key(vec![
                    ("containerPort".into(), "53".into()),
                    ("protocol".into(), format!("\"{protocol}\"")),
                ]),
            ]
        };
        assert!(set.contains(&port("TCP")), "{set:?}");
        assert!(set.contains(&port("UDP")), "{set:?}");
        assert_eq!(
            display(&port("UDP")),
            ".spec.template.spec.containers[name=\"c\"].ports[containerPort=53,protocol=\"UDP\"]"
        );
        // The selector is an atomic map: owned whole, not label by label.
        let selector = vec![Seg::Field("spec".into()), Seg::Field("selector".into())];
        assert!(set.contains(&selector), "{set:?}");
        assert!(!set.iter().any(|p| p.len() > 2 && p.starts_with(&selector)));
        let fields = fields_v1(&set);
        assert_eq!(fields["f:spec"]["f:selector"], json!({}));
        let ports = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]
            ["f:ports"];
        assert!(
            ports
                .get("k:{\"containerPort\":53,\"protocol\":\"UDP\"}")
                .is_some(),
            "{fields}"
        );
        let mut parsed = BTreeSet::new();
        parse_fields(fields.as_object().unwrap(), &mut Vec::new(), &mut parsed);
        assert_eq!(parsed, set, "fieldsV1 round-trips");

        // Applying both ports over the creation of one keeps them apart (the write's
        // defaulting, not this unit, fills in the first one's protocol).
        let created = apply(
            None,
            &deployment(json!([{"containerPort": 53}])),
            &w("creator"),
            false,
            deployments,
        )
        .unwrap();
        let applied = apply(Some(&created), &both, &w("kubectl"), false, deployments).unwrap();
        let ports = applied["spec"]["template"]["spec"]["containers"][0]["ports"].clone();
        assert_eq!(
            ports,
            json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}])
        );
        // A selector changed by another manager conflicts on the selector, whole.
        let mut moved = deployment(json!([{"containerPort": 53}]));
        moved["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        let conflict = apply(Some(&applied), &moved, &w("mover"), false, deployments).unwrap_err();
        assert!(
            conflict.message.contains(".spec.selector"),
            "{}",
            conflict.message
        );
        assert!(
            !conflict.message.contains("matchLabels"),
            "{}",
            conflict.message
        );
    }

    #[test]
    fn storage_leaves_out_what_go_leaves_out() {
        let deployments =
            Lists::typed(crate::openapi::schema_of::<k8s_openapi::api::apps::v1::Deployment>);
        let mut obj = map(json!({
            "metadata": {"name": "d", "generation": 0, "labels": {}},
            "spec": {
                "replicas": 0, "paused": false, "minReadySeconds": 0,
                "template": {"spec": {"hostNetwork": false, "containers": [
                    {"name": "c", "image": "", "stdin": false, "ports": [], "resources": {}},
                ]}},
            },
        }));
        deployments.drop_go_omitted(&mut obj);
        // A pointer keeps its zero (`replicas`), a struct held by value is always written.
        assert_eq!(
            Value::Object(obj),
            json!({
                "metadata": {"name": "d"},
                "spec": {"replicas": 0, "template": {"spec": {"containers": [
                    {"name": "c", "resources": {}},
                ]}}},
            })
        );
        // A custom resource keeps everything.
        let mut custom = map(json!({"spec": {"paused": false}}));
        Lists::custom(None).drop_go_omitted(&mut custom);
        assert_eq!(custom["spec"]["paused"], false);
    }

    #[test]
    fn an_update_owns_what_it_added_and_modified_and_loses_nothing_else() {
        let configmaps = configmaps();
        let mut created = map(json!({"metadata": {"name": "x"}, "data": {"a": "1"}}));
        record_update(None, &mut created, &w("creator"), configmaps, false);
        let mut changed = created.clone();
        changed["data"]["a"] = json!("2");
        changed["data"]["b"] = json!("3");
        record_update(
            Some(&created),
            &mut changed,
            &w("editor"),
            configmaps,
            false,
        );
        let entries = read_entries(&changed);
        let fields = |manager: &str| {
            entries
                .iter()
                .find(|e| e.manager == manager)
                .map(|e| fields_v1(&e.fields))
        };
        // The creator made the `data` map and keeps it (its `"."` with no fields below is
        // written `{}`); the editor took `a` and added `b`.
        assert_eq!(fields("creator"), Some(json!({"f:data": {}})));
        assert_eq!(
            fields("editor"),
            Some(json!({"f:data": {"f:a": {}, "f:b": {}}}))
        );
    }

    #[test]
    fn custom_resource_lists_follow_the_schema_list_type() {
        let schema = json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        }}}});
        let lists = Lists::custom(Some(&schema));
        let a = apply(None, &map(json!({"metadata": {"name": "x"}, "status": {"conditions": [{"type": "A", "status": "True"}], "tags": ["a"]}})), &w("mgr-a"), false, lists).unwrap();
        let b = apply(Some(&a), &map(json!({"metadata": {"name": "x"}, "status": {"conditions": [{"type": "B", "status": "False"}], "tags": ["b"]}})), &w("mgr-b"), false, lists).unwrap();
        let types: Vec<&str> = b["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["A", "B"], "list-map items of two managers coexist");
        assert_eq!(b["status"]["tags"], json!(["a", "b"]));
        let atomic = apply(
            Some(&b),
            &map(json!({"metadata": {"name": "x"}, "status": {"other": [1]}})),
            &w("mgr-c"),
            false,
            Lists::custom(None),
        )
        .unwrap();
        assert_eq!(atomic["status"]["other"], json!([1]));
    }
}
