//! The generated kubeconfig: one cluster, one token user, one context.

/// The name used for the cluster, user and context entries.
pub const CONTEXT_NAME: &str = "devcluster";

/// A kubeconfig for `server`, trusting the CA in `ca_pem`, authenticating with a bearer `token`,
/// default namespace `default`.
pub(crate) fn render(server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
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
    token: {token}
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
    #[test]
    fn kubeconfig_names_server_and_token() {
        let k = super::render("https://127.0.0.1:1", "-----BEGIN", "tok");
        assert!(k.contains("server: https://127.0.0.1:1"));
        assert!(k.contains("certificate-authority-data: LS0tLS1CRUdJTg=="));
        assert!(k.contains("token: tok"));
        assert!(k.contains("current-context: devcluster"));
    }
}
