//! The host side of `wit/controller.wit`: the one place that runs `bindgen!`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "paddock:controller/controller",
});

pub use self::paddock::controller::types::{
    Action, Change, Error as GuestFailure, Event, Patch, PatchKind, Relation, Scale, Watch,
};
