//! Impersonation: `Impersonate-User`, `-Group`, `-Uid` and `-Extra-*` headers, each authorised
//! with the `impersonate` verb, as kube-apiserver's impersonation filter does.

use std::collections::BTreeMap;

use http::HeaderMap;
use parking_lot::Mutex;

use super::{
    ANONYMOUS, AUTHENTICATED, Attributes, UNAUTHENTICATED, UserInfo, authorize, forbidden,
    service_account_groups, service_account_user, split_service_account,
};
use crate::core::Core;
use crate::status::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Decodes `%XX` escapes (extra keys travel path-escaped in header names).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = key.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_owned())
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// Whether the request carries any impersonation header.
pub(crate) fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// The user a request acts as: `requestor` itself without impersonation headers, else the
/// impersonated user once every part of it is authorised (403 naming the first refused part).
pub(crate) fn impersonate(
    core: &Mutex<Core>,
    requestor: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    if !requested(headers) {
        return Ok(requestor);
    }
    let requested_user = headers
        .get(USER)
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty());
    let groups_requested = header_values(headers, GROUP);
    let uid = headers
        .get(UID)
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty());
    let mut extras: Vec<(String, &str)> = Vec::new();
    for name in headers.keys() {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            let key = unescape(key);
            for value in header_values(headers, name.as_str()) {
                extras.push((key.clone(), value));
            }
        }
    }
    let Some(requested_user) = requested_user else {
        if groups_requested.is_empty() && extras.is_empty() && uid.is_none() {
            return Ok(requestor);
        }
        return Err(ApiError::internal(
            "requested impersonation of groups, extras or a uid without impersonating a user",
        ));
    };
    let check = |attrs: Attributes| -> Result<(), ApiError> {
        let decision = authorize(core, &requestor, &attrs);
        if decision.allowed {
            Ok(())
        } else {
            Err(forbidden(&requestor.name, &attrs, &decision.reason))
        }
    };
    let mut groups: Vec<String> = Vec::new();
    let name = match split_service_account(requested_user) {
        Some((ns, sa)) => {
            check(Attributes::resource(
                "impersonate",
                "",
                "serviceaccounts",
                "",
                ns,
                sa,
            ))?;
            if groups_requested.is_empty() {
                groups = service_account_groups(ns);
            }
            service_account_user(ns, sa)
        }
        None => {
            check(Attributes::resource(
                "impersonate",
                "",
                "users",
                "",
                "",
                requested_user,
            ))?;
            requested_user.to_owned()
        }
    };
    for group in &groups_requested {
        check(Attributes::resource(
            "impersonate",
            "",
            "groups",
            "",
            "",
            group,
        ))?;
        groups.push((*group).to_owned());
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in extras {
        check(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "userextras",
            &key,
            "",
            value,
        ))?;
        extra.entry(key).or_default().push(value.to_owned());
    }
    if let Some(uid) = uid {
        check(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            "",
            uid,
        ))?;
    }
    if name == ANONYMOUS {
        if !groups.iter().any(|g| g == UNAUTHENTICATED) {
            groups.push(UNAUTHENTICATED.to_owned());
        }
    } else if !groups
        .iter()
        .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
    {
        groups.push(AUTHENTICATED.to_owned());
    }
    Ok(UserInfo {
        name,
        uid: uid.unwrap_or_default().to_owned(),
        groups,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn core() -> Mutex<Core> {
        Mutex::new(Core::new(100, std::time::Duration::from_millis(1)))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_admin_impersonates_a_service_account_with_its_groups() {
        let core = core();
        let user = impersonate(
            &core,
            UserInfo::admin(),
            &headers(&[("impersonate-user", "system:serviceaccount:facts:viewer")]),
        )
        .unwrap();
        assert_eq!(user.name, "system:serviceaccount:facts:viewer");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:facts",
                "system:authenticated"
            ]
        );
        let user = impersonate(
            &core,
            UserInfo::admin(),
            &headers(&[
                ("impersonate-user", "jane"),
                ("impersonate-group", "devs"),
                ("impersonate-extra-scopes%2fa", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
        assert_eq!(user.extra["scopes/a"], ["x"]);
    }

    #[test]
    fn impersonation_without_the_verb_is_forbidden() {
        let core = core();
        let sa = UserInfo::service_account("facts", "viewer", "u");
        let err = impersonate(&core, sa, &headers(&[("impersonate-user", "jane")])).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            r#"users "jane" is forbidden: User "system:serviceaccount:facts:viewer" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let err = impersonate(
            &core,
            UserInfo::admin(),
            &headers(&[("impersonate-group", "devs")]),
        )
        .unwrap_err();
        assert_eq!(err.code, 500);
    }
}
