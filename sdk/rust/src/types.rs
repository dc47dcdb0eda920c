//! The request, watch and error types of the contract, in idiomatic Rust.

use crate::Object;

/// Names one Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// The namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn namespaced(
        api_version: impl Into<String>,
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// A reference to a cluster-scoped object.
    pub fn cluster(
        api_version: impl Into<String>,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }
}

/// Whether the object of a reconcile exists or was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The object exists; the request carries its latest state.
    Applied,
    /// The object is gone; the request carries its last known state.
    Deleted,
}

/// One call to [`Controller::reconcile`](crate::Controller::reconcile).
#[derive(Debug, Clone)]
pub struct Request {
    /// The primary object to reconcile.
    pub object: Object,
    /// Whether it exists or was deleted.
    pub change: Change,
    /// 0 on a first attempt, n on the n-th retry after transient errors.
    pub attempt: u32,
}

impl Request {
    /// Whether this reconcile is about a deletion: the object is gone
    /// ([`Change::Deleted`]) or is being deleted (`deletionTimestamp` set,
    /// as a finalizing controller sees it). Clean up, and answer.
    pub fn is_deletion(&self) -> bool {
        self.change == Change::Deleted || self.object.is_being_deleted()
    }
}

/// How a watched resource relates to the controller's primary objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Objects the controller reconciles.
    Primary,
    /// Objects owned by a primary object (through a controller owner reference).
    Owned,
    /// Objects whose changes [`Controller::map`](crate::Controller::map) turns
    /// into primary objects to reconcile.
    Mapped,
}

/// A resource the controller watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// `group/version`, e.g. `apps/v1`.
    pub api_version: String,
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// How it relates to the primary objects.
    pub relation: Relation,
    /// Only this namespace; `None` for every namespace the guest may see.
    pub namespace: Option<String>,
    /// Only objects matching this label selector.
    pub label_selector: Option<String>,
}

impl Watch {
    fn new(api_version: &str, kind: &str, relation: Relation) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            relation,
            namespace: None,
            label_selector: None,
        }
    }

    /// The kind this controller reconciles.
    pub fn primary(api_version: &str, kind: &str) -> Self {
        Self::new(api_version, kind, Relation::Primary)
    }

    /// A kind this controller creates and owns: changes reconcile the owner.
    pub fn owned(api_version: &str, kind: &str) -> Self {
        Self::new(api_version, kind, Relation::Owned)
    }

    /// A kind whose changes [`Controller::map`](crate::Controller::map) maps
    /// to primary objects.
    pub fn mapped(api_version: &str, kind: &str) -> Self {
        Self::new(api_version, kind, Relation::Mapped)
    }

    /// Only watch one namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Only watch objects matching a label selector, e.g. `app=web`.
    #[must_use]
    pub fn with_label_selector(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_owned());
        self
    }
}

/// A resource the controller reads from the cache without reacting to its
/// changes: the host keeps it cached for the controller (see
/// [`Info::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// `group/version`, e.g. `v1`.
    pub api_version: String,
    /// The kind, e.g. `Secret`.
    pub kind: String,
    /// Only this namespace.
    pub namespace: Option<String>,
}

impl Read {
    /// Objects of `kind` in every namespace the controller may see.
    pub fn new(api_version: &str, kind: &str) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: None,
        }
    }

    /// Only objects in one namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }
}

/// An index of the cache: objects of one kind looked up by the values
/// that JSONPath expressions select in them (see [`Info::index`] and
/// [`cache::by_index`](crate::cache::by_index)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The index's name, unique within the controller.
    pub name: String,
    /// `group/version` of the indexed resource, e.g. `apps/v1`.
    pub api_version: String,
    /// Its kind, e.g. `Deployment`.
    pub kind: String,
    /// JSONPath expressions in kubectl's syntax, e.g.
    /// `.spec.template.spec.volumes[*].configMap.name`.
    pub paths: Vec<String>,
}

impl Index {
    /// An index called `name` of `kind` objects, by the values `paths`
    /// select: strings, numbers and booleans, as text, and each element of
    /// a selected list of them.
    pub fn new(name: &str, api_version: &str, kind: &str, paths: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        }
    }
}

/// Who a controller is and what it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// A short name for logs, metrics and the field manager.
    pub name: String,
    /// The watched resources.
    pub watches: Vec<Watch>,
    /// Whether the controller finalizes its primary objects (see
    /// [`Info::finalizes`]).
    pub finalizes: bool,
    /// The resources it reads without watching them (see [`Info::read`]).
    pub reads: Vec<Read>,
    /// The indexes it looks objects up by (see [`Info::index`]).
    pub indexes: Vec<Index>,
    /// The fields it reads, per kind (see [`Info::project`]).
    pub projections: Vec<Projection>,
}

impl Info {
    /// A controller called `name` that watches nothing yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            watches: Vec::new(),
            finalizes: false,
            reads: Vec::new(),
            indexes: Vec::new(),
            projections: Vec::new(),
        }
    }

    /// Adds a watch.
    #[must_use]
    pub fn watch(mut self, watch: Watch) -> Self {
        self.watches.push(watch);
        self
    }

    /// Finalizes the primary objects: the host holds each with the
    /// finalizer `paddock.dev/<controller>`, so a deletion reaches
    /// [`Controller::reconcile`](crate::Controller::reconcile) while the
    /// object still exists (see [`Request::is_deletion`]), even when the
    /// host was down when it was deleted; once that reconcile succeeds the
    /// host removes the finalizer. The grant must allow `patch` on the
    /// primary resource.
    #[must_use]
    pub fn finalizes(mut self) -> Self {
        self.finalizes = true;
        self
    }

    /// Reads a resource from the cache without watching it: its changes
    /// queue nothing, and the host keeps it cached so that
    /// [`cache::get`](crate::cache::get) and [`cache::list`](crate::cache::list)
    /// find it. A guest reads only kinds it watches or reads; anything else
    /// reads as absent. The grant must allow `get` or `list` on it.
    #[must_use]
    pub fn read(mut self, read: Read) -> Self {
        self.reads.push(read);
        self
    }

    /// Declares an index of a kind the controller watches or reads, for
    /// [`cache::by_index`](crate::cache::by_index). The host evaluates it
    /// whenever it stores an object of the kind, so a lookup does not scan
    /// the cache:
    ///
    /// ```ignore
    /// Info::new("reloader")
    ///     .watch(Watch::primary("apps/v1", "Deployment"))
    ///     .watch(Watch::mapped("v1", "ConfigMap"))
    ///     .index(Index::new("by-configmap", "apps/v1", "Deployment", &[
    ///         ".spec.template.spec.volumes[*].configMap.name",
    ///         ".spec.template.spec.containers[*].envFrom[*].configMapRef.name",
    ///     ]))
    /// ```
    ///
    /// A load whose index is of a kind the controller neither watches nor
    /// reads, repeats a name, or holds an expression that does not parse is
    /// refused, naming the index.
    #[must_use]
    pub fn index(mut self, index: Index) -> Self {
        self.indexes.push(index);
        self
    }

    /// Reads only some fields of a kind the controller watches or reads:
    /// the host hands such objects (to `reconcile`, `map` and every cache
    /// read) narrowed to them, so the guest copies and parses only what it
    /// uses. `apiVersion`, `kind` and the metadata that names and orders
    /// an object (`name`, `namespace`, `uid`, `resourceVersion`,
    /// `generation`, `ownerReferences`, `deletionTimestamp`) are always
    /// kept:
    ///
    /// ```ignore
    /// Info::new("replica-floor")
    ///     .watch(Watch::primary("apps/v1", "Deployment"))
    ///     .project(Projection::new(
    ///         "apps/v1",
    ///         "Deployment",
    ///         &[".metadata.annotations['paddock.dev/min-replicas']", ".spec.replicas"],
    ///     ))
    /// ```
    ///
    /// A field the guest reads but did not list reads as absent, so list
    /// every one (the fixtures of `paddock test` see the same narrowing).
    #[must_use]
    pub fn project(mut self, projection: Projection) -> Self {
        self.projections.push(projection);
        self
    }
}

/// The fields of one kind a controller reads (see [`Info::project`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// `group/version` of the resource, e.g. `apps/v1`.
    pub api_version: String,
    /// Its kind, e.g. `Deployment`.
    pub kind: String,
    /// JSONPath expressions of field names and `[*]`, in kubectl's syntax:
    /// `.spec.replicas`, `.metadata.labels`,
    /// `.metadata.annotations['example.com/key']`,
    /// `.spec.template.spec.containers[*].image`. Each keeps the whole
    /// value it names.
    pub paths: Vec<String>,
}

impl Projection {
    /// The fields `paths` of `kind` objects.
    pub fn new(api_version: &str, kind: &str, paths: &[&str]) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Worth retrying with backoff.
    Transient(String),
    /// Not worth retrying until the object changes.
    Permanent(String),
}

impl Error {
    /// A failure worth retrying with backoff.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient(message.into())
    }

    /// A failure not worth retrying until the object changes.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(message) => write!(f, "transient: {message}"),
            Self::Permanent(message) => write!(f, "permanent: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// An object that does not parse as the expected type is a permanent error:
/// retrying the same object would fail the same way.
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::Permanent(format!("object does not parse: {error}"))
    }
}
