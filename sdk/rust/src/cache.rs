//! Read-only access to the host's informer caches.
//!
//! The guest sees only what its grant lets it read, in the namespaces it is
//! scoped to; anything else reads as absent.

use crate::__private::bindings::paddock::controller::cache as host;
use crate::glue::ref_to_wit;
use crate::{Object, ObjectRef};

/// The cached state of one object, or `None` when it does not exist or the
/// guest may not see it.
pub fn get(target: &ObjectRef) -> Option<Object> {
    let json = host::get(&ref_to_wit(target.clone()))?;
    Object::parse(&json).ok()
}

/// Cached objects of one kind, sorted by namespace and name; `namespace`
/// `None` for all the guest may see, and an optional label selector
/// (`app=web,tier in (front)`).
pub fn list(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    label_selector: Option<&str>,
) -> Vec<Object> {
    host::list(api_version, kind, namespace, label_selector)
        .iter()
        .filter_map(|json| Object::parse(json).ok())
        .collect()
}
