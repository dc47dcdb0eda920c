//! Authentication: client certificates, the admin token, ServiceAccount tokens, else anonymous.

use std::collections::BTreeMap;

use http::HeaderMap;
use parking_lot::Mutex;

use super::UserInfo;
use super::tokens::{Claims, Grant, ServiceAccountTokens, SigningError, TokenError};
use crate::core::Core;
use crate::status::ApiError;

/// The user named by the verified client certificate of a connection, if it sent one.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerUser(pub Option<std::sync::Arc<UserInfo>>);

/// Turns credentials into users.
#[derive(Debug)]
pub(crate) struct Authenticator {
    admin_token: String,
    tokens: ServiceAccountTokens,
}

impl Authenticator {
    /// An authenticator accepting `admin_token` and tokens signed with the ServiceAccount key.
    pub(crate) fn new(admin_token: String, signing_key_pem: &str) -> Result<Self, rcgen::Error> {
        Ok(Self {
            admin_token,
            tokens: ServiceAccountTokens::new(signing_key_pem)?,
        })
    }

    /// The admin bearer token.
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Signs a ServiceAccount token.
    pub(crate) fn issue(&self, grant: &Grant<'_>) -> Result<(String, Claims), SigningError> {
        self.tokens.issue(grant)
    }

    /// The user of a bearer token for one of `audiences`, and the audiences it is valid for.
    pub(crate) fn token_user(
        &self,
        core: &Mutex<Core>,
        token: &str,
        audiences: &[&str],
    ) -> Result<(UserInfo, Vec<String>), TokenError> {
        if token == self.admin_token {
            let audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
            return Ok((UserInfo::admin(), audiences));
        }
        let claims = self.tokens.verify(token, audiences)?;
        let k = &claims.kubernetes;
        let sa = &k.serviceaccount;
        let current_uid = core
            .lock()
            .store
            .get("/serviceaccounts", &k.namespace, &sa.name)
            .map(|s| {
                crate::json::meta_str(&s.decode(), "uid")
                    .unwrap_or_default()
                    .to_owned()
            });
        if current_uid.as_deref() != Some(sa.uid.as_str()) {
            return Err(TokenError::Deleted(format!("{}/{}", k.namespace, sa.name)));
        }
        let mut user = UserInfo::service_account(&k.namespace, &sa.name, &sa.uid);
        let mut extra = BTreeMap::new();
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={}", claims.jti)],
        );
        if let Some(pod) = &k.pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec![pod.uid.clone()],
            );
        }
        user.extra = extra;
        let valid_for = claims
            .aud
            .iter()
            .filter(|a| audiences.contains(&a.as_str()))
            .cloned()
            .collect();
        Ok((user, valid_for))
    }

    /// Who sent a request: the client certificate's user, else the bearer token's, else
    /// `system:anonymous`. A token that is presented but not valid is a 401.
    pub(crate) fn authenticate(
        &self,
        core: &Mutex<Core>,
        headers: &HeaderMap,
        peer: Option<&PeerUser>,
    ) -> Result<UserInfo, ApiError> {
        if let Some(user) = peer.and_then(|p| p.0.as_ref()) {
            return Ok((**user).clone());
        }
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Ok(UserInfo::anonymous());
        };
        if token == self.admin_token {
            return Ok(UserInfo::admin());
        }
        if !super::tokens::looks_like_jwt(token) {
            return Err(ApiError::unauthorized());
        }
        match self.token_user(core, token, &[super::tokens::ISSUER]) {
            Ok((user, _)) => Ok(user),
            Err(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                Err(ApiError::unauthorized())
            }
        }
    }
}
