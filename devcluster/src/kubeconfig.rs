//! The generated kubeconfigs: one cluster, one user (bearer token or client certificate), one context.

use base64::Engine;

/// The name used for the cluster, user and context entries.
pub const CONTEXT_NAME: &str = "devcluster";

/// How the kubeconfig's user authenticates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Credentials<'a> {
    /// A bearer token.
    Token(&'a str),
    /// A client certificate and its key, both PEM.
    ClientCertificate { cert: &'a str, key: &'a str },
}

/// A kubeconfig for `server`, trusting the CA in `ca_pem`, authenticating with `credentials`,
/// default namespace `default`.
pub(crate) fn render(server: &str, ca_pem: &str, credentials: &Credentials<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = b64(ca_pem);
    let user = match credentials {
        Credentials::Token(token) => format!("token: {token}"),
        Credentials::ClientCertificate { cert, key } => format!(
            "client-certificate-data: {}\n    client-key-data: {}",
            b64(cert),
            b64(key)
        ),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT_NAME}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {CONTEXT_NAME}
  user:
    {user}
contexts:
- name: {CONTEXT_NAME}
  context:
    cluster: {CONTEXT_NAME}
    user: {CONTEXT_NAME}
    namespace: default
current-context: {CONTEXT_NAME}
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_names_server_and_token() {
        let k = render(
            "https://127.0.0.1:1",
            "-----BEGIN",
            &Credentials::Token("tok"),
        );
        assert!(k.contains("server: https://127.0.0.1:1"));
        assert!(k.contains("certificate-authority-data: LS0tLS1CRUdJTg=="));
        assert!(k.contains("    token: tok\n"));
        assert!(k.contains("current-context: devcluster"));
    }

    #[test]
    fn kubeconfig_carries_a_client_certificate() {
        let k = render(
            "https://127.0.0.1:1",
            "ca",
            &Credentials::ClientCertificate {
                cert: "c",
                key: "k",
            },
        );
        assert!(k.contains("    client-certificate-data: Yw==\n    client-key-data: aw==\n"));
        assert!(!k.contains("token:"));
    }
}
