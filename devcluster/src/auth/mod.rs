//! Who is calling and what they may do: authentication, RBAC, impersonation and access reviews.

pub(crate) mod authn;
pub(crate) mod impersonate;
pub(crate) mod rbac;
pub(crate) mod reviews;
pub(crate) mod serviceaccounts;
pub(crate) mod tokens;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::status::ApiError;

/// The group whose members bypass authorization.
pub(crate) const MASTERS: &str = "system:masters";
/// The group every authenticated user is in.
pub(crate) const AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
pub(crate) const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user of requests without credentials.
pub(crate) const ANONYMOUS: &str = "system:anonymous";
/// The user of the admin token (kubeadm's name for the admin of a fresh cluster).
pub(crate) const ADMIN_USER: &str = "kubernetes-admin";
/// The prefix of ServiceAccount user names.
const SA_PREFIX: &str = "system:serviceaccount:";

/// An authenticated (or anonymous) caller, as the authorizer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The user of the admin token.
    pub(crate) fn admin() -> Self {
        Self::named(ADMIN_USER, &[MASTERS, AUTHENTICATED])
    }

    /// A request without credentials.
    pub(crate) fn anonymous() -> Self {
        Self::named(ANONYMOUS, &[UNAUTHENTICATED])
    }

    /// A user with a name and groups only.
    pub(crate) fn named(name: &str, groups: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// The user a ServiceAccount token authenticates as.
    pub(crate) fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        let mut groups = service_account_groups(namespace);
        groups.push(AUTHENTICATED.to_owned());
        Self {
            name: service_account_user(namespace, name),
            uid: uid.to_owned(),
            groups,
            extra: BTreeMap::new(),
        }
    }

    /// Whether the user bypasses authorization.
    pub(crate) fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// The user as `authentication.k8s.io/v1` `UserInfo`.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("username".into(), Value::from(self.name.clone()));
        if !self.uid.is_empty() {
            m.insert("uid".into(), Value::from(self.uid.clone()));
        }
        m.insert("groups".into(), Value::from(self.groups.clone()));
        if !self.extra.is_empty() {
            let extra: Map<String, Value> = self
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            m.insert("extra".into(), Value::Object(extra));
        }
        Value::Object(m)
    }
}

/// `system:serviceaccount:NS:NAME`.
pub(crate) fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SA_PREFIX}{namespace}:{name}")
}

/// The groups of every ServiceAccount of a namespace.
pub(crate) fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}

/// `(namespace, name)` of a ServiceAccount user name.
pub(crate) fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user.strip_prefix(SA_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// What a request asks to do, as RBAC reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attributes {
    pub verb: String,
    pub kind: Action,
}

/// A request on a resource, or on a plain path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Resource {
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        path: String,
    },
}

impl Attributes {
    /// A resource request.
    pub(crate) fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Self {
            verb: verb.to_owned(),
            kind: Action::Resource {
                group: group.to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
        }
    }

    /// The namespace a resource request is in ("" at the cluster scope and for paths).
    pub(crate) fn namespace(&self) -> &str {
        match &self.kind {
            Action::Resource { namespace, .. } => namespace,
            Action::NonResource { .. } => "",
        }
    }

    /// Reads a request as kube-apiserver's request-info parser does: `/api/v1/...` and
    /// `/apis/G/V/...` with a resource are resource requests (verb from the method, `list`
    /// and `watch` for collections, `deletecollection`), everything else a path.
    pub(crate) fn of_request(
        method: &http::Method,
        path: &str,
        query: &crate::core::Query,
    ) -> Self {
        let non_resource = || Self {
            verb: method.as_str().to_lowercase(),
            kind: Action::NonResource {
                path: path.to_owned(),
            },
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", g, _, rest @ ..] if !rest.is_empty() => (*g, rest),
            _ => return non_resource(),
        };
        let (mut verb, rest) = match rest {
            ["watch", rest @ ..] if !rest.is_empty() => ("watch".to_owned(), rest),
            _ => {
                let verb = match *method {
                    http::Method::POST => "create",
                    http::Method::GET | http::Method::HEAD => "get",
                    http::Method::PUT => "update",
                    http::Method::PATCH => "patch",
                    http::Method::DELETE => "delete",
                    _ => "",
                };
                (verb.to_owned(), rest)
            }
        };
        let (namespace, parts) = match rest {
            ["namespaces", ns, more @ ..] => {
                if more.len() > 1 || (more.len() == 1 && !matches!(more[0], "status" | "finalize"))
                {
                    (*ns, more)
                } else {
                    (*ns, rest)
                }
            }
            _ => ("", rest),
        };
        let resource = parts.first().copied().unwrap_or_default();
        let mut name = parts.get(1).copied().unwrap_or_default().to_owned();
        let subresource = parts.get(2).copied().unwrap_or_default();
        if name.is_empty() && verb == "get" {
            verb = if query.flag("watch") { "watch" } else { "list" }.to_owned();
        }
        if name.is_empty()
            && matches!(verb.as_str(), "list" | "watch")
            && let Some(n) = query
                .get("fieldSelector")
                .and_then(|f| f.strip_prefix("metadata.name="))
                .filter(|n| !n.contains(',') && !n.contains('/') && !n.is_empty())
        {
            name = n.to_owned();
        }
        if name.is_empty() && verb == "delete" {
            verb = "deletecollection".to_owned();
        }
        Self {
            verb,
            kind: Action::Resource {
                group: group.to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: namespace.to_owned(),
                name,
            },
        }
    }
}

/// Authorizes a request: members of `system:masters` always (no RBAC lookup), everyone else
/// through the RBAC bindings.
pub(crate) fn authorize(
    core: &parking_lot::Mutex<crate::core::Core>,
    user: &UserInfo,
    attrs: &Attributes,
) -> rbac::Decision {
    if user.is_master() {
        return rbac::Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let policy = core.lock().policy();
    policy.authorize(user, attrs)
}

/// The 403 a real server writes when `user` may not do `attrs`, with an optional reason.
pub(crate) fn forbidden(user: &str, attrs: &Attributes, reason: &str) -> ApiError {
    let why = match &attrs.kind {
        Action::NonResource { path } => {
            format!("User {user:?} cannot {} path {path:?}", attrs.verb)
        }
        Action::Resource {
            group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let resource = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace {namespace:?}")
            };
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {group:?} {scope}",
                attrs.verb
            )
        }
    };
    let why = if reason.is_empty() {
        why
    } else {
        format!("{why}: {reason}")
    };
    match &attrs.kind {
        Action::NonResource { .. } => forbidden_error("", "", "", &why),
        Action::Resource {
            group,
            resource,
            name,
            ..
        } => forbidden_error(resource, group, name, &why),
    }
}

/// A 403 `Forbidden` Status as `apierrors.NewForbidden` writes it.
pub(crate) fn forbidden_error(resource: &str, group: &str, name: &str, why: &str) -> ApiError {
    let qualified = crate::status::qualified(resource, group);
    let message = if resource.is_empty() && group.is_empty() {
        format!("forbidden: {why}")
    } else if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    };
    let mut details = Map::new();
    if !name.is_empty() {
        details.insert("name".into(), Value::from(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), Value::from(group));
    }
    if !resource.is_empty() {
        details.insert("kind".into(), Value::from(resource));
    }
    ApiError::new(403, "Forbidden", message).with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Query;
    use http::Method;

    fn attrs(method: Method, path: &str, query: &[(&str, &str)]) -> Attributes {
        let q = Query(
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        Attributes::of_request(&method, path, &q)
    }

    #[test]
    fn requests_read_as_the_apiserver_reads_them() {
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/facts/secrets", &[]),
            Attributes::resource("list", "", "secrets", "", "facts", "")
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/api/v1/namespaces/facts/pods",
                &[("watch", "1")]
            ),
            Attributes::resource("watch", "", "pods", "", "facts", "")
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                &[]
            ),
            Attributes::resource("get", "apps", "deployments", "scale", "a", "d")
        );
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/facts", &[]),
            Attributes::resource("get", "", "namespaces", "", "facts", "facts")
        );
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/a/configmaps", &[]).verb,
            "deletecollection"
        );
        assert_eq!(
            attrs(
                Method::GET,
                "/api/v1/watch/namespaces/a/configmaps",
                &[("fieldSelector", "metadata.name=x")]
            ),
            Attributes::resource("watch", "", "configmaps", "", "a", "x")
        );
        assert_eq!(
            attrs(Method::GET, "/apis/apps/v1", &[]),
            Attributes {
                verb: "get".into(),
                kind: Action::NonResource {
                    path: "/apis/apps/v1".into()
                }
            }
        );
    }

    #[test]
    fn forbidden_messages_match_the_apiserver() {
        let list = Attributes::resource("list", "", "secrets", "", "facts", "");
        assert_eq!(
            forbidden("system:serviceaccount:facts:viewer", &list, "").message,
            r#"secrets is forbidden: User "system:serviceaccount:facts:viewer" cannot list resource "secrets" in API group "" in the namespace "facts""#
        );
        let get = Attributes::resource("get", "", "configmaps", "", "", "x");
        assert_eq!(
            forbidden("u", &get, "").message,
            r#"configmaps "x" is forbidden: User "u" cannot get resource "configmaps" in API group "" at the cluster scope"#
        );
        let path = attrs(Method::GET, "/api", &[]);
        let err = forbidden(ANONYMOUS, &path, "");
        assert_eq!(
            err.message,
            r#"forbidden: User "system:anonymous" cannot get path "/api""#
        );
        assert_eq!(err.code, 403);
        assert_eq!(
            split_service_account("system:serviceaccount:facts:viewer"),
            Some(("facts", "viewer"))
        );
        assert_eq!(split_service_account("system:serviceaccount:facts"), None);
    }
}
