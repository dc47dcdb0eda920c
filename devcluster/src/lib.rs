//! An embedded, in-process Kubernetes-compatible API server.
