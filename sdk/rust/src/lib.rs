//! Write Paddock controllers in Rust.
//!
//! A controller is a type implementing [`Controller`] plus one
//! [`export_controller!`] line. The host hands every reconcile the latest
//! state of one object as an [`Object`]; the controller answers with an
//! [`Outcome`]: a list of [`Action`]s and an optional requeue.
//!
//! ```ignore
//! use paddock_guest::{Action, Controller, Error, Info, Object, Outcome, Request, Watch};
//!
//! struct Floor;
//!
//! impl Controller for Floor {
//!     fn describe() -> Info {
//!         Info::new("replica-floor").watch(Watch::primary("apps/v1", "Deployment"))
//!     }
//!
//!     fn reconcile(req: Request) -> Result<Outcome, Error> {
//!         let deployment = req.object;
//!         let Some(min) = deployment.annotation("paddock.dev/min-replicas") else {
//!             return Ok(Outcome::done());
//!         };
//!         let min: u32 = min.parse().map_err(|_| Error::permanent("not a number"))?;
//!         Ok(Outcome::done().with(Action::scale(deployment.object_ref(), min)))
//!     }
//! }
//!
//! paddock_guest::export_controller!(Floor);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file is the component the host loads.

extern crate self as paddock_guest;

mod action;
pub mod cache;
mod glue;
pub mod log;
mod object;
pub mod time;
mod types;

pub use action::{Action, Outcome, PatchKind};
pub use object::Object;
pub use serde_json::{self, Value, json};

/// Kubernetes' API types, from k8s-openapi (with the feature `typed`):
/// read an object as one with [`Object::typed`] or
/// [`cache::get_as`]/[`cache::list_as`], and answer with one, since every
/// [`Action`] that takes an object takes anything serializable:
///
/// ```ignore
/// use paddock_guest::k8s::api::core::v1::ConfigMap;
///
/// let config_map: ConfigMap = request.object.typed()?;
/// let data = config_map.data.unwrap_or_default();
/// ```
#[cfg(feature = "typed")]
pub use k8s_openapi as k8s;
pub use types::{
    Change, Error, Index, Info, ObjectRef, Projection, Read, Relation, Request, Watch,
};

/// A controller: what it watches and how it reconciles.
///
/// Keep no state between calls: the host may call every method on a fresh
/// instance, or reuse an instance for several calls of this guest (its
/// default), so a global may or may not survive. Read what you need from the
/// request and the [`cache`].
pub trait Controller {
    /// Who this controller is and what it watches. Exactly one watch is
    /// primary.
    fn describe() -> Info;

    /// Reconcile one primary object: answer with the actions that bring the
    /// world in line with it.
    fn reconcile(request: Request) -> Result<Outcome, Error>;

    /// For mapped watches: the primary objects to reconcile when `changed`
    /// (an object of a mapped kind) changes. The default maps to nothing.
    fn map(changed: Object) -> Vec<ObjectRef> {
        let _ = changed;
        Vec::new()
    }
}

/// Exports a [`Controller`] as the component's `paddock:controller` world.
///
/// Use it once per guest crate, at the crate root:
/// `paddock_guest::export_controller!(MyController);`
#[macro_export]
macro_rules! export_controller {
    ($controller:ty) => {
        #[doc(hidden)]
        pub struct __PaddockGuestExport;

        impl $crate::__private::bindings::Guest for __PaddockGuestExport {
            fn describe() -> $crate::__private::wit::Info {
                $crate::__private::describe::<$controller>()
            }

            fn reconcile(
                request: $crate::__private::wit::Request,
            ) -> ::core::result::Result<
                $crate::__private::wit::Outcome,
                $crate::__private::wit::Error,
            > {
                $crate::__private::reconcile::<$controller>(request)
            }

            fn map(changed: ::std::string::String) -> ::std::vec::Vec<$crate::__private::wit::ObjectRef> {
                $crate::__private::map::<$controller>(changed)
            }

            fn finalizes() -> bool {
                $crate::__private::finalizes::<$controller>()
            }

            fn reads() -> ::std::vec::Vec<$crate::__private::wit::Read> {
                $crate::__private::reads::<$controller>()
            }

            fn indexes() -> ::std::vec::Vec<$crate::__private::wit::Index> {
                $crate::__private::indexes::<$controller>()
            }

            fn projections() -> ::std::vec::Vec<$crate::__private::wit::Projection> {
                $crate::__private::projections::<$controller>()
            }
        }

        $crate::__private::bindings::__export_raw!(__PaddockGuestExport with_types_in $crate::__private::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    //! Used by [`export_controller!`](crate::export_controller); not part of the API.
    pub use crate::glue::{describe, finalizes, indexes, map, projections, reads, reconcile};
    pub use wit_bindgen;

    pub use bindings::paddock::controller::types as wit;

    /// The bindings generated from `wit/controller.wit`.
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../../wit",
            world: "paddock:controller/controller",
            pub_export_macro: true,
            export_macro_name: "__export_raw",
            runtime_path: "paddock_guest::__private::wit_bindgen::rt",
        });
    }
}
