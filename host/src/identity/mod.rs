//! Who a controller acts as: a Kubernetes ServiceAccount, so that the API
//! server's RBAC, audit log and priority and fairness see the tenant and
//! not the host.
//!
//! Every API call made for a controller that names a ServiceAccount goes
//! through a client that impersonates it ([`Identities::client_for`]); the
//! API server decides with its own RBAC. What the host does on its own
//! (informers, which are shared between controllers and run as the host)
//! is authorised for the ServiceAccount with SubjectAccessReviews
//! ([`AccessReviews`]), cached briefly per identity and request.

pub mod rbac;
mod reviews;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;
use kube::Client;
use kube::client::Body;
use serde::{Deserialize, Serialize};

pub use reviews::{AccessReviews, Attributes, DEFAULT_REVIEW_TTL, ReviewError};

/// A ServiceAccount a controller acts as.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccount {
    /// The ServiceAccount `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Reads `namespace/name`, as the controllers file writes it.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong, when the text is not two DNS names
    /// separated by `/`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err(format!(
                "`{text}` is not `namespace/name`; write the ServiceAccount's namespace, a `/`, and its name"
            ));
        };
        let account = Self::new(namespace, name);
        account.check()?;
        Ok(account)
    }

    /// Checks that the namespace is a DNS label and the name a DNS
    /// subdomain, as the API server requires of them.
    ///
    /// # Errors
    ///
    /// A message naming the part that is not.
    pub fn check(&self) -> Result<(), String> {
        if !crate::config::is_dns_label(&self.namespace) {
            return Err(format!(
                "namespace `{}` is not a namespace name (lower-case letters, digits and `-`, at most 63)",
                self.namespace
            ));
        }
        let subdomain = !self.name.is_empty()
            && self.name.len() <= 253
            && self.name.split('.').all(crate::config::is_dns_label);
        if !subdomain {
            return Err(format!(
                "name `{}` is not a ServiceAccount name (lower-case letters, digits, `-` and `.`, at most 253)",
                self.name
            ));
        }
        Ok(())
    }

    /// The user name the API server knows it by:
    /// `system:serviceaccount:<namespace>:<name>`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The groups the API server puts every ServiceAccount of its namespace
    /// in.
    pub fn groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".to_owned(),
        ]
    }
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The host's client, one impersonating client per ServiceAccount (made
/// once and shared: they all use the host's connections), and the access
/// reviews.
#[derive(Clone)]
pub struct Identities {
    host: Client,
    clients: Arc<Mutex<HashMap<ServiceAccount, Client>>>,
    reviews: AccessReviews,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities").finish_non_exhaustive()
    }
}

impl Identities {
    /// Identities over the host's `client`.
    pub fn new(host: Client) -> Self {
        Self {
            reviews: AccessReviews::new(host.clone()),
            host,
            clients: Arc::default(),
        }
    }

    /// The host's own client.
    pub fn host(&self) -> &Client {
        &self.host
    }

    /// The same identities, trusting review answers for `ttl`.
    #[must_use]
    pub fn with_review_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.reviews = self.reviews.with_ttl(ttl);
        self
    }

    /// The access reviews.
    pub fn reviews(&self) -> &AccessReviews {
        &self.reviews
    }

    /// The client to act with: the host's own for `None`, else one that
    /// impersonates `account`.
    pub fn client_for(&self, account: Option<&ServiceAccount>) -> Client {
        let Some(account) = account else {
            return self.host.clone();
        };
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(account.clone())
            .or_insert_with(|| impersonating(&self.host, account))
            .clone()
    }
}

/// A client that sends every request through `host` with the header that
/// impersonates `account`, as `kubectl --as=system:serviceaccount:ns:name`
/// does: the API server then puts it in its ServiceAccount groups itself,
/// so the host needs `impersonate` on that ServiceAccount only
/// (`serviceaccounts`, by name, in its namespace), not on groups.
fn impersonating(host: &Client, account: &ServiceAccount) -> Client {
    let user = HeaderValue::from_str(&account.username()).ok();
    let inner = host.clone();
    let service = tower::service_fn(move |mut request: http::Request<Body>| {
        let inner = inner.clone();
        let headers = request.headers_mut();
        // Whatever the request carried, it goes out as the account only.
        headers.remove("impersonate-user");
        headers.remove("impersonate-group");
        if let Some(user) = &user {
            headers.insert("impersonate-user", user.clone());
        }
        async move { inner.send(request).await }
    });
    Client::new(service, account.namespace.clone())
}
