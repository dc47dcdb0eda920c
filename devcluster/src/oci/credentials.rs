//! HTTP basic-auth credentials and their check on a request.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, header};

use super::refusal::Refusal;

/// The one user and password the registry admits when basic auth is on.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The user name (no `:`, which basic auth cannot carry).
    pub user: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// Admits a request whose `Authorization: Basic …` carries these credentials.
    pub(crate) fn admit(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Refusal::Unauthorized {
                reason: "authentication required",
            });
        };
        let given = value.to_str().ok().and_then(decode_basic);
        match given {
            Some((user, password)) if user == self.user && password == self.password => Ok(()),
            _ => Err(Refusal::Unauthorized {
                reason: "invalid credentials",
            }),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The user and password of a `Basic` authorization value.
fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_right_user_and_password_pass() {
        let credentials = Credentials {
            user: "dev".into(),
            password: "s3:cret".into(),
        };
        let right = format!("Basic {}", STANDARD.encode("dev:s3:cret"));
        assert!(credentials.admit(&headers(&right)).is_ok());
        let lower_scheme = right.replacen("Basic", "basic", 1);
        assert!(credentials.admit(&headers(&lower_scheme)).is_ok());
        let wrong = format!("Basic {}", STANDARD.encode("dev:nope"));
        assert!(credentials.admit(&headers(&wrong)).is_err());
        assert!(credentials.admit(&headers("Bearer abc")).is_err());
        assert!(credentials.admit(&HeaderMap::new()).is_err());
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let credentials = Credentials {
            user: "dev".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
