//! A throwaway certificate authority and serving certificate for 127.0.0.1, made at start.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors making the serving certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or certificate failed.
    #[error("generating the serving certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls refused the certificate or its settings.
    #[error("configuring TLS")]
    Config(#[source] rustls::Error),
}

/// The CA clients trust (PEM) and the server's TLS configuration.
#[derive(Debug)]
pub(crate) struct Tls {
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

/// Makes a CA and a certificate for `127.0.0.1` and `localhost` signed by it.
pub(crate) fn generate() -> Result<Tls, TlsError> {
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(TlsError::Certificate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "devcluster-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(TlsError::Certificate)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(TlsError::Certificate)?;

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .map_err(TlsError::Certificate)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "devcluster");
    let key = KeyPair::generate().map_err(TlsError::Certificate)?;
    let cert = params.signed_by(&key, &ca).map_err(TlsError::Certificate)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca.pem(),
        config: Arc::new(config),
    })
}
