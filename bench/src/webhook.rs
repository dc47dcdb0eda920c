//! A local HTTP JSON webhook — the best case for a hook controller: a
//! native Rust server on 127.0.0.1, and a keep-alive client.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Serves `POST /reconcile` on an ephemeral port of 127.0.0.1, answering
/// with `answer(body)`; the address, and the server task.
///
/// # Errors
/// When the port cannot be bound.
pub async fn serve(
    answer: fn(&[u8]) -> Vec<u8>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/reconcile",
        axum::routing::post(move |body: Bytes| async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                answer(&body),
            )
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// A keep-alive client of one webhook.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the webhook at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            url: format!("http://{addr}/reconcile"),
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// POSTs `body` (JSON) and returns the answer's body.
    ///
    /// # Errors
    /// When the request fails or the answer is not 200.
    pub async fn call(&self, body: Vec<u8>) -> Result<Bytes, String> {
        let request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| error.to_string())?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|error| error.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("the webhook answered {}", response.status()));
        }
        response
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|error| error.to_string())
    }
}
