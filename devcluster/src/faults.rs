//! Fault injection (failing requests, latency) and the request and watch counters tests assert on.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::status::ApiError;

/// What an injected fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// 429 `TooManyRequests` with a `Retry-After` header.
    TooManyRequests,
    /// 500 `InternalError`.
    InternalError,
    /// 409 `Conflict`.
    Conflict,
}

/// Makes the next matching requests fail.
///
/// Defaults: any verb, any resource, once, `Retry-After: 1` for 429.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Kubernetes verb to match (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`); `None` matches all.
    #[serde(default)]
    pub verb: Option<String>,
    /// API group to match (`""` for the core group); `None` matches all.
    #[serde(default)]
    pub group: Option<String>,
    /// Resource (plural, optionally `plural/subresource`) to match; `None` matches all.
    #[serde(default)]
    pub resource: Option<String>,
    /// The answer.
    pub kind: FaultKind,
    /// How many requests fail before the rule is used up.
    #[serde(default = "one")]
    pub times: u32,
    /// The `Retry-After` seconds of a 429.
    #[serde(default = "one_u64")]
    pub retry_after_seconds: u64,
}

fn one() -> u32 {
    1
}

fn one_u64() -> u64 {
    1
}

impl FaultRule {
    /// A rule failing the next matching request with `kind`.
    #[must_use]
    pub fn new(kind: FaultKind) -> Self {
        Self {
            verb: None,
            group: None,
            resource: None,
            kind,
            times: 1,
            retry_after_seconds: 1,
        }
    }

    /// Fails with 429 `TooManyRequests` and `Retry-After`.
    #[must_use]
    pub fn too_many_requests() -> Self {
        Self::new(FaultKind::TooManyRequests)
    }

    /// Fails with 500 `InternalError`.
    #[must_use]
    pub fn internal_error() -> Self {
        Self::new(FaultKind::InternalError)
    }

    /// Fails with 409 `Conflict`.
    #[must_use]
    pub fn conflict() -> Self {
        Self::new(FaultKind::Conflict)
    }

    /// Only requests with this verb.
    #[must_use]
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_owned());
        self
    }

    /// Only requests on this group and resource (e.g. `("apps", "deployments")`).
    #[must_use]
    pub fn resource(mut self, group: &str, resource: &str) -> Self {
        self.group = Some(group.to_owned());
        self.resource = Some(resource.to_owned());
        self
    }

    /// Fails this many matching requests (default 1).
    #[must_use]
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// The `Retry-After` of a 429, in seconds (default 1).
    #[must_use]
    pub fn retry_after_seconds(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = seconds;
        self
    }

    fn matches(&self, verb: &str, group: &str, resource: &str, subresource: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.group.as_deref().is_none_or(|g| g == group)
            && self.resource.as_deref().is_none_or(|r| {
                r == resource
                    || (!subresource.is_empty() && r == format!("{resource}/{subresource}"))
            })
    }

    fn error(&self, resource: &str, group: &str, name: &str) -> ApiError {
        match self.kind {
            FaultKind::TooManyRequests => {
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "injected fault: too many requests, please try again later",
                );
                let mut d = serde_json::Map::new();
                d.insert("retryAfterSeconds".into(), self.retry_after_seconds.into());
                e.details = Some(d);
                e.retry_after = Some(self.retry_after_seconds);
                e
            }
            FaultKind::InternalError => ApiError::internal("injected fault"),
            FaultKind::Conflict => ApiError::conflict(
                resource,
                group,
                name,
                "injected fault: the object has been modified; please apply your changes to the latest version and try again",
            ),
        }
    }
}

/// The request being checked against fault rules and counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestInfo<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
}

/// The injected faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<FaultRule>>,
    latency: Mutex<Duration>,
}

impl Faults {
    /// Adds a rule.
    pub(crate) fn add(&self, rule: FaultRule) {
        if rule.times > 0 {
            self.rules.lock().push(rule);
        }
    }

    /// Removes every rule and the latency.
    pub(crate) fn clear(&self) {
        self.rules.lock().clear();
        *self.latency.lock() = Duration::ZERO;
    }

    /// Sets the latency added to every API request.
    pub(crate) fn set_latency(&self, latency: Duration) {
        *self.latency.lock() = latency;
    }

    /// The latency added to every API request.
    pub(crate) fn latency(&self) -> Duration {
        *self.latency.lock()
    }

    /// The error of the first rule matching the request, using it up.
    pub(crate) fn take(&self, r: RequestInfo<'_>) -> Option<ApiError> {
        let mut rules = self.rules.lock();
        let pos = rules
            .iter()
            .position(|f| f.matches(r.verb, r.group, r.resource, r.subresource))?;
        let err = rules[pos].error(r.resource, r.group, r.name);
        rules[pos].times -= 1;
        if rules[pos].times == 0 {
            rules.remove(pos);
        }
        Some(err)
    }
}

/// Watch counts of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchCount {
    /// Watches opened since the cluster started.
    pub opened: u64,
    /// Watches open now.
    pub open: u64,
}

/// Request and watch counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: Mutex<HashMap<(String, String, String), u64>>,
    watches: Mutex<HashMap<(String, String), WatchCount>>,
}

impl Counters {
    /// Counts one API request.
    pub(crate) fn request(&self, verb: &str, group: &str, resource: &str) {
        *self
            .requests
            .lock()
            .entry((verb.to_owned(), group.to_owned(), resource.to_owned()))
            .or_default() += 1;
    }

    /// Requests with a verb on a resource.
    pub(crate) fn requests(&self, verb: &str, group: &str, resource: &str) -> u64 {
        self.requests
            .lock()
            .get(&(verb.to_owned(), group.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// All API requests.
    pub(crate) fn total(&self) -> u64 {
        self.requests.lock().values().sum()
    }

    /// Every counter, as `(verb, group, resource, count)`.
    pub(crate) fn all_requests(&self) -> Vec<(String, String, String, u64)> {
        let mut v: Vec<_> = self
            .requests
            .lock()
            .iter()
            .map(|((a, b, c), n)| (a.clone(), b.clone(), c.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// A watch was opened.
    pub(crate) fn watch_opened(&self, group: &str, resource: &str) {
        let mut w = self.watches.lock();
        let c = w
            .entry((group.to_owned(), resource.to_owned()))
            .or_default();
        c.opened += 1;
        c.open += 1;
    }

    /// A watch ended.
    pub(crate) fn watch_closed(&self, group: &str, resource: &str) {
        let mut w = self.watches.lock();
        let c = w
            .entry((group.to_owned(), resource.to_owned()))
            .or_default();
        c.open = c.open.saturating_sub(1);
    }

    /// The watch counts of one resource.
    pub(crate) fn watches(&self, group: &str, resource: &str) -> WatchCount {
        self.watches
            .lock()
            .get(&(group.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// Every resource's watch counts, as `(group, resource, counts)`.
    pub(crate) fn all_watches(&self) -> Vec<(String, String, WatchCount)> {
        let mut v: Vec<_> = self
            .watches
            .lock()
            .iter()
            .map(|((g, r), c)| (g.clone(), r.clone(), *c))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(verb: &'a str, group: &'a str, resource: &'a str) -> RequestInfo<'a> {
        RequestInfo {
            verb,
            group,
            resource,
            subresource: "",
            name: "x",
        }
    }

    #[test]
    fn rules_match_verb_and_resource_and_are_used_up() {
        let f = Faults::default();
        f.add(
            FaultRule::too_many_requests()
                .verb("list")
                .resource("apps", "deployments")
                .times(2),
        );
        assert!(f.take(req("get", "apps", "deployments")).is_none());
        assert!(f.take(req("list", "", "configmaps")).is_none());
        let e = f.take(req("list", "apps", "deployments")).unwrap();
        assert_eq!((e.code, e.retry_after), (429, Some(1)));
        assert!(f.take(req("list", "apps", "deployments")).is_some());
        assert!(f.take(req("list", "apps", "deployments")).is_none());
    }
}
