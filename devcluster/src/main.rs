//! `devcluster`: runs the embedded API server and writes a kubeconfig for it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Runs an in-memory Kubernetes-compatible API server on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "devcluster", version)]
struct Args {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write the kubeconfig (the admin, by bearer token).
    #[arg(long, default_value = "devcluster.kubeconfig")]
    kubeconfig_out: PathBuf,
    /// Where to write a second kubeconfig authenticating with a client certificate
    /// (`kubernetes-admin` in group `system:masters`).
    #[arg(long, default_value = "devcluster-cert.kubeconfig")]
    cert_kubeconfig_out: PathBuf,
    /// Make Deployment, ReplicaSet and StatefulSet status follow spec.replicas.
    #[arg(long)]
    workload_simulator: bool,
    /// Keep the cluster's objects and identity (CA, keys, admin token) in this directory
    /// across restarts.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Append an audit.k8s.io/v1 Event for every request to this file (JSON lines, level
    /// Metadata), as kube-apiserver's flag of the same name does.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// Also run an in-memory OCI registry (plain HTTP on 127.0.0.1) to push WebAssembly
    /// components to.
    #[arg(long)]
    oci_registry: bool,
    /// The OCI registry's port (0: any free port).
    #[arg(long, default_value_t = 0, requires = "oci_registry")]
    oci_registry_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("devcluster=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = devcluster::Options::new()
        .port(args.port)
        .workload_simulator(args.workload_simulator);
    if let Some(dir) = args.data_dir {
        options = options.data_dir(dir);
    }
    if let Some(path) = args.audit_log_path {
        options = options.audit_log(path);
    }
    if args.oci_registry {
        options = options
            .oci_registry_options(devcluster::OciOptions::new().port(args.oci_registry_port));
    }
    let cluster = devcluster::DevCluster::start(options)
        .await
        .context("starting the devcluster")?;
    cluster.write_kubeconfig(&args.kubeconfig_out)?;
    cluster.write_kubeconfig_for_user(
        &args.cert_kubeconfig_out,
        "kubernetes-admin",
        &["system:masters"],
    )?;
    let path = std::fs::canonicalize(&args.kubeconfig_out).unwrap_or(args.kubeconfig_out);
    println!("{}", path.display());
    eprintln!(
        "devcluster listening on {}; try: kubectl --kubeconfig {} get namespaces",
        cluster.base_url(),
        path.display()
    );
    if let Some(registry) = cluster.oci_registry() {
        eprintln!(
            "OCI registry on http://{0}; push to references such as {0}/team/floor:v1",
            registry.host()
        );
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    cluster.shutdown().await;
    Ok(())
}
