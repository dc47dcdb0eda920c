//! The HTTP front: authentication and authorisation, URL routing to discovery and resources, verbs, faults and counters.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use crate::auth::authn::PeerUser;
use crate::auth::{Attributes, UserInfo, forbidden};
use crate::core::{Query, Target};
use crate::delete::{self, DeleteOpts};
use crate::discovery;
use crate::faults::RequestInfo;
use crate::json::encode_typed;
use crate::list;
use crate::protobuf::Encoding;
use crate::scale;
use crate::shared::Shared;
use crate::status::ApiError;
use crate::subresources;
use crate::watch::{self, WatchRequest};
use crate::write::{self, WriteCtx};

/// The largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The router serving the whole API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json(code: u16, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(err: &ApiError) -> Response {
    error_in(err, Encoding::Json)
}

/// A JSON answer re-encoded as protobuf when the client asked for it; a kind with no
/// protobuf message stays JSON.
fn answer(code: u16, body: Bytes, encoding: Encoding) -> Response {
    if encoding == Encoding::Json || body.is_empty() {
        return json(code, body);
    }
    match crate::protobuf::encode_json(&body) {
        Ok(encoded) => {
            let mut resp = json(code, Bytes::from(encoded));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::protobuf::MEDIA_TYPE),
            );
            resp
        }
        Err(e @ crate::protobuf::ProtoError::UnknownKind { .. }) => {
            tracing::debug!(error = %e, "answering JSON");
            json(code, body)
        }
        Err(e) => {
            tracing::warn!(error = %e, "answer cannot be written as protobuf");
            error(&ApiError::internal(e.to_string()))
        }
    }
}

fn error_in(err: &ApiError, encoding: Encoding) -> Response {
    let mut resp = answer(err.code, err.to_bytes(), encoding);
    *resp.status_mut() = err.status_code();
    if let Some(secs) = err.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn plain_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

pub(crate) fn query_of(uri: &http::Uri) -> Query {
    let map = axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default();
    Query(map)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let received = jiff::Timestamp::now();
    let (parts, body) = req.into_parts();
    let attrs = Attributes::of_request(&parts.method, parts.uri.path(), &query_of(&parts.uri));
    let identified = identify(&shared, &parts, &attrs);
    let response = match &identified.user {
        Ok(user) => serve(&shared, &parts, body, user).await,
        Err(e) => error(e),
    };
    if let Some(audit) = &shared.audit {
        audit.record(
            &crate::audit::Audited {
                received,
                uri: &parts.uri,
                user_agent: parts
                    .headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
                requestor: identified.requestor.as_ref(),
                impersonated: identified.impersonated.as_ref(),
                attrs: &attrs,
                decision: identified
                    .decision
                    .as_ref()
                    .map(|decision| (decision.allowed, decision.reason.as_str())),
                refused: identified.user.as_ref().err(),
                code: response.status().as_u16(),
            }
            .event(),
        );
    }
    response
}

/// Serves a request of an authenticated and authorised `user`.
async fn serve(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    body: axum::body::Body,
    user: &UserInfo,
) -> Response {
    let shared = shared.clone();
    let user = user.clone();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error(&ApiError::bad_request(format!("reading request body: {e}"))),
    };
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    if let Some(rest) = path.strip_prefix("/devcluster/v1/") {
        return crate::admin::handle(&shared, &parts.method, rest, &body);
    }
    let q = query_of(&parts.uri);
    let segs = segments(&path);
    let reg = shared.core.lock().registry.clone();
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if parts.method == Method::GET
        && discovery::wants_aggregated(accept)
        && let ["api"] | ["apis"] = segs.as_slice()
    {
        let doc = discovery::aggregated(&reg, segs == ["api"]);
        let mut resp = json(200, encode_typed(&doc));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
        );
        return resp;
    }
    if let ["openapi", rest @ ..] = segs.as_slice() {
        if parts.method != Method::GET {
            return error(&ApiError::method_not_allowed());
        }
        // The first request after a change of the registry builds the documents: off the
        // async workers.
        let docs = match tokio::task::spawn_blocking(move || reg.openapi()).await {
            Ok(docs) => docs,
            Err(e) => return error(&ApiError::internal(format!("building OpenAPI: {e}"))),
        };
        return match crate::openapi::answer(&docs, rest, accept) {
            crate::openapi::Answer::Json(doc) => json(200, doc),
            crate::openapi::Answer::NotAcceptable => error(&ApiError::new(
                406,
                "NotAcceptable",
                "only application/json is served here",
            )),
            crate::openapi::Answer::NotFound => plain_not_found(),
        };
    }
    let doc = match segs.as_slice() {
        ["version"] => Some(Some(discovery::version())),
        ["healthz" | "readyz" | "livez"] => return (StatusCode::OK, "ok").into_response(),
        ["api"] => Some(Some(discovery::core_versions())),
        ["apis"] => Some(Some(discovery::groups(&reg))),
        ["api", v] => Some(discovery::resources(&reg, "", v)),
        ["apis", g] => Some(discovery::group(&reg, g)),
        ["apis", g, v] => Some(discovery::resources(&reg, g, v)),
        _ => None,
    };
    if let Some(doc) = doc {
        if parts.method != Method::GET {
            return error(&ApiError::method_not_allowed());
        }
        return match doc {
            Some(d) => json(200, encode_typed(&d)),
            None => match segs.as_slice() {
                ["apis", g, _] if reg.serves_group(g) => error(&ApiError::path_not_found()),
                _ => plain_not_found(),
            },
        };
    }
    let Some(ResourcePath {
        group,
        version,
        watch: watch_prefix,
        namespace,
        plural,
        name,
        subresource: sub,
    }) = ResourcePath::parse(&segs)
    else {
        return plain_not_found();
    };
    let (namespace, name, sub) = (
        namespace.map(str::to_owned),
        name.map(str::to_owned),
        sub.map(str::to_owned),
    );
    let Some(res) = reg.find(group, version, plural) else {
        if !reg.serves_group_version(group, version) && reg.serves_group(group) {
            return error(&ApiError::path_not_found());
        }
        return plain_not_found();
    };
    if namespace.is_some() && !res.namespaced {
        return plain_not_found();
    }
    if res.namespaced && namespace.is_none() && name.is_some() {
        return plain_not_found();
    }
    let subresource = match sub.as_deref() {
        None => None,
        Some(name) => match res.subresource(name) {
            Some(subresource) => Some(subresource),
            None => return plain_not_found(),
        },
    };
    let target = Target {
        res,
        version: version.to_owned(),
        namespace,
        name,
        subresource: sub,
        metadata_only: parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata")),
        table: parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=Table")),
    };
    // Errors are Status objects, written as protobuf when the client prefers it. Objects of
    // tables, metadata-only views and custom resources are JSON (406 when the client takes
    // nothing but protobuf).
    let errors_in = crate::protobuf::negotiate(accept, true).unwrap_or(Encoding::Json);
    let encoding = if target.table || target.metadata_only {
        Encoding::Json
    } else {
        match crate::protobuf::negotiate(accept, !target.res.custom) {
            Ok(e) => e,
            Err(e) => return error_in(&e, errors_in),
        }
    };
    let is_watch = watch_prefix || q.flag("watch");
    let token_request = target.subresource.as_deref() == Some("token");
    let verb = match (&parts.method, target.name.is_some()) {
        _ if subresource.is_some() => match parts.method {
            Method::GET => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => return error_in(&ApiError::method_not_allowed(), errors_in),
        },
        (&Method::GET, _) if is_watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return error_in(&ApiError::method_not_allowed(), errors_in),
    };
    if subresource.is_some_and(|subresource| !subresource.verbs.contains(&verb)) {
        return error_in(&ApiError::method_not_allowed(), errors_in);
    }
    if target.subresource.is_none() && !target.res.verbs.contains(&verb) && verb != "watch" {
        return error_in(&ApiError::method_not_allowed(), errors_in);
    }
    shared
        .counters
        .request(verb, &target.res.group, &target.res.plural);
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let info = RequestInfo {
        verb,
        group: &target.res.group,
        resource: &target.res.plural,
        subresource: target.subresource.as_deref().unwrap_or_default(),
        name: target.name(),
    };
    if let Some(err) = shared.faults.take(info) {
        tracing::debug!(verb, resource = %target.res.plural, code = err.code, "injected fault");
        return error_in(&err, errors_in);
    }
    if verb == "watch" {
        let mut q = q;
        if let Some(n) = &target.name {
            q.0.insert("fieldSelector".into(), format!("metadata.name={n}"));
        }
        let collection = Target {
            name: None,
            ..target
        };
        return match WatchRequest::parse(collection, &q) {
            Ok(w) => {
                let mut resp =
                    json(200, Bytes::new()).map(|_| watch::stream(shared.clone(), w, encoding));
                if encoding == Encoding::Protobuf {
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(crate::protobuf::WATCH_MEDIA_TYPE),
                    );
                }
                resp
            }
            Err(e) => error_in(&e, errors_in),
        };
    }
    if matches!(verb, "get" | "list")
        && let Some(err) = wait_for_resource_version(&shared, &q).await
    {
        return error_in(&err, errors_in);
    }
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let result = if target.res.review {
        crate::auth::reviews::create(&shared, &user, &target, &body, content_type)
            .map(|(code, bytes)| (code, bytes, Vec::new()))
    } else if token_request {
        let core = shared.core.lock();
        crate::auth::serviceaccounts::token_request(
            &core,
            &shared.authn,
            &target,
            &body,
            content_type,
        )
        .map(|(code, bytes)| (code, bytes, Vec::new()))
    } else {
        let request = Call {
            verb,
            target: &target,
            query: &q,
            user: &user,
            user_agent,
            content_type,
        };
        execute(&shared, &request, &body)
    };
    match result {
        Ok((code, bytes, warnings)) => {
            let mut resp = answer(code, bytes, encoding);
            for w in warnings {
                let text = format!("299 - {}", serde_json::Value::from(w));
                if let Ok(v) = HeaderValue::from_str(&text) {
                    resp.headers_mut().append(header::WARNING, v);
                }
            }
            resp
        }
        Err(e) => {
            tracing::debug!(verb, resource = %target.res.plural, code = e.code, message = %e.message, "request failed");
            error_in(&e, errors_in)
        }
    }
}

/// The non-empty segments of a request path.
pub(crate) fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// What a resource request's path names, before the registry is asked:
/// `/api/{version}` or `/apis/{group}/{version}`, then optionally `watch`,
/// `namespaces/{namespace}`, and `{plural}[/{name}[/{subresource}]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourcePath<'a> {
    /// The API group, `""` for the core group.
    pub(crate) group: &'a str,
    /// The version.
    pub(crate) version: &'a str,
    /// Whether the path starts with the legacy `watch` segment.
    pub(crate) watch: bool,
    /// The namespace, for a namespaced request.
    pub(crate) namespace: Option<&'a str>,
    /// The resource's plural name.
    pub(crate) plural: &'a str,
    /// The object's name.
    pub(crate) name: Option<&'a str>,
    /// The subresource.
    pub(crate) subresource: Option<&'a str>,
}

impl<'a> ResourcePath<'a> {
    /// Reads the segments of a resource request's path; `None` when they
    /// name no resource (a 404).
    pub(crate) fn parse(segs: &[&'a str]) -> Option<Self> {
        let (group, version, rest) = match segs {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return None,
        };
        let (watch, rest) = match rest {
            ["watch", rest @ ..] => (true, rest),
            _ => (false, rest),
        };
        // `namespaces/{name}/status` and `/finalize` are subresources of a
        // Namespace, not a resource inside one.
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..]
                if rest.len() > 1
                    || (rest.len() == 1 && !matches!(rest[0], "status" | "finalize")) =>
            {
                (Some(*ns), rest)
            }
            _ => (None, rest),
        };
        let (plural, name, subresource) = match rest {
            [p] => (*p, None, None),
            [p, n] => (*p, Some(*n), None),
            [p, n, s] => (*p, Some(*n), Some(*s)),
            _ => return None,
        };
        Some(Self {
            group,
            version,
            watch,
            namespace,
            plural,
            name,
            subresource,
        })
    }

    /// The path this names, as [`ResourcePath::parse`] reads it.
    pub(crate) fn to_path(&self) -> String {
        let mut path = match self.group {
            "" => format!("/api/{}", self.version),
            group => format!("/apis/{group}/{}", self.version),
        };
        let parts = [
            self.watch.then_some("watch"),
            self.namespace.map(|_| "namespaces"),
            self.namespace,
            Some(self.plural),
            self.name,
            self.subresource,
        ];
        for part in parts.into_iter().flatten() {
            path.push('/');
            path.push_str(part);
        }
        path
    }
}

/// How long a read at a future resourceVersion waits before 504.
const FUTURE_RV_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A read at a resourceVersion the store has not reached waits for it, then fails with 504.
async fn wait_for_resource_version(shared: &Shared, q: &Query) -> Option<ApiError> {
    let want: u64 = q.non_empty("resourceVersion")?.parse().ok()?;
    let mut changes = {
        let core = shared.core.lock();
        if core.store.rv() >= want {
            return None;
        }
        core.store.subscribe()
    };
    let reached = tokio::time::timeout(FUTURE_RV_WAIT, changes.wait_for(|rv| *rv >= want)).await;
    if matches!(reached, Ok(Ok(_))) {
        return None;
    }
    let mut err = ApiError::new(504, "Timeout", "Too large resource version");
    let mut d = serde_json::Map::new();
    d.insert(
        "causes".into(),
        serde_json::json!([{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]),
    );
    d.insert("retryAfterSeconds".into(), 1.into());
    err.details = Some(d);
    err.retry_after = Some(1);
    Some(err)
}

/// One resource request, parsed.
struct Call<'a> {
    verb: &'a str,
    target: &'a Target,
    query: &'a Query,
    user: &'a UserInfo,
    user_agent: &'a str,
    content_type: &'a str,
}

/// Runs one non-watch request under the store lock; returns code, body and `Warning`s.
fn execute(
    shared: &Shared,
    call: &Call<'_>,
    body: &[u8],
) -> Result<(u16, Bytes, Vec<String>), ApiError> {
    let (verb, t, q, content_type) = (call.verb, call.target, call.query, call.content_type);
    let writes = matches!(verb, "create" | "update" | "patch");
    let ctx = if writes {
        Some(WriteCtx::from_request(q, call.user_agent, call.user)?)
    } else {
        None
    };
    let mut core = shared.core.lock();
    let sub = t.subresource.as_deref();
    let result = match (verb, ctx.as_ref()) {
        (_, _)
            if matches!(
                sub,
                Some("log" | "exec" | "attach" | "portforward" | "proxy")
            ) =>
        {
            subresources::connect(&core, t, q)
        }
        ("get" | "list", _) if &*t.res.storage == "/componentstatuses" => {
            subresources::component_status(t)
        }
        ("create", Some(ctx)) if sub == Some("binding") || &*t.res.storage == "/bindings" => {
            subresources::bind(&mut core, t, body, content_type, ctx)
        }
        ("create", _) if sub == Some("eviction") => {
            subresources::evict(&mut core, t, body, content_type, q)
        }
        ("get", _) if sub == Some("scale") => scale::get(&core, t),
        ("get", _) => list::get(&core, t),
        ("list", _) => list::list(&core, t, q),
        ("create", Some(ctx)) => write::create(&mut core, t, body, content_type, ctx),
        ("update", Some(ctx)) if sub == Some("scale") => scale::update(&mut core, t, body, ctx),
        ("update", Some(ctx)) => write::update(&mut core, t, body, content_type, ctx),
        ("patch", Some(ctx)) if sub == Some("scale") => {
            scale::patch(&mut core, t, content_type, body, ctx)
        }
        ("patch", Some(ctx)) => write::patch(&mut core, t, content_type, body, q, ctx),
        ("delete", _) => delete::delete(&mut core, t, &DeleteOpts::parse(body, q)?),
        ("deletecollection", _) => {
            delete::delete_collection(&mut core, t, q, &DeleteOpts::parse(body, q)?)
        }
        _ => Err(ApiError::method_not_allowed()),
    };
    if result.is_ok() && !matches!(verb, "get" | "list") {
        after_change(&mut core, t);
    }
    shared.collect_garbage(&mut core);
    let warnings = ctx.map(|c| c.warnings.into_inner()).unwrap_or_default();
    result.map(|(code, bytes)| (code, bytes, warnings))
}

/// What kube-controller-manager does after a change: a new namespace gets its `default`
/// ServiceAccount and `kube-root-ca.crt`; a changed ClusterRole is re-aggregated.
fn after_change(core: &mut crate::core::Core, t: &Target) {
    match &*t.res.storage {
        "/namespaces" => crate::auth::serviceaccounts::ensure_namespace_objects(core),
        crate::auth::rbac::CLUSTER_ROLES => crate::auth::rbac::aggregate(core),
        _ => {}
    }
}

/// Who a request acts as, and how that was decided (for the audit log).
struct Identified {
    /// The authenticated user; `None` when authentication failed.
    requestor: Option<UserInfo>,
    /// The user it impersonates, once the impersonation was allowed.
    impersonated: Option<UserInfo>,
    /// The authorizer's decision on the request, once asked.
    decision: Option<crate::auth::rbac::Decision>,
    /// The user the request acts as, or why it may not act at all.
    user: Result<UserInfo, ApiError>,
}

/// Who a request acts as: authenticated, then impersonated, then authorised (401 or 403
/// otherwise) for `attrs`, what the request asks.
fn identify(shared: &Shared, parts: &http::request::Parts, attrs: &Attributes) -> Identified {
    let mut identified = Identified {
        requestor: None,
        impersonated: None,
        decision: None,
        user: Err(ApiError::internal("not identified")),
    };
    let requestor = match shared.authn.authenticate(
        &shared.core,
        &parts.headers,
        parts.extensions.get::<PeerUser>(),
    ) {
        Ok(requestor) => requestor,
        Err(e) => {
            identified.user = Err(e);
            return identified;
        }
    };
    identified.requestor = Some(requestor.clone());
    let user = match crate::auth::impersonate::impersonate(&shared.core, requestor, &parts.headers)
    {
        Ok(user) => user,
        Err(e) => {
            identified.user = Err(e);
            return identified;
        }
    };
    if crate::auth::impersonate::requested(&parts.headers) {
        identified.impersonated = Some(user.clone());
    }
    let decision = crate::auth::authorize(&shared.core, &user, attrs);
    identified.user = if decision.allowed {
        Ok(user)
    } else {
        tracing::debug!(user = %user.name, ?attrs, "forbidden");
        Err(forbidden(&user.name, attrs, &decision.reason))
    };
    identified.decision = Some(decision);
    identified
}
