//! The cluster's identity material (CA, serving certificate, token-signing key, admin token) and its TLS setup.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Errors making or loading certificates and keys.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating or reading a key or certificate failed.
    #[error("generating the serving certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls refused the certificate or its settings.
    #[error("configuring TLS")]
    Config(#[source] rustls::Error),
    /// A stored certificate or key is not valid PEM.
    #[error("reading the stored {what}")]
    Pem {
        /// Which item.
        what: &'static str,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A client certificate was asked for with more than one group: the certificate writer
    /// (rcgen) puts at most one Organization in a subject.
    #[error("a client certificate names at most one group, {0} were given")]
    TooManyGroups(usize),
    /// The client-certificate verifier could not be built.
    #[error("configuring client certificate verification")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
}

/// Everything that makes a cluster the same cluster across restarts: CA, serving certificate,
/// ServiceAccount token-signing key and the admin token (all PEM where a key or certificate).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Identity {
    /// The CA certificate clients trust, which also signs client certificates.
    pub ca_pem: String,
    ca_key_pem: String,
    serving_cert_pem: String,
    serving_key_pem: String,
    /// The ECDSA P-256 key (PKCS#8 PEM) ServiceAccount tokens are signed with.
    pub service_account_key_pem: String,
    /// The bearer token of the admin user.
    pub admin_token: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// The CA's parameters: the same every time, so a stored CA key signs as the stored CA.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Certificate)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "devcluster-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl Identity {
    /// A new CA, a serving certificate for `127.0.0.1` and `localhost` signed by it, a token
    /// signing key and an admin token (`token`, or a random one).
    pub(crate) fn generate(token: Option<String>) -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate().map_err(TlsError::Certificate)?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca =
            CertifiedIssuer::self_signed(ca_params()?, ca_key).map_err(TlsError::Certificate)?;

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .map_err(TlsError::Certificate)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "devcluster");
        let key = KeyPair::generate().map_err(TlsError::Certificate)?;
        let cert = params.signed_by(&key, &ca).map_err(TlsError::Certificate)?;
        let sa_key = KeyPair::generate().map_err(TlsError::Certificate)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_key_pem,
            serving_cert_pem: cert.pem(),
            serving_key_pem: key.serialize_pem(),
            service_account_key_pem: sa_key.serialize_pem(),
            admin_token: token.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        })
    }

    /// The server's TLS configuration: the serving certificate, and client certificates
    /// signed by the CA asked for but not required.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let pem_err = |what| move |source| TlsError::Pem { what, source };
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(pem_err("CA certificate"))?;
        let cert = CertificateDer::from_pem_slice(self.serving_cert_pem.as_bytes())
            .map_err(pem_err("serving certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(self.serving_key_pem.as_bytes())
            .map_err(pem_err("serving key"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).map_err(TlsError::Config)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(TlsError::ClientVerifier)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert, ca], key)
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client certificate and its key (both PEM) for `user` in `groups` (at most one),
    /// signed by the CA: the user is the subject's CommonName, the group its Organization, as
    /// kube-apiserver reads them.
    pub(crate) fn client_certificate(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<(String, String), TlsError> {
        if groups.len() > 1 {
            return Err(TlsError::TooManyGroups(groups.len()));
        }
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(TlsError::Certificate)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Certificate)?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(TlsError::Certificate)?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(TlsError::Certificate)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The user a verified client certificate names: CommonName and Organizations.
pub(crate) fn certificate_user(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((name, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_name_user_and_groups() {
        let id = Identity::generate(None).unwrap();
        let (cert, _key) = id.client_certificate("jane", &["devs"]).unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (user, groups) = certificate_user(&der).unwrap();
        assert_eq!(user, "jane");
        assert_eq!(groups, ["devs"]);
        assert!(id.client_certificate("jane", &["a", "b"]).is_err());
        assert!(id.server_config().is_ok());
    }
}
