//! ServiceAccount tokens: signed JWTs with the claims kube-apiserver's TokenRequest issues, and their verification.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The issuer and default audience of tokens, as on a real cluster.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How many verified tokens are remembered before the memory is cleared.
const CACHE_LIMIT: usize = 4096;

/// A token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing a ServiceAccount token")]
pub(crate) struct SigningError(#[source] jsonwebtoken::errors::Error);

/// A name and uid inside the `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectClaim {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: ObjectClaim,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectClaim>,
}

/// The claims of a ServiceAccount token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
    pub nbf: i64,
    pub sub: String,
}

/// Why a bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The token is not a valid, unexpired token signed by this cluster for these audiences.
    #[error("invalid bearer token")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The ServiceAccount the token was issued for is gone or was recreated.
    #[error("service account {0} has been deleted")]
    Deleted(String),
}

/// Issues and verifies ServiceAccount tokens with one ES256 key.
pub(crate) struct ServiceAccountTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    /// Tokens already verified (signature, issuer, audience) with their claims.
    verified: Mutex<HashMap<String, Claims>>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A request for a token (the `spec` of a TokenRequest, defaulted).
#[derive(Debug, Clone)]
pub(crate) struct Grant<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub audiences: &'a [String],
    pub expiration_seconds: i64,
    pub pod: Option<ObjectClaim>,
    pub secret: Option<ObjectClaim>,
}

impl ServiceAccountTokens {
    /// Loads the signing key (PKCS#8 PEM of an ECDSA P-256 key).
    pub(crate) fn new(key_pem: &str) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::from_pem(key_pem)?;
        let public = key.public_key_raw().to_vec();
        let key_id = key_id(&key);
        Ok(Self {
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding: DecodingKey::from_ec_der(&public),
            key_id,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Signs a token; returns it with its claims.
    pub(crate) fn issue(&self, grant: &Grant<'_>) -> Result<(String, Claims), SigningError> {
        let now = jiff::Timestamp::now().as_second();
        let claims = Claims {
            aud: grant.audiences.to_vec(),
            exp: now + grant.expiration_seconds,
            iat: now,
            iss: ISSUER.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaim {
                namespace: grant.namespace.to_owned(),
                serviceaccount: ObjectClaim {
                    name: grant.name.to_owned(),
                    uid: grant.uid.to_owned(),
                },
                pod: grant.pod.clone(),
                secret: grant.secret.clone(),
            },
            nbf: now,
            sub: super::service_account_user(grant.namespace, grant.name),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(SigningError)?;
        Ok((token, claims))
    }

    /// Checks signature, issuer, expiry and that the token is for one of `audiences`.
    pub(crate) fn verify(&self, token: &str, audiences: &[&str]) -> Result<Claims, TokenError> {
        let now = jiff::Timestamp::now().as_second();
        if let Some(claims) = self.verified.lock().get(token)
            && claims.exp > now
            && claims.aud.iter().any(|a| audiences.contains(&a.as_str()))
        {
            return Ok(claims.clone());
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(audiences);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(TokenError::Invalid)?;
        let mut verified = self.verified.lock();
        if verified.len() >= CACHE_LIMIT {
            verified.retain(|_, c| c.exp > now);
            if verified.len() >= CACHE_LIMIT {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), data.claims.clone());
        Ok(data.claims)
    }
}

/// The `kid` header: the SHA-256 of the public key's DER, base64url, as kube-apiserver derives it.
fn key_id(key: &rcgen::KeyPair) -> String {
    use base64::Engine;
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.subject_public_key_info());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Whether a bearer token looks like a JWT (three dot-separated parts).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ServiceAccountTokens {
        let key = rcgen::KeyPair::generate().unwrap();
        ServiceAccountTokens::new(&key.serialize_pem()).unwrap()
    }

    fn grant(audiences: &[String], expiration_seconds: i64) -> Grant<'_> {
        Grant {
            namespace: "facts",
            name: "viewer",
            uid: "u-1",
            audiences,
            expiration_seconds,
            pod: None,
            secret: None,
        }
    }

    #[test]
    fn issued_tokens_verify_for_their_audience_only() {
        let t = tokens();
        let aud = vec![ISSUER.to_owned()];
        let (token, claims) = t.issue(&grant(&aud, 3600)).unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:facts:viewer");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(t.verify(&token, &[ISSUER]).unwrap(), claims);
        assert!(t.verify(&token, &["vault"]).is_err());
        let other = tokens();
        assert!(other.verify(&token, &[ISSUER]).is_err(), "foreign key");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = tokens();
        let aud = vec![ISSUER.to_owned()];
        let (token, _) = t.issue(&grant(&aud, -10)).unwrap();
        assert!(matches!(
            t.verify(&token, &[ISSUER]),
            Err(TokenError::Invalid(_))
        ));
    }
}
