//! The requests the OCI registry refuses, and the one place they become OCI error bodies.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::names::Digest;

/// The challenge a 401 carries: basic auth in the realm `paddock-dev`.
pub(crate) const CHALLENGE: &str = r#"Basic realm="paddock-dev""#;

/// A request the registry refuses, answered with the status and error code the OCI Distribution
/// Specification v1.1 gives it and a body `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// No credentials, or wrong ones, while basic auth is on (401 `UNAUTHORIZED`).
    #[error("{reason}")]
    Unauthorized {
        /// What was wrong with the credentials.
        reason: &'static str,
    },
    /// A repository name outside the specification's grammar (400 `NAME_INVALID`).
    #[error("invalid repository name {name:?}")]
    NameInvalid {
        /// The name asked for.
        name: String,
    },
    /// A repository holding nothing (404 `NAME_UNKNOWN`).
    #[error("repository {name:?} is not known to the registry")]
    NameUnknown {
        /// The name asked for.
        name: String,
    },
    /// No manifest under that tag or digest (404 `MANIFEST_UNKNOWN`).
    #[error("manifest {reference:?} is not known to the registry")]
    ManifestUnknown {
        /// The tag or digest asked for.
        reference: String,
    },
    /// A manifest that is not JSON, is too large to be one, or a tag outside the grammar
    /// (400 `MANIFEST_INVALID`).
    #[error("invalid manifest: {reason}")]
    ManifestInvalid {
        /// What is wrong with it.
        reason: String,
    },
    /// A manifest naming a blob or manifest the repository does not hold
    /// (400 `MANIFEST_BLOB_UNKNOWN`).
    #[error("the manifest names {digest}, which the repository does not hold")]
    ManifestBlobUnknown {
        /// The missing blob or manifest.
        digest: Digest,
    },
    /// No blob with that digest in the repository (404 `BLOB_UNKNOWN`).
    #[error("blob {digest} is not known to the registry")]
    BlobUnknown {
        /// The digest asked for.
        digest: Digest,
    },
    /// No upload session with that id in the repository (404 `BLOB_UPLOAD_UNKNOWN`).
    #[error("upload {id:?} is not known to the registry")]
    UploadUnknown {
        /// The session id asked for.
        id: String,
    },
    /// A chunk that does not start where the upload stands (416 `BLOB_UPLOAD_INVALID`).
    #[error("the chunk starts at byte {start}, but the upload holds {held} bytes")]
    ChunkOutOfOrder {
        /// Where the chunk says it starts.
        start: u64,
        /// How many bytes the upload holds.
        held: u64,
    },
    /// An upload request the registry cannot make sense of, such as a malformed
    /// `Content-Range` or a closing `PUT` without `?digest=` (400 `BLOB_UPLOAD_INVALID`).
    #[error("invalid upload: {reason}")]
    UploadInvalid {
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed digest, or content that does not match the digest given (400
    /// `DIGEST_INVALID`).
    #[error("{reason}")]
    DigestInvalid {
        /// The digest given, as written.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed digest of an algorithm other than sha256 (400 `UNSUPPORTED`).
    #[error("digest algorithm {algorithm:?} is not supported; use sha256")]
    DigestUnsupported {
        /// The algorithm given.
        algorithm: String,
    },
    /// A chunk whose length differs from its `Content-Range` (400 `SIZE_INVALID`).
    #[error("the chunk holds {actual} bytes, but its Content-Range says {declared}")]
    SizeMismatch {
        /// The length its `Content-Range` gives.
        declared: u64,
        /// The length received.
        actual: u64,
    },
    /// A blob or manifest above the registry's limit.
    ///
    /// The specification answers an oversized manifest with 413 Payload Too Large and names
    /// `SIZE_INVALID` as the code about lengths, so an oversized blob gets the same 413
    /// `SIZE_INVALID`.
    #[error("the content is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request body could not be read (400 `BLOB_UPLOAD_INVALID`).
    #[error("cannot read the request body")]
    BodyUnreadable(#[source] axum::Error),
    /// A path the registry does not serve, such as the referrers API (404 `UNSUPPORTED`: a
    /// client then falls back as the specification says).
    #[error("no such endpoint")]
    UnknownEndpoint,
    /// A method the endpoint does not serve, such as `DELETE` on a manifest (405
    /// `UNSUPPORTED`, as the specification allows when deletion is off).
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
}

impl Refusal {
    /// The HTTP status of the answer.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::NameUnknown { .. }
            | Self::ManifestUnknown { .. }
            | Self::BlobUnknown { .. }
            | Self::UploadUnknown { .. }
            | Self::UnknownEndpoint => StatusCode::NOT_FOUND,
            Self::ChunkOutOfOrder { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NameInvalid { .. }
            | Self::ManifestInvalid { .. }
            | Self::ManifestBlobUnknown { .. }
            | Self::UploadInvalid { .. }
            | Self::DigestInvalid { .. }
            | Self::DigestUnsupported { .. }
            | Self::SizeMismatch { .. }
            | Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The specification's error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "UNAUTHORIZED",
            Self::NameInvalid { .. } => "NAME_INVALID",
            Self::NameUnknown { .. } => "NAME_UNKNOWN",
            Self::ManifestUnknown { .. } => "MANIFEST_UNKNOWN",
            Self::ManifestInvalid { .. } => "MANIFEST_INVALID",
            Self::ManifestBlobUnknown { .. } => "MANIFEST_BLOB_UNKNOWN",
            Self::BlobUnknown { .. } => "BLOB_UNKNOWN",
            Self::UploadUnknown { .. } => "BLOB_UPLOAD_UNKNOWN",
            Self::ChunkOutOfOrder { .. } | Self::UploadInvalid { .. } | Self::BodyUnreadable(_) => {
                "BLOB_UPLOAD_INVALID"
            }
            Self::DigestInvalid { .. } => "DIGEST_INVALID",
            Self::SizeMismatch { .. } | Self::TooLarge { .. } => "SIZE_INVALID",
            Self::DigestUnsupported { .. } | Self::UnknownEndpoint | Self::MethodNotAllowed => {
                "UNSUPPORTED"
            }
        }
    }

    /// The error's `detail`: what the client needs to find the fault.
    fn detail(&self) -> Value {
        match self {
            Self::NameInvalid { name } | Self::NameUnknown { name } => json!({ "name": name }),
            Self::ManifestUnknown { reference } => json!({ "reference": reference }),
            Self::ManifestBlobUnknown { digest } | Self::BlobUnknown { digest } => {
                json!({ "digest": digest.as_str() })
            }
            Self::DigestInvalid { digest, .. } => json!({ "digest": digest }),
            Self::DigestUnsupported { algorithm } => json!({ "algorithm": algorithm }),
            Self::UploadUnknown { id } => json!({ "uuid": id }),
            Self::ChunkOutOfOrder { held, .. } => json!({ "held": held }),
            Self::SizeMismatch { declared, actual } => {
                json!({ "declared": declared, "actual": actual })
            }
            Self::TooLarge { limit } => json!({ "limit": limit }),
            Self::Unauthorized { .. }
            | Self::ManifestInvalid { .. }
            | Self::UploadInvalid { .. }
            | Self::BodyUnreadable(_)
            | Self::UnknownEndpoint
            | Self::MethodNotAllowed => Value::Null,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{
                "code": self.code(),
                "message": self.to_string(),
                "detail": self.detail(),
            }]
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(self, Self::Unauthorized { .. }) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_manifest_reads_as_the_specification_says() {
        let response = Refusal::ManifestUnknown {
            reference: "v9".into(),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
        assert_eq!(body["errors"][0]["detail"]["reference"], "v9");
    }

    #[test]
    fn only_unauthorized_challenges() {
        let challenged = Refusal::Unauthorized { reason: "no" }.into_response();
        assert_eq!(
            challenged.headers()[header::WWW_AUTHENTICATE],
            r#"Basic realm="paddock-dev""#
        );
        let refused = Refusal::UnknownEndpoint.into_response();
        assert!(refused.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
