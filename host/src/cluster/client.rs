//! The client the host talks to the API server with.

use kube::Client;

/// A client for the host from `config`, built the way the runtime needs it.
///
/// kube's default retry layer is turned off: it retries 429, 503 and 504
/// inside the request, up to 15 times and for as long as the server's
/// `Retry-After` asks, which would hold a worker (and its execution slot)
/// for the whole time. The host retries through its work queues instead:
/// a throttled action fails its reconcile and the key waits in the queue
/// with its backoff, so the worker serves other keys meanwhile; informers
/// and discovery have their own backoff.
///
/// # Errors
///
/// When kube cannot build a client from `config` (TLS or authentication
/// settings it cannot use).
pub fn client(mut config: kube::Config) -> Result<Client, kube::Error> {
    config.default_retry = false;
    Client::try_from(config)
}
