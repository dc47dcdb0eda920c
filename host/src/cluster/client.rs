//! The Kubernetes client of the host: kube's, sending `User-Agent:
//! paddock/<version>` (the API server's audit log and its priority and
//! fairness read it) and clean request URLs, without kube's retry layer.
//!
//! kube's default retry layer retries 429, 503 and 504 inside the request,
//! up to 15 times and for as long as the server's `Retry-After` asks, which
//! would hold a worker (and its execution slot) the whole time. The host
//! retries through its work queues instead: a throttled action fails its
//! reconcile and the key waits in the queue with its backoff, so the
//! worker serves other keys meanwhile; informers and discovery have their
//! own backoff.

use http::header::{HeaderValue, USER_AGENT};
use http::uri::{PathAndQuery, Uri};
use kube::Client;
use kube::client::ClientBuilder;
use tower::util::MapRequestLayer;

use super::ClusterError;

/// What the host sends as its `User-Agent`: `paddock/<version>`.
pub const AGENT: &str = concat!("paddock/", env!("CARGO_PKG_VERSION"));

/// A client for `config`, naming itself [`AGENT`], sending URLs whose
/// query strings have no empty parameters, and never retrying a request
/// by itself.
///
/// # Errors
///
/// [`ClusterError::Client`] when kube cannot build a client from the
/// configuration (a TLS setting it cannot use, say).
pub fn client(mut config: kube::Config) -> Result<Client, ClusterError> {
    config.default_retry = false;
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(AGENT)));
    let builder =
        ClientBuilder::try_from(config).map_err(|source| ClusterError::Client(Box::new(source)))?;
    // kube-core 5 starts every query string with `?` and appends each
    // parameter with `&` after it, which yields `?&limit=500`, or a bare `?`
    // when there is no parameter. Cleaning them here covers every request:
    // the informers', discovery's and the executor's.
    Ok(builder
        .with_layer(&MapRequestLayer::new(clean_request::<kube::client::Body>))
        .build())
}

fn clean_request<B>(mut request: http::Request<B>) -> http::Request<B> {
    if let Some(clean) = clean_uri(request.uri()) {
        *request.uri_mut() = clean;
    }
    request
}

/// The URI without empty query parameters (and without `?` when none is
/// left); `None` when it is clean already.
fn clean_uri(uri: &Uri) -> Option<Uri> {
    let path_and_query = uri.path_and_query()?;
    let (path, query) = path_and_query.as_str().split_once('?')?;
    let parameters: Vec<&str> = query.split('&').filter(|part| !part.is_empty()).collect();
    let cleaned = if parameters.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", parameters.join("&"))
    };
    if cleaned == path_and_query.as_str() {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(cleaned).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use kube::api::ListParams;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn empty_query_parameters_are_dropped() {
        let clean = |text: &str| {
            let uri: Uri = text.parse().expect("a URI");
            clean_uri(&uri).map(|uri| uri.to_string())
        };
        assert_eq!(
            clean("/api/v1/pods?&limit=500").as_deref(),
            Some("/api/v1/pods?limit=500")
        );
        assert_eq!(clean("/api/v1/pods?").as_deref(), Some("/api/v1/pods"));
        assert_eq!(
            clean("/api/v1/pods?&watch=true&&resourceVersion=5").as_deref(),
            Some("/api/v1/pods?watch=true&resourceVersion=5")
        );
        assert_eq!(clean("/api/v1/pods?limit=500"), None);
        assert_eq!(clean("/api/v1/pods"), None);
    }

    /// Serves one HTTP request with an empty list, and gives back the
    /// request's head (request line and headers).
    async fn one_request(listener: tokio::net::TcpListener, seen: Arc<Mutex<Vec<String>>>) {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        seen.lock()
            .expect("not poisoned")
            .push(String::from_utf8_lossy(&head).into_owned());
        let body = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }

    #[tokio::test]
    async fn requests_name_paddock_and_carry_clean_urls() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        for params in [ListParams::default().limit(500), ListParams::default()] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            let url = format!("http://{}", listener.local_addr().expect("an address"));
            let server = tokio::spawn(one_request(listener, Arc::clone(&seen)));
            let client = client(kube::Config::new(url.parse().expect("a URL"))).expect("a client");
            let request = kube::core::Request::new("/api/v1/configmaps")
                .list(&params)
                .expect("a request");
            client.request_text(request).await.expect("an answer");
            server.await.expect("the server answered");
        }
        let seen = seen.lock().expect("not poisoned");
        let lines: Vec<&str> = seen.iter().filter_map(|head| head.lines().next()).collect();
        assert_eq!(
            lines,
            [
                "GET /api/v1/configmaps?limit=500 HTTP/1.1",
                "GET /api/v1/configmaps HTTP/1.1"
            ]
        );
        for head in seen.iter() {
            let agent = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("user-agent")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
            assert_eq!(agent, AGENT, "{head}");
            assert!(agent.starts_with("paddock/0."), "{agent}");
        }
    }
}
