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
    host::get(&ref_to_wit(target.clone())).map(Object::from_host)
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
        .into_iter()
        .map(Object::from_host)
        .collect()
}

/// Cached objects whose values for the index `index` (declared with
/// [`Info::index`](crate::Info::index)) include `value`, sorted by namespace
/// and name; `namespace` `None` for all the guest may see. The rights of
/// [`list`] on the index's kind apply; an undeclared index finds nothing.
///
/// ```ignore
/// // In `map`, for a changed ConfigMap: the Deployments that mount it.
/// cache::by_index("by-configmap", configmap.name(), configmap.namespace())
/// ```
pub fn by_index(index: &str, value: &str, namespace: Option<&str>) -> Vec<Object> {
    host::by_index(index, value, namespace)
        .into_iter()
        .map(Object::from_host)
        .collect()
}

/// The cached object of the k8s-openapi type `K` named `name` (in
/// `namespace` for a namespaced kind), typed; `None` when absent, not
/// visible to the guest, or not a `K` (with the feature `typed`).
///
/// ```ignore
/// use paddock_guest::k8s::api::core::v1::ConfigMap;
///
/// let settings = cache::get_as::<ConfigMap>(Some("shop"), "settings");
/// ```
#[cfg(feature = "typed")]
pub fn get_as<K>(namespace: Option<&str>, name: &str) -> Option<K>
where
    K: k8s_openapi::Resource + serde::de::DeserializeOwned,
{
    let target = ObjectRef {
        api_version: K::API_VERSION.to_owned(),
        kind: K::KIND.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    };
    get(&target)?.typed().ok()
}

/// Cached objects of the k8s-openapi type `K`, typed, as [`list`] answers
/// them; objects that are not a `K` are left out (with the feature
/// `typed`).
#[cfg(feature = "typed")]
pub fn list_as<K>(namespace: Option<&str>, label_selector: Option<&str>) -> Vec<K>
where
    K: k8s_openapi::Resource + serde::de::DeserializeOwned,
{
    list(K::API_VERSION, K::KIND, namespace, label_selector)
        .iter()
        .filter_map(|object| object.typed().ok())
        .collect()
}
