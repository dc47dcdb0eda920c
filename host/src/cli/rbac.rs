//! `paddock rbac`: the ClusterRole, binding and Roles the host needs for
//! what it will run.

use std::path::PathBuf;
use std::process::ExitCode;

use paddock::config::ControllersFile;
use paddock::identity::ServiceAccount;
use paddock::identity::rbac::{HostPlan, host_rbac};

/// Arguments of `paddock rbac`.
#[derive(Debug, clap::Args)]
pub struct RbacArgs {
    /// The controllers file the host will run.
    #[arg(long, value_name = "FILE", required_unless_present = "from_cluster")]
    config: Option<PathBuf>,

    /// The host will also run the cluster's `WasmController` and
    /// `ClusterWasmController` resources.
    #[arg(long)]
    from_cluster: bool,

    /// With --from-cluster: the resources tenants' controllers may watch
    /// (the host's informers serve them), as `resource` or
    /// `resource.group`, comma-separated; default: every resource.
    #[arg(long, value_name = "RESOURCES", value_delimiter = ',')]
    tenant_reads: Vec<String>,

    /// The host joins a ring (`paddock run --replication`) whose Leases
    /// live in this namespace.
    #[arg(long, value_name = "NAMESPACE")]
    lease_namespace: Option<String>,

    /// The host's ServiceAccount, `namespace/name`.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "paddock-system/paddock"
    )]
    service_account: String,

    /// The name of the ClusterRole, the Roles and their bindings.
    #[arg(long, default_value = "paddock")]
    name: String,
}

/// Prints the objects as one YAML stream.
pub fn rbac(args: RbacArgs) -> anyhow::Result<ExitCode> {
    let host = ServiceAccount::parse(&args.service_account)
        .map_err(|problem| anyhow::anyhow!("--service-account: {problem}"))?;
    if !paddock::config::is_dns_label(&args.name) {
        anyhow::bail!(
            "--name: `{}` is not a DNS label (lower-case letters, digits and `-`)",
            args.name
        );
    }
    if let Some(namespace) = &args.lease_namespace
        && !paddock::config::is_dns_label(namespace)
    {
        anyhow::bail!("--lease-namespace: `{namespace}` is not a namespace name (a DNS label)");
    }
    let file = args
        .config
        .as_deref()
        .map(ControllersFile::load)
        .transpose()?;
    let plan = HostPlan {
        file: file.as_ref(),
        from_cluster: args.from_cluster,
        tenant_reads: args.tenant_reads,
        lease_namespace: args.lease_namespace,
    };
    print!("{}", host_rbac(&plan, &args.name, &host).to_yaml()?);
    Ok(ExitCode::SUCCESS)
}
