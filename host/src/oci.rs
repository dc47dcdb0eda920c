//! Modules from OCI registries, in the CNCF TAG Runtime wasm artifact
//! layout that Kubewarden, Spin and wasmCloud use: an image manifest whose
//! config has the media type `application/vnd.wasm.config.v0+json` and
//! whose one layer, `application/wasm`, is the component.
//!
//! [`Registries`] pulls with `oci-client`: it resolves the reference to a
//! manifest digest, refuses a layer larger than the limit before fetching
//! it, fetches it within the limit and checks that its bytes hash to the
//! layer's digest. The component's digest is then the layer's, which is
//! what the compile cache is keyed by, so a second host or a restart that
//! pulls the same image compiles nothing. Transient failures (no
//! connection, 5xx, 429) are retried with backoff; a missing image, a
//! refused credential, a digest mismatch or an oversized layer are not.
//!
//! Credentials come from Docker config files (`auths`, as `docker login`,
//! `kubectl create secret docker-registry` and Kubernetes'
//! `kubernetes.io/dockerconfigjson` Secrets write them).

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Credentials for one registry: anonymous, basic or a bearer token.
pub use oci_client::secrets::RegistryAuth;

/// The media type of a component layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The media type of a wasm artifact's config.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of artifacts written by `wasm-to-oci` and older
/// Kubewarden policies: accepted on pull.
const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// How pulls are bounded.
#[derive(Debug, Clone)]
pub struct PullLimits {
    /// The largest component accepted, in bytes (default 64 MiB).
    pub max_bytes: u64,
    /// How long one pull may take, retries included (default 2 min).
    pub timeout: Duration,
    /// How many times a transient failure is retried (default 4).
    pub retries: usize,
}

impl Default for PullLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(120),
            retries: 4,
        }
    }
}

/// A component pulled from a registry.
#[derive(Clone)]
pub struct Pulled {
    /// The component.
    pub bytes: std::sync::Arc<[u8]>,
    /// The component's digest (its layer's): `sha256:<hex>`.
    pub digest: String,
    /// The reference pinned to the manifest pulled:
    /// `registry/repository@sha256:<hex>`.
    pub resolved: String,
}

impl std::fmt::Debug for Pulled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pulled")
            .field("len", &self.bytes.len())
            .field("digest", &self.digest)
            .field("resolved", &self.resolved)
            .finish()
    }
}

/// Why a pull or a push failed. Each names the image and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference cannot be parsed.
    #[error(
        "{reference:?} is not an image reference ({reason}); write registry/repository:tag or registry/repository@sha256:<digest>"
    )]
    Reference {
        /// The reference given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry has no such image.
    #[error(
        "image {reference} was not found in its registry; check the repository and the tag or digest (was it pushed?)"
    )]
    NotFound {
        /// The image.
        reference: String,
    },
    /// The registry refused the credentials, or asked for some.
    #[error(
        "registry {registry} refused access to {reference}; check the pull secret (or the Docker config) for {registry}"
    )]
    Unauthorized {
        /// The image.
        reference: String,
        /// Its registry.
        registry: String,
    },
    /// The component is larger than allowed.
    #[error(
        "the component of {reference} has {size} bytes, more than the limit of {max}; raise the limit or shrink the component"
    )]
    TooLarge {
        /// The image.
        reference: String,
        /// Its size, as the manifest gives it or as counted.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The image is not a wasm artifact.
    #[error(
        "image {reference} is not a wasm component artifact: it has layers of {layers:?}, not exactly one `application/wasm` layer; push it with `paddock push`"
    )]
    NotWasm {
        /// The image.
        reference: String,
        /// The media types of its layers.
        layers: Vec<String>,
    },
    /// What was received does not hash to the digest it should have.
    #[error(
        "{what} of {reference} has digest {actual}, not {expected}: the registry served other bytes than the image names"
    )]
    DigestMismatch {
        /// The image.
        reference: String,
        /// What was checked: `the manifest`, `the component`.
        what: &'static str,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The pull took longer than allowed.
    #[error("pulling {reference} took longer than {timeout:?}")]
    TimedOut {
        /// The image.
        reference: String,
        /// The limit.
        timeout: Duration,
    },
    /// Any other failure talking to the registry.
    #[error("registry request for {reference} failed: {source}")]
    Registry {
        /// The image.
        reference: String,
        /// What `oci-client` reported.
        #[source]
        source: Box<OciDistributionError>,
    },
}

impl OciError {
    /// Whether trying again may help (no connection, a server error, rate
    /// limiting): other failures stay until the image, the credentials or
    /// the limits change.
    fn is_transient(&self) -> bool {
        let Self::Registry { source, .. } = self else {
            return false;
        };
        match source.as_ref() {
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
            OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|error| error.code == OciErrorCode::Toomanyrequests),
            _ => false,
        }
    }

    fn from_client(reference: &Reference, error: OciDistributionError) -> Self {
        let name = reference.whole();
        match &error {
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => {
                return Self::DigestMismatch {
                    reference: name,
                    what: "what the registry served",
                    expected: expected.clone(),
                    actual: actual.clone(),
                };
            }
            OciDistributionError::ImageManifestNotFoundError(_) => {
                return Self::NotFound { reference: name };
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => {
                return Self::Unauthorized {
                    reference: name,
                    registry: reference.resolve_registry().to_owned(),
                };
            }
            OciDistributionError::ServerError { code: 404, .. } => {
                return Self::NotFound { reference: name };
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => {
                return Self::Unauthorized {
                    reference: name,
                    registry: reference.resolve_registry().to_owned(),
                };
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let unknown = envelope.errors.iter().any(|error| {
                    matches!(
                        error.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                });
                if unknown {
                    return Self::NotFound { reference: name };
                }
                let denied = envelope.errors.iter().any(|error| {
                    matches!(
                        error.code,
                        OciErrorCode::Unauthorized | OciErrorCode::Denied
                    )
                });
                if denied {
                    return Self::Unauthorized {
                        reference: name,
                        registry: reference.resolve_registry().to_owned(),
                    };
                }
            }
            _ => {}
        }
        Self::Registry {
            reference: name,
            source: Box::new(error),
        }
    }
}

/// Parses an image reference, naming what is wrong.
///
/// # Errors
/// [`OciError::Reference`] when it is not one.
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|error| OciError::Reference {
            reference: reference.to_owned(),
            reason: error.to_string(),
        })
}

/// Pulls and pushes components.
///
/// Each pull and push uses a client of its own: `oci-client` keeps the
/// first credentials it was given for a registry, so a shared client
/// would pull one tenant's image with another tenant's pull secret.
#[derive(Clone)]
pub struct Registries {
    plain_http: Vec<String>,
    limits: PullLimits,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Registries {
    /// A client that speaks HTTPS to every registry but those in
    /// `plain_http` (`host:port`, for local development registries).
    pub fn new(plain_http: Vec<String>, limits: PullLimits) -> Self {
        install_crypto_provider();
        Self { plain_http, limits }
    }

    /// A client for one pull or push.
    fn client(&self) -> Client {
        let protocol = if self.plain_http.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(self.plain_http.clone())
        };
        Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        })
    }

    /// The limits of its pulls.
    pub fn limits(&self) -> &PullLimits {
        &self.limits
    }

    /// Pulls the component `reference` names, with `auth` for its
    /// registry, retrying transient failures within the pull timeout.
    ///
    /// # Errors
    /// Why the component could not be pulled; see [`OciError`].
    pub async fn pull(&self, reference: &str, auth: &RegistryAuth) -> Result<Pulled, OciError> {
        let parsed = parse_reference(reference)?;
        let attempt = || self.pull_once(&parsed, auth);
        let retried = attempt
            .retry(
                ExponentialBuilder::new()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(self.limits.retries),
            )
            .sleep(tokio::time::sleep)
            .when(OciError::is_transient)
            .notify(|error, delay| {
                tracing::warn!(image = %reference, %error, ?delay, "pull failed; retrying");
            });
        tokio::time::timeout(self.limits.timeout, retried)
            .await
            .map_err(|_| OciError::TimedOut {
                reference: parsed.whole(),
                timeout: self.limits.timeout,
            })?
    }

    /// The digest of the manifest `reference` names now (a tag's current
    /// manifest), without fetching the component.
    ///
    /// # Errors
    /// Why the registry could not say.
    pub async fn resolve(&self, reference: &str, auth: &RegistryAuth) -> Result<String, OciError> {
        let parsed = parse_reference(reference)?;
        let client = self.client();
        let resolving = client.fetch_manifest_digest(&parsed, auth);
        tokio::time::timeout(self.limits.timeout, resolving)
            .await
            .map_err(|_| OciError::TimedOut {
                reference: parsed.whole(),
                timeout: self.limits.timeout,
            })?
            .map_err(|error| OciError::from_client(&parsed, error))
    }

    async fn pull_once(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Pulled, OciError> {
        let fail = |error| OciError::from_client(reference, error);
        let client = self.client();
        let (manifest, manifest_digest) = client
            .pull_image_manifest(reference, auth)
            .await
            .map_err(fail)?;
        if let Some(pinned) = reference.digest()
            && pinned != manifest_digest
        {
            return Err(OciError::DigestMismatch {
                reference: reference.whole(),
                what: "the manifest",
                expected: pinned.to_owned(),
                actual: manifest_digest,
            });
        }
        let layer = component_layer(reference, &manifest)?;
        let size = u64::try_from(layer.size).unwrap_or(0);
        if size > self.limits.max_bytes {
            return Err(OciError::TooLarge {
                reference: reference.whole(),
                size,
                max: self.limits.max_bytes,
            });
        }
        let bytes = self.fetch_layer(&client, reference, layer).await?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != layer.digest {
            return Err(OciError::DigestMismatch {
                reference: reference.whole(),
                what: "the component",
                expected: layer.digest.clone(),
                actual,
            });
        }
        Ok(Pulled {
            bytes: bytes.into(),
            digest: actual,
            resolved: format!(
                "{}/{}@{manifest_digest}",
                reference.registry(),
                reference.repository()
            ),
        })
    }

    /// The layer's bytes, stopping as soon as they pass the limit (the
    /// manifest's size is the registry's word, not a bound).
    async fn fetch_layer(
        &self,
        client: &Client,
        reference: &Reference,
        layer: &OciDescriptor,
    ) -> Result<Vec<u8>, OciError> {
        let mut stream = client
            .pull_blob_stream(reference, layer)
            .await
            .map_err(|error| OciError::from_client(reference, error))?;
        let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0).min(1 << 26));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                // oci-client checks the digest as the stream ends and
                // reports a mismatch as an I/O error: say what it is.
                match error
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<DigestError>())
                {
                    Some(DigestError::VerificationError { expected, actual }) => {
                        OciError::DigestMismatch {
                            reference: reference.whole(),
                            what: "the component",
                            expected: expected.clone(),
                            actual: actual.clone(),
                        }
                    }
                    _ => OciError::from_client(reference, OciDistributionError::IoError(error)),
                }
            })?;
            bytes.extend_from_slice(&chunk);
            let size = bytes.len() as u64;
            if size > self.limits.max_bytes {
                return Err(OciError::TooLarge {
                    reference: reference.whole(),
                    size,
                    max: self.limits.max_bytes,
                });
            }
        }
        Ok(bytes)
    }

    /// Pushes `component` as `reference` in the wasm artifact layout; the
    /// reference pinned to the manifest written.
    ///
    /// # Errors
    /// Why the registry refused it.
    pub async fn push(
        &self,
        component: Vec<u8>,
        reference: &str,
        auth: &RegistryAuth,
    ) -> Result<String, OciError> {
        let parsed = parse_reference(reference)?;
        let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&component)));
        let config = serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
        });
        let config = Config {
            data: serde_json::to_vec(&config).unwrap_or_default().into(),
            media_type: WASM_CONFIG_MEDIA_TYPE.to_owned(),
            annotations: None,
        };
        let layers = vec![ImageLayer::new(
            component,
            WASM_LAYER_MEDIA_TYPE.to_owned(),
            None,
        )];
        let manifest = OciImageManifest::build(&layers, &config, None);
        let pushed = self
            .client()
            .push(&parsed, &layers, config, auth, Some(manifest))
            .await
            .map_err(|error| OciError::from_client(&parsed, error))?;
        let digest = pushed
            .manifest_url
            .rsplit('/')
            .next()
            .filter(|digest| digest.starts_with("sha256:"))
            .map(str::to_owned);
        Ok(match digest {
            Some(digest) => format!("{}/{}@{digest}", parsed.registry(), parsed.repository()),
            None => pushed.manifest_url,
        })
    }
}

/// The one component layer of a wasm artifact.
fn component_layer<'a>(
    reference: &Reference,
    manifest: &'a OciImageManifest,
) -> Result<&'a OciDescriptor, OciError> {
    match manifest.layers.as_slice() {
        [layer]
            if layer.media_type == WASM_LAYER_MEDIA_TYPE
                || layer.media_type == LEGACY_WASM_LAYER_MEDIA_TYPE =>
        {
            Ok(layer)
        }
        layers => Err(OciError::NotWasm {
            reference: reference.whole(),
            layers: layers
                .iter()
                .map(|layer| layer.media_type.clone())
                .collect(),
        }),
    }
}

/// TLS to registries uses rustls with the `ring` provider, as the
/// Kubernetes client does; installed once per process.
fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Registry credentials from a Docker config (`{"auths": {...}}`).
#[derive(Debug, Clone, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, (String, String)>,
}

#[derive(Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// A Docker config that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct DockerConfigError {
    /// Where it came from (a file, a Secret).
    pub origin: String,
    /// What is wrong.
    pub problem: String,
}

impl DockerConfig {
    /// Parses a Docker config's JSON; `origin` names it in errors.
    ///
    /// # Errors
    /// When it is not JSON of that shape, or an `auth` is not base64 of
    /// `user:password`.
    pub fn parse(origin: &str, json: &[u8]) -> Result<Self, DockerConfigError> {
        let fail = |problem: String| DockerConfigError {
            origin: origin.to_owned(),
            problem,
        };
        let file: DockerConfigFile = serde_json::from_slice(json).map_err(|error| {
            fail(format!(
                "not a Docker config (`{{\"auths\": {{...}}}}`): {error}"
            ))
        })?;
        let mut auths = BTreeMap::new();
        for (registry, auth) in file.auths {
            let pair = match (auth.auth, auth.username, auth.password) {
                (Some(encoded), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| {
                            fail(format!(
                                "auths.{registry}.auth is not base64 of user:password"
                            ))
                        })?;
                    let (user, password) = decoded.split_once(':').ok_or_else(|| {
                        fail(format!(
                            "auths.{registry}.auth is not base64 of user:password"
                        ))
                    })?;
                    (user.to_owned(), password.to_owned())
                }
                (None, Some(user), Some(password)) => (user, password),
                _ => continue,
            };
            auths.insert(registry_host(&registry), pair);
        }
        Ok(Self { auths })
    }

    /// Reads the Docker config of this user: `$DOCKER_CONFIG/config.json`,
    /// else `~/.docker/config.json`; empty when there is none.
    ///
    /// # Errors
    /// When the file exists but cannot be read or used.
    pub fn of_user() -> Result<Self, DockerConfigError> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".docker"))
            });
        let Some(path) = dir.map(|dir| dir.join("config.json")) else {
            return Ok(Self::default());
        };
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&path.display().to_string(), &bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(DockerConfigError {
                origin: path.display().to_string(),
                problem: error.to_string(),
            }),
        }
    }

    /// Adds the credentials of `other`, which win for the registries both
    /// name.
    pub fn merge(&mut self, other: Self) {
        self.auths.extend(other.auths);
    }

    /// The credentials for the registry of `reference`: anonymous when the
    /// config names none.
    pub fn auth_for(&self, reference: &str) -> RegistryAuth {
        let Ok(parsed) = reference.parse::<Reference>() else {
            return RegistryAuth::Anonymous;
        };
        let registry = parsed.resolve_registry();
        let found = self
            .auths
            .get(registry)
            .or_else(|| self.auths.get(parsed.registry()));
        match found {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// The `host[:port]` of a Docker config key, which may be a URL
/// (`https://index.docker.io/v1/`).
fn registry_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_configs_give_basic_credentials_per_registry() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("tenant:s3cret");
        let json = format!(
            r#"{{"auths": {{"https://registry.example.com/v1/": {{"auth": "{encoded}"}},
                           "127.0.0.1:5000": {{"username": "dev", "password": "pw"}}}}}}"#
        );
        let config = DockerConfig::parse("test", json.as_bytes()).expect("a config");
        assert!(matches!(
            config.auth_for("registry.example.com/team/floor:v1"),
            RegistryAuth::Basic(user, password) if user == "tenant" && password == "s3cret"
        ));
        assert!(matches!(
            config.auth_for("127.0.0.1:5000/floor@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            RegistryAuth::Basic(user, _) if user == "dev"
        ));
        assert!(matches!(
            config.auth_for("other.example.com/floor:v1"),
            RegistryAuth::Anonymous
        ));
        let error = DockerConfig::parse(
            "secret team-a/pull",
            br#"{"auths": {"r.example.com": {"auth": "!!"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("secret team-a/pull") && error.contains("auths.r.example.com.auth"),
            "{error}"
        );
    }

    #[test]
    fn a_reference_that_is_not_one_says_how_to_write_one() {
        let error = parse_reference("Registry/UPPER:tag")
            .unwrap_err()
            .to_string();
        assert!(error.contains("registry/repository:tag"), "{error}");
    }
}
