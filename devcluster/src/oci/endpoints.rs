//! The registry's HTTP front: the credentials check, routing, and one function per endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::credentials::Credentials;
use super::names::{Digest, Reference};
use super::refusal::Refusal;
use super::route::Route;
use super::storage::Storage;

/// The largest manifest accepted; the specification asks registries to take at least 4 MiB.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The header naming the digest of the content answered or stored.
const DIGEST_HEADER: &str = "docker-content-digest";

/// The header naming an upload session.
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";

/// What the endpoints share: the content, the rules and the counters.
#[derive(Debug, Default)]
pub(crate) struct RegistryState {
    /// Blobs, manifests, tags and uploads.
    pub storage: Storage,
    /// The basic-auth credentials every request needs, when set.
    pub credentials: Option<Credentials>,
    /// The largest blob accepted, when set.
    pub max_blob_size: Option<u64>,
    /// Blob GETs answered with the content.
    pub blob_pulls: AtomicU64,
    /// Manifest GETs answered with the content.
    pub manifest_pulls: AtomicU64,
}

/// The query parameters the endpoints read.
#[derive(Debug, serde::Deserialize)]
struct Params {
    /// The digest closing an upload or of a single-request upload.
    digest: Option<String>,
    /// The digest of a blob to mount from another repository.
    mount: Option<String>,
    /// The repository to mount it from.
    from: Option<String>,
    /// At most this many tags.
    n: Option<String>,
    /// Tags after this one.
    last: Option<String>,
}

/// The router serving `/v2/`; every request passes the credentials check first.
pub(crate) fn router(state: Arc<RegistryState>) -> Router {
    Router::new()
        .route("/v2/", any(version_check))
        .route("/v2/{*rest}", any(dispatch))
        .fallback(unknown_endpoint)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Logs every request and its answer at debug level.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(%method, path, status = response.status().as_u16(), "oci registry request");
    response
}

/// Refuses requests without the configured credentials, with a basic-auth challenge.
async fn require_credentials(
    State(state): State<Arc<RegistryState>>,
    request: Request,
    next: Next,
) -> Response {
    let admitted = state
        .credentials
        .as_ref()
        .map_or(Ok(()), |credentials| credentials.admit(request.headers()));
    match admitted {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /v2/`: the registry speaks the distribution API.
async fn version_check(method: Method) -> Response {
    match method {
        Method::GET | Method::HEAD => axum::Json(serde_json::json!({})).into_response(),
        _ => Refusal::MethodNotAllowed.into_response(),
    }
}

/// Anything outside `/v2/`.
async fn unknown_endpoint() -> Refusal {
    Refusal::UnknownEndpoint
}

/// Every path under `/v2/<name>/`: finds the endpoint and answers, or refuses.
async fn dispatch(
    State(state): State<Arc<RegistryState>>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = match Route::parse(&rest) {
        Ok(route) => serve(&state, &method, route, params, &headers, body).await,
        Err(refusal) => Err(refusal),
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

/// Answers a request on one endpoint.
async fn serve(
    state: &RegistryState,
    method: &Method,
    route: Route,
    params: Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    match (method, route) {
        (&Method::GET | &Method::HEAD, Route::Manifest { name, reference }) => {
            get_manifest(state, method, &name, &reference)
        }
        (&Method::PUT, Route::Manifest { name, reference }) => {
            put_manifest(state, &name, &reference, headers, body).await
        }
        (&Method::GET | &Method::HEAD, Route::Blob { name, digest }) => {
            get_blob(state, method, &name, &digest)
        }
        (&Method::POST, Route::UploadStart { name }) => {
            start_upload(state, &name, params, body).await
        }
        (&Method::PATCH, Route::Upload { name, id }) => {
            patch_upload(state, &name, &id, headers, body).await
        }
        (&Method::PUT, Route::Upload { name, id }) => {
            finish_upload(state, &name, &id, params, body).await
        }
        (&Method::GET, Route::Upload { name, id }) => {
            let held = state.storage.upload_len(&name, &id)?;
            Ok(upload_progress(StatusCode::NO_CONTENT, &name, &id, held))
        }
        (&Method::DELETE, Route::Upload { name, id }) => {
            state.storage.cancel_upload(&name, &id)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::GET, Route::Tags { name }) => list_tags(state, &name, params),
        _ => Err(Refusal::MethodNotAllowed),
    }
}

/// `GET`/`HEAD /v2/<name>/manifests/<reference>`: the manifest as pushed.
fn get_manifest(
    state: &RegistryState,
    method: &Method,
    name: &str,
    reference: &str,
) -> Result<Response, Refusal> {
    let (digest, manifest) = state
        .storage
        .manifest(name, &Reference::parse(reference)?)?;
    if method == Method::GET {
        state.manifest_pulls.fetch_add(1, Ordering::Relaxed);
    }
    Ok(content(manifest.media_type, &digest, manifest.bytes))
}

/// `PUT /v2/<name>/manifests/<reference>`: stores a manifest whose blobs are all pushed.
async fn put_manifest(
    state: &RegistryState,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let reference = Reference::parse(reference)?;
    let bytes = read_body(body, 0, Some(MAX_MANIFEST_BYTES)).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    let digest = state
        .storage
        .put_manifest(name, &reference, bytes, content_type)?;
    Ok(created(&format!("/v2/{name}/manifests/{digest}"), &digest))
}

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`: the blob's bytes.
fn get_blob(
    state: &RegistryState,
    method: &Method,
    name: &str,
    digest: &str,
) -> Result<Response, Refusal> {
    let digest = Digest::parse(digest)?;
    let bytes = state.storage.blob(name, &digest)?;
    if method == Method::GET {
        state.blob_pulls.fetch_add(1, Ordering::Relaxed);
    }
    Ok(content(
        HeaderValue::from_static("application/octet-stream"),
        &digest,
        bytes,
    ))
}

/// `POST /v2/<name>/blobs/uploads/`: a mount from another repository when it holds the blob,
/// the whole blob when `?digest=` is given, else a new upload session.
async fn start_upload(
    state: &RegistryState,
    name: &str,
    params: Params,
    body: Body,
) -> Result<Response, Refusal> {
    if let (Some(mount), Some(from)) = (&params.mount, &params.from) {
        let digest = Digest::parse(mount)?;
        if state.storage.mount_blob(name, from, &digest) {
            return Ok(blob_created(name, &digest));
        }
    } else if let Some(digest) = &params.digest {
        let digest = Digest::parse(digest)?;
        let bytes = read_body(body, 0, state.max_blob_size).await?;
        state.storage.put_verified_blob(name, &digest, bytes)?;
        return Ok(blob_created(name, &digest));
    }
    let id = state.storage.start_upload(name);
    Ok(upload_progress(StatusCode::ACCEPTED, name, &id, 0))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk.
async fn patch_upload(
    state: &RegistryState,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let range = content_range(headers)?;
    let held = state.storage.upload_len(name, id)?;
    let chunk = read_body(body, held, state.max_blob_size).await?;
    if let Some((start, end)) = range {
        let declared = (end + 1).saturating_sub(start);
        if declared != chunk.len() as u64 {
            return Err(Refusal::SizeMismatch {
                declared,
                actual: chunk.len() as u64,
            });
        }
    }
    let start = range.map(|(start, _)| start);
    let held = state
        .storage
        .append_upload(name, id, start, &chunk, state.max_blob_size)?;
    Ok(upload_progress(StatusCode::ACCEPTED, name, id, held))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=…`: appends the last chunk, if any, checks the
/// digest of the whole blob and stores it.
async fn finish_upload(
    state: &RegistryState,
    name: &str,
    id: &str,
    params: Params,
    body: Body,
) -> Result<Response, Refusal> {
    let digest = params.digest.ok_or_else(|| Refusal::UploadInvalid {
        reason: "closing an upload needs ?digest=".into(),
    })?;
    let digest = Digest::parse(&digest)?;
    let held = state.storage.upload_len(name, id)?;
    let last_chunk = read_body(body, held, state.max_blob_size).await?;
    if !last_chunk.is_empty() {
        state
            .storage
            .append_upload(name, id, None, &last_chunk, state.max_blob_size)?;
    }
    state.storage.finish_upload(name, id, &digest)?;
    Ok(blob_created(name, &digest))
}

/// `GET /v2/<name>/tags/list`: the repository's tags in lexical order.
fn list_tags(state: &RegistryState, name: &str, params: Params) -> Result<Response, Refusal> {
    // An `n` that is not a number is ignored, as registries do.
    let n = params.n.and_then(|n| n.parse().ok());
    let tags = state.storage.tags(name, params.last.as_deref(), n)?;
    Ok(axum::Json(serde_json::json!({ "name": name, "tags": tags })).into_response())
}

/// Reads a request body of at most `limit - held` bytes.
async fn read_body(body: Body, held: u64, limit: Option<u64>) -> Result<Bytes, Refusal> {
    let mut stream = body.into_data_stream();
    let mut data = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Refusal::BodyUnreadable)?;
        let total = held + (data.len() + chunk.len()) as u64;
        if let Some(limit) = limit.filter(|limit| total > *limit) {
            return Err(Refusal::TooLarge { limit });
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data.freeze())
}

/// The inclusive byte range of a `Content-Range: <start>-<end>` header, when there is one.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Refusal> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || Refusal::UploadInvalid {
        reason: format!("Content-Range {value:?} is not <start>-<end>"),
    };
    let text = value.to_str().map_err(|_| invalid())?;
    let text = text.strip_prefix("bytes=").unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end: u64 = end.trim().parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    Ok(Some((start, end)))
}

/// A header value from text the registry made or checked: repository names (which follow the
/// grammar), digests, upload ids and numbers, all visible ASCII.
fn checked_text(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("names, digests and ids are visible ASCII")
}

/// 200 with content: its type, digest and length.
fn content(media_type: HeaderValue, digest: &Digest, bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, media_type);
    headers.insert(DIGEST_HEADER, checked_text(digest.to_string()));
    response
}

/// 201 naming where the stored content is and its digest.
fn created(location: &str, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, checked_text(location.to_owned()));
    headers.insert(DIGEST_HEADER, checked_text(digest.to_string()));
    response
}

/// 201 for a blob stored in repository `name`.
fn blob_created(name: &str, digest: &Digest) -> Response {
    created(&format!("/v2/{name}/blobs/{digest}"), digest)
}

/// An upload session's state: where to send the next chunk and the bytes held so far.
fn upload_progress(status: StatusCode, name: &str, id: &str, held: u64) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    let location = format!("/v2/{name}/blobs/uploads/{id}");
    headers.insert(header::LOCATION, checked_text(location));
    // The specification writes an empty upload as `0-0` too.
    let range = format!("0-{}", held.saturating_sub(1));
    headers.insert(header::RANGE, checked_text(range));
    headers.insert(UPLOAD_UUID_HEADER, checked_text(id.to_owned()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_inclusive_pairs() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_range(&headers).unwrap(), None);
        headers.insert(header::CONTENT_RANGE, "0-1023".parse().unwrap());
        assert_eq!(content_range(&headers).unwrap(), Some((0, 1023)));
        for bad in ["10-2", "a-b", "12", "bytes 0-1/2"] {
            headers.insert(header::CONTENT_RANGE, bad.parse().unwrap());
            assert!(
                matches!(content_range(&headers), Err(Refusal::UploadInvalid { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn bodies_above_the_limit_are_refused() {
        let body = || Body::from(vec![7u8; 10]);
        assert_eq!(read_body(body(), 0, Some(10)).await.unwrap().len(), 10);
        assert!(matches!(
            read_body(body(), 1, Some(10)).await,
            Err(Refusal::TooLarge { limit: 10 })
        ));
        assert_eq!(read_body(body(), 5, None).await.unwrap().len(), 10);
    }
}
