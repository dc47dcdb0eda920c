//! The host side of `wit/controller.wit`: the one place that runs `bindgen!`.
//!
//! The bindings are of the `base` world, which every guest implements since
//! 0.1.0; the optional exports that later versions added to `controller`
//! are looked up by name (see `super::guest`), so older guests load as
//! they are.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "paddock:controller/base",
});

/// The bindings of a guest's instance.
pub type Controller = Base;

/// A guest's component, ready to be instantiated.
pub type ControllerPre<T> = BasePre<T>;

/// The optional export of `controller` saying whether a guest finalizes its
/// primary objects (since 0.1.1).
pub const FINALIZES_EXPORT: &str = "finalizes";

/// The optional export of `controller` naming the resources a guest reads
/// without watching them (since 0.1.2).
pub const READS_EXPORT: &str = "reads";

/// The optional export of `controller` declaring the indexes a guest looks
/// objects up by (since 0.1.3).
pub const INDEXES_EXPORT: &str = "indexes";

/// The optional export of `controller` declaring the fields a guest reads
/// of each kind (since 0.1.4).
pub const PROJECTIONS_EXPORT: &str = "projections";

/// The optional export of `controller-json` answering `reconcile` as the
/// JSON of its outcome (since 0.1.5).
pub const RECONCILE_JSON_EXPORT: &str = "reconcile-json";

/// `reconcile-json`, typed: the request, and the outcome's UTF-8 JSON or
/// the guest's failure.
pub type ReconcileJson =
    wasmtime::component::TypedFunc<(Request,), (Result<Vec<u8>, GuestFailure>,)>;

pub use self::paddock::controller::types::{
    Action, Change, Error as GuestFailure, Event, Index, Patch, PatchKind, Projection, Read,
    Relation, Scale, Watch,
};
