//! `paddock run` and `paddock dev`: run the controllers of a controllers
//! file against a cluster, or against the embedded one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use paddock::cluster::Discovery;
use paddock::config::{ControllersFile, Manifest};
use paddock::controller::{ControllerHandle, ControllerStats, Runtime};
use paddock::oci::{PullLimits, Registries};
use paddock::ops::OpsState;
use paddock::record::{RecordOptions, Recordings, Redaction};
use paddock::reload::cluster::TenantLimits;
use paddock::reload::{Phase, StatusBoard, Supervisor};
use paddock::replication::{Fence, Mode, Ring, RingConfig};
use paddock::wasm::WasmEngine;
use paddock::wasm::slots::ExecutionSlots;

/// Arguments of `paddock run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The controllers file (YAML), watched for changes with its modules.
    #[arg(long, value_name = "FILE", required_unless_present = "from_cluster")]
    config: Option<PathBuf>,

    /// Also (or only) run the controllers the cluster's `WasmController`
    /// and `ClusterWasmController` resources declare, following their
    /// changes.
    #[arg(long)]
    from_cluster: bool,

    #[command(flatten)]
    tenant: TenantArgs,

    #[command(flatten)]
    replication: ReplicationArgs,

    #[command(flatten)]
    registries: RegistryArgs,

    #[command(flatten)]
    record: RecordArgs,

    /// The kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use; default: its current context.
    #[arg(long)]
    context: Option<String>,

    /// Where to serve /healthz, /readyz, /metrics and /status.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    ops_addr: std::net::SocketAddr,

    /// How long a controller's start (or reload) waits for the informers
    /// of its watches to list before it fails with the reason (a forbidden
    /// list, a kind that is gone, the API server unreachable), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = paddock::controller::DEFAULT_SYNC_TIMEOUT.as_secs())]
    sync_timeout_seconds: u64,
}

/// The caps of tenants' `WasmController`s.
#[derive(Debug, Clone, clap::Args)]
pub struct TenantArgs {
    /// The largest memory cap a tenant's `WasmController` gets, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = TenantLimits::default().max_memory_mib)]
    tenant_max_memory_mib: u64,

    /// The longest deadline a tenant's `WasmController` gets, in ms.
    #[arg(long, value_name = "MS", default_value_t = TenantLimits::default().max_deadline_ms)]
    tenant_max_deadline_ms: u64,

    /// The most reconciles at once a tenant's `WasmController` gets.
    #[arg(long, value_name = "N", default_value_t = TenantLimits::default().max_concurrency)]
    tenant_max_concurrency: usize,

    /// The most actions one answer of a tenant's guest may hold.
    #[arg(long, value_name = "N", default_value_t = TenantLimits::default().max_actions)]
    tenant_max_actions: u32,

    /// The most bytes one answer of a tenant's guest may hold.
    #[arg(long, value_name = "BYTES", default_value_t = TenantLimits::default().max_answer_bytes)]
    tenant_max_answer_bytes: u64,

    /// The longest log line of a tenant's guest, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = TenantLimits::default().max_log_line_bytes)]
    tenant_max_log_line_bytes: u32,

    /// The most log bytes one call of a tenant's guest may write.
    #[arg(long, value_name = "BYTES", default_value_t = TenantLimits::default().max_log_bytes_per_call)]
    tenant_max_log_bytes_per_call: u64,

    /// The most log lines per second of one tenant's controller.
    #[arg(long, value_name = "N", default_value_t = TenantLimits::default().max_log_lines_per_second)]
    tenant_max_log_lines_per_second: u32,

    /// The shortest requeue-after a tenant's guest gets, in ms.
    #[arg(long, value_name = "MS", default_value_t = TenantLimits::default().min_requeue_ms)]
    tenant_min_requeue_ms: u64,

    /// Execution slots: the most guest calls running at once on this host
    /// (default: four per core).
    #[arg(long, value_name = "N", default_value_t = paddock::wasm::slots::default_slots())]
    guest_slots: usize,

    /// The most execution slots one tenant (a namespace's
    /// `WasmController`s) holds at once (default: half the cores, at least 1).
    #[arg(long, value_name = "N", default_value_t = paddock::wasm::slots::default_per_tenant())]
    tenant_slots: usize,

    /// The most `WasmController`s that run in one namespace.
    #[arg(long, value_name = "N", default_value_t = TenantLimits::default().max_controllers_per_namespace)]
    tenant_max_controllers_per_namespace: usize,

    /// The ServiceAccount (in its own namespace) a `WasmController` that
    /// names none in `spec.serviceAccountName` acts as; without this flag
    /// such a controller is refused.
    #[arg(long, value_name = "NAME")]
    tenant_default_service_account: Option<String>,

    /// How long the answers of SubjectAccessReviews for controllers'
    /// ServiceAccounts are trusted, in seconds: a Role granted or taken
    /// away takes effect within it.
    #[arg(long, value_name = "SECONDS", default_value_t = paddock::identity::DEFAULT_REVIEW_TTL.as_secs())]
    access_review_ttl_seconds: u64,

    /// A registry (`HOST[:PORT]`) a `WasmController`'s `spec.module.image`
    /// may come from; repeat for several. Without it, any: the host then
    /// connects to whatever registry a tenant names.
    #[arg(long = "tenant-registry", value_name = "HOST[:PORT]")]
    tenant_registries: Vec<String>,
}

impl TenantArgs {
    fn slots(&self) -> ExecutionSlots {
        ExecutionSlots::new(self.guest_slots, self.tenant_slots)
    }

    fn review_ttl(&self) -> Duration {
        Duration::from_secs(self.access_review_ttl_seconds)
    }

    fn limits(&self) -> TenantLimits {
        TenantLimits {
            max_memory_mib: self.tenant_max_memory_mib,
            max_deadline_ms: self.tenant_max_deadline_ms,
            max_concurrency: self.tenant_max_concurrency,
            max_actions: self.tenant_max_actions,
            max_answer_bytes: self.tenant_max_answer_bytes,
            max_log_line_bytes: self.tenant_max_log_line_bytes,
            max_log_bytes_per_call: self.tenant_max_log_bytes_per_call,
            max_log_lines_per_second: self.tenant_max_log_lines_per_second,
            min_requeue_ms: self.tenant_min_requeue_ms,
            max_controllers_per_namespace: self.tenant_max_controllers_per_namespace,
            default_service_account: self.tenant_default_service_account.clone(),
            registries: self.tenant_registries.clone(),
        }
    }
}

/// How several hosts share one cluster's work.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicationArgs {
    /// How the hosts of one ring share the work: `none` (this host works
    /// alone), `leader` (the host holding the ring's leader Lease works;
    /// the others stand by with every guest loaded and every informer
    /// synced, and one takes over when the Lease expires or is given up)
    /// or `sharded` (every member works on its share of the objects,
    /// spread by rendezvous hashing over the live members).
    #[arg(long, value_enum, default_value_t = Replication::None)]
    replication: Replication,

    /// The ring: the name of its leader Lease and of the label its member
    /// Leases carry.
    #[arg(long, value_name = "NAME", default_value = "paddock")]
    ring: String,

    /// This host's identity in the ring; default: the hostname (a pod's
    /// name) and a random suffix.
    #[arg(long, value_name = "ID")]
    identity: Option<String>,

    /// The namespace of the ring's Leases; default: the pod's namespace,
    /// else `default`.
    #[arg(long, value_name = "NAMESPACE")]
    lease_namespace: Option<String>,

    /// How long a Lease lasts without renewal, in whole seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = RingConfig::LEASE_DURATION.as_secs())]
    lease_duration_seconds: u64,

    /// How long the leader keeps trying to renew before it stops working,
    /// in seconds; shorter than the Lease's duration.
    #[arg(long, value_name = "SECONDS", default_value_t = RingConfig::RENEW_DEADLINE.as_secs_f64())]
    renew_deadline_seconds: f64,

    /// How often each host tries to take or renew the Leases, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = RingConfig::RETRY_PERIOD.as_secs_f64())]
    retry_period_seconds: f64,

    /// Sharded mode: hold every object of every watched kind. By default a
    /// member holds, of the kinds its controllers watch as primary or
    /// owned, only the objects of its share (and their children); a guest
    /// that must see all of a kind declares it under `reads`.
    #[arg(long)]
    hold_all_objects: bool,
}

/// Where modules given as OCI images come from.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// A registry spoken to over plain HTTP instead of HTTPS (`HOST:PORT`,
    /// for a local development registry); repeat for several.
    #[arg(long = "plain-http-registry", value_name = "HOST:PORT")]
    plain_http: Vec<String>,

    /// The largest module pulled from a registry, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    max_module_mib: u64,

    /// How long one pull may take, retries of transient failures included,
    /// in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pull_timeout_seconds: u64,
}

/// Recording the controllers' calls.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Record every call of every controller (the request, each cache read
    /// with its answer, the instant the guest's clock read, the result) as
    /// JSON lines in DIR/<controller>/, to replay offline with `paddock
    /// test MODULE --replay DIR/<controller>`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,

    /// The most one controller's recording keeps, in MiB; the oldest
    /// segments are removed first.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    record_max_mib: u64,

    /// Also hide this field (a JSON pointer such as /spec/password) in
    /// every recorded object and action; repeat for several. Secrets'
    /// `data` and `stringData` values are always hidden unless
    /// --record-secrets.
    #[arg(long, value_name = "POINTER")]
    record_redact: Vec<String>,

    /// Record Secrets' values as they are, instead of hiding them.
    #[arg(long)]
    record_secrets: bool,

    /// Record only this controller (its name; `namespace/name` for a
    /// WasmController); repeat for several. Default: every controller.
    #[arg(long, value_name = "NAME", requires = "record")]
    record_controller: Vec<String>,
}

impl RecordArgs {
    /// The recordings asked for, if any.
    fn recordings(&self) -> anyhow::Result<Option<std::sync::Arc<Recordings>>> {
        let Some(dir) = &self.record else {
            return Ok(None);
        };
        for pointer in &self.record_redact {
            if !pointer.starts_with('/') {
                anyhow::bail!(
                    "option --record-redact: `{pointer}` is not a JSON pointer; write it like /spec/password"
                );
            }
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("option --record: cannot create {}", dir.display()))?;
        Ok(Some(std::sync::Arc::new(Recordings::new(RecordOptions {
            dir: dir.clone(),
            max_bytes: self.record_max_mib.max(1).saturating_mul(1024 * 1024),
            redaction: Redaction {
                secrets: !self.record_secrets,
                pointers: self.record_redact.clone(),
            },
            controllers: self.record_controller.clone(),
        }))))
    }
}

impl RegistryArgs {
    /// The registries, with `also_plain` spoken to over plain HTTP too.
    fn registries(&self, also_plain: Option<String>) -> Registries {
        let mut plain = self.plain_http.clone();
        plain.extend(also_plain);
        Registries::new(
            plain,
            PullLimits {
                max_bytes: self.max_module_mib.saturating_mul(1024 * 1024),
                timeout: Duration::from_secs(self.pull_timeout_seconds),
                ..PullLimits::default()
            },
        )
    }
}

/// The values of `--replication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Replication {
    /// This host works alone.
    None,
    /// One host of the ring works, the others stand by.
    Leader,
    /// Every host of the ring works on its share.
    Sharded,
}

impl ReplicationArgs {
    /// The ring this host joins, if it joins one.
    fn ring(&self) -> anyhow::Result<Option<RingConfig>> {
        let mode = match self.replication {
            Replication::None => return Ok(None),
            Replication::Leader => Mode::Leader,
            Replication::Sharded => Mode::Sharded,
        };
        let seconds = |flag: &str, value: f64| {
            Duration::try_from_secs_f64(value).map_err(|_| {
                anyhow::anyhow!("--{flag} must be a number of seconds above zero, not {value}")
            })
        };
        let config = RingConfig {
            ring: self.ring.clone(),
            identity: self
                .identity
                .clone()
                .unwrap_or_else(paddock::replication::default_identity),
            namespace: self
                .lease_namespace
                .clone()
                .unwrap_or_else(paddock::replication::default_namespace),
            mode,
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: seconds("renew-deadline-seconds", self.renew_deadline_seconds)?,
            retry_period: seconds("retry-period-seconds", self.retry_period_seconds)?,
        };
        config.validate()?;
        Ok(Some(config))
    }
}

/// Arguments of `paddock dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The controllers file (YAML); its `manifests` are applied first.
    #[arg(long, value_name = "FILE", required_unless_present = "from_cluster")]
    config: Option<PathBuf>,

    /// Also (or only) run the controllers of `WasmController` and
    /// `ClusterWasmController` resources; their definitions are installed
    /// in the embedded cluster.
    #[arg(long)]
    from_cluster: bool,

    #[command(flatten)]
    tenant: TenantArgs,

    #[command(flatten)]
    registries: RegistryArgs,

    #[command(flatten)]
    record: RecordArgs,

    /// Also serve an OCI registry (plain HTTP, in memory) on this port of
    /// 127.0.0.1 (0: any free port), to push modules to with `paddock
    /// push` and run them by image; the host pulls from it over plain
    /// HTTP.
    #[arg(long, value_name = "PORT")]
    registry_port: Option<u16>,

    /// Where to write the embedded cluster's kubeconfig (for kubectl).
    #[arg(long, value_name = "FILE", default_value = ".paddock/kubeconfig")]
    kubeconfig_out: PathBuf,

    /// Port of the embedded API server (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Do not simulate workloads (Deployment status following spec).
    #[arg(long)]
    no_workload_simulator: bool,

    /// Append the embedded cluster's audit log to this file: one
    /// `audit.k8s.io/v1` Event per request (JSON lines), naming the user,
    /// the ServiceAccount a controller impersonated, the decision and the
    /// response code.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// Exit once every controller is idle (the samples converged), after
    /// printing a summary, instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,

    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    ops_addr: std::net::SocketAddr,
}

/// When `serve` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// Every controller is idle.
    Converged,
}

/// How a host serves: until when, where its operations endpoint
/// listens, and the ring it joins.
#[derive(Debug)]
struct Serving {
    until: Until,
    ops_addr: std::net::SocketAddr,
    ring: Option<RingConfig>,
    registries: Registries,
    recordings: Option<std::sync::Arc<Recordings>>,
}

/// How long a shutting-down host waits for guest calls still running.
const SLOTS_DRAIN: Duration = Duration::from_secs(30);

/// How long `--once` waits for the controllers to go idle.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the controllers against a cluster until Ctrl-C or SIGTERM.
pub fn run(engine: &WasmEngine, args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(config) = &args.config {
        // Checked before connecting; the source reads it again and watches it.
        ControllersFile::load(config)?;
    }
    let ring = args.replication.ring()?;
    tokio_runtime()?.block_on(async {
        let client = client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let sources = Sources {
            config: args.config.as_deref(),
            cluster: args.from_cluster.then(|| args.tenant.limits()),
        };
        let slots = args.tenant.slots();
        let fence = if ring.is_some() {
            Fence::closed()
        } else {
            Fence::open()
        };
        let mut runtime = Runtime::with_slots(client.clone(), slots.clone())
            .with_sync_timeout(Duration::from_secs(args.sync_timeout_seconds))
            .with_review_ttl(args.tenant.review_ttl())
            .with_fence(fence);
        if let Some(config) = ring
            .as_ref()
            .filter(|config| config.mode == Mode::Sharded && !args.replication.hold_all_objects)
        {
            runtime
                .fence()
                .set_shard(paddock::replication::first_shard(client.clone(), config).await);
            runtime = runtime.with_share_only_informers();
        }
        serve(
            engine,
            runtime,
            client,
            sources,
            slots,
            Serving {
                until: Until::Signal,
                ops_addr: args.ops_addr,
                ring,
                registries: args.registries.registries(None),
                recordings: args.record.recordings()?,
            },
        )
        .await
    })
}

/// Where the controllers come from.
#[derive(Debug, Clone)]
struct Sources<'a> {
    /// A controllers file.
    config: Option<&'a Path>,
    /// The cluster's resources, with these tenant caps.
    cluster: Option<TenantLimits>,
}

/// Starts the embedded cluster, applies the manifests, and runs the
/// controllers until Ctrl-C or SIGTERM.
pub fn dev(engine: &WasmEngine, args: DevArgs) -> anyhow::Result<ExitCode> {
    // Read and checked before the cluster starts.
    let manifests = match &args.config {
        Some(config) => ControllersFile::load(config)?.read_manifests(config)?,
        None => Vec::new(),
    };
    tokio_runtime()?.block_on(async {
        let mut options = devcluster::Options::new()
            .port(args.port)
            .workload_simulator(!args.no_workload_simulator);
        if let Some(path) = &args.audit_log {
            options = options.audit_log(path);
        }
        if let Some(port) = args.registry_port {
            options = options.oci_registry_options(devcluster::OciOptions::new().port(port));
        }
        let cluster = devcluster::DevCluster::start(options)
            .await
            .context("starting the embedded cluster")?;
        let registry = cluster.oci_registry().map(devcluster::OciRegistry::host);
        if let Some(registry) = &registry {
            println!(
                "OCI registry at {registry} (plain HTTP): paddock push guest.wasm {registry}/NAME:TAG --plain-http"
            );
        }
        if let Some(dir) = args.kubeconfig_out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        cluster
            .write_kubeconfig(&args.kubeconfig_out)
            .with_context(|| format!("writing {}", args.kubeconfig_out.display()))?;
        println!(
            "embedded cluster at {}; kubeconfig: {} (kubectl --kubeconfig {} get all -A)",
            cluster.base_url(),
            args.kubeconfig_out.display(),
            args.kubeconfig_out.display()
        );
        let client = client(Some(&args.kubeconfig_out), None).await?;
        if args.from_cluster {
            apply_crds(&client).await?;
        }
        apply_manifests(&client, &manifests).await?;
        let until = if args.once {
            Until::Converged
        } else {
            Until::Signal
        };
        let sources = Sources {
            config: args.config.as_deref(),
            cluster: args.from_cluster.then(|| args.tenant.limits()),
        };
        let slots = args.tenant.slots();
        let runtime = Runtime::with_slots(client.clone(), slots.clone())
            .with_review_ttl(args.tenant.review_ttl());
        let code = serve(
            engine,
            runtime,
            client,
            sources,
            slots,
            Serving {
                until,
                ops_addr: args.ops_addr,
                ring: None,
                registries: args.registries.registries(registry),
                recordings: args.record.recordings()?,
            },
        )
        .await;
        cluster.shutdown().await;
        code
    })
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A client from a kubeconfig file, or inferred as kubectl does.
pub async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("using the kubeconfig")?,
        None => kube::Config::infer()
            .await
            .context("finding a cluster: pass --kubeconfig, set KUBECONFIG, or run in a pod")?,
    };
    paddock::cluster::client(config).context("creating the Kubernetes client")
}

/// Installs the `WasmController` and `ClusterWasmController` definitions.
async fn apply_crds(client: &Client) -> anyhow::Result<()> {
    use kube::CustomResourceExt;
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in [
        paddock::crd::WasmController::crd(),
        paddock::crd::ClusterWasmController::crd(),
    ] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("paddock-dev").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("installing the {name} definition"))?;
    }
    Ok(())
}

/// Server-side applies every object of the manifest files, in order.
pub async fn apply_manifests(client: &Client, manifests: &[Manifest]) -> anyhow::Result<()> {
    let discovery = Discovery::new(client.clone());
    for Manifest { path, objects } in manifests {
        for object in objects {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let resource = discovery
                .resolve(api_version, kind)
                .await
                .with_context(|| format!("{}: {kind} {name}", path.display()))?;
            let api: Api<DynamicObject> = if resource.namespaced {
                let namespace = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default");
                Api::namespaced_with(client.clone(), namespace, &resource.api_resource())
            } else {
                Api::all_with(client.clone(), &resource.api_resource())
            };
            api.patch(
                name,
                &PatchParams::apply("paddock-dev").force(),
                &Patch::Apply(object),
            )
            .await
            .with_context(|| format!("{}: applying {kind} {name}", path.display()))?;
            println!("applied {kind} {name} from {}", path.display());
        }
    }
    Ok(())
}

/// Starts every controller of the controllers file (a failing one is
/// reported and the others still start), keeps them equal to the file and
/// its modules as they change, and runs until Ctrl-C or SIGTERM (or, with
/// `Until::Converged`, until every controller is idle).
async fn serve(
    engine: &WasmEngine,
    runtime: Runtime,
    client: Client,
    sources: Sources<'_>,
    slots: ExecutionSlots,
    serving: Serving,
) -> anyhow::Result<ExitCode> {
    let Serving {
        until,
        ops_addr,
        ring,
        registries,
        recordings,
    } = serving;
    let mut shutdown = Shutdown::listen();
    let supervisor = Supervisor::new(engine.clone(), runtime.clone());
    supervisor.set_registries(registries);
    if let Some(recordings) = &recordings {
        supervisor.set_recordings(std::sync::Arc::clone(recordings));
    }
    let ops = OpsState::new(runtime.informers().clone(), supervisor.board().clone())
        .with_slots(slots.clone())
        .with_engine(engine.clone());
    let ring_client = client.clone();
    let (bound, _ops_task) = paddock::ops::serve(ops_addr, ops.clone())
        .await
        .with_context(|| {
            format!("serving /healthz, /readyz, /metrics and /status on {ops_addr}")
        })?;
    tracing::info!(addr = %bound, "operations endpoint: /healthz /readyz /metrics /status");
    let _file_source = match sources.config {
        Some(config) => Some(paddock::reload::files::watch(config, supervisor.clone())?),
        None => None,
    };
    let from_cluster = sources.cluster.is_some();
    let _cluster_source = sources
        .cluster
        .map(|tenant| paddock::reload::cluster::watch(supervisor.clone(), client, tenant));
    // Controllers start side by side; one waiting for its CRD does not hold
    // up the others.
    tokio::select! {
        () = settled(supervisor.board()) => {}
        () = shutdown.requested() => {
            supervisor.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let statuses = supervisor.board().all();
    // At start, a controller still waiting for the cluster or for its
    // ServiceAccount's rights counts as failed: when none can start, the
    // credentials, the address or the RBAC are likely wrong, and saying so
    // beats waiting.
    let failed = statuses
        .iter()
        .filter(|status| {
            matches!(
                status.phase,
                Phase::Failed | Phase::WaitingForCluster | Phase::LacksPermission
            )
        })
        .count();
    if !from_cluster && failed == statuses.len() {
        supervisor.shutdown().await;
        anyhow::bail!("no controller could be started ({failed} failed); see the errors above");
    }
    // A host joins its ring once its controllers have loaded and synced:
    // a standby that takes over compiles and lists nothing.
    let ring = ring.map(|config| {
        tracing::info!(ring = %config.ring, identity = %config.identity, namespace = %config.namespace, mode = %config.mode, "joining the ring");
        let board = supervisor.board().clone();
        let ring = Ring::join(ring_client, config, runtime.fence().clone(), move || {
            for controller in handles(&board) {
                controller.resync();
            }
        });
        ops.set_ring(ring.handle());
        ring
    });
    ops.mark_started();
    let mut code = ExitCode::SUCCESS;
    match until {
        Until::Signal => {
            tracing::info!(
                running = statuses.len() - failed,
                failed,
                "controllers running; the controllers file and modules are watched for changes; Ctrl-C to stop"
            );
            shutdown.requested().await;
        }
        Until::Converged => {
            if tokio::time::timeout(CONVERGE_TIMEOUT, converged(supervisor.board()))
                .await
                .is_err()
            {
                eprintln!("the controllers did not go idle within {CONVERGE_TIMEOUT:?}");
                code = ExitCode::FAILURE;
            }
            print_summary(supervisor.board());
        }
    }
    tracing::info!("shutting down");
    supervisor.shutdown().await;
    // Calls still running end at their deadlines; let them, so that none
    // outlives the runtime.
    slots.drained(SLOTS_DRAIN).await;
    if let Some(recordings) = &recordings
        && !recordings.drained(SLOTS_DRAIN).await
    {
        eprintln!(
            "the recording did not catch up within {SLOTS_DRAIN:?}; its last calls are missing"
        );
    }
    // The Lease is given up only now: until the last reconcile ended, no
    // other host may begin.
    if let Some(ring) = ring {
        ring.leave().await;
    }
    if failed > 0 {
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// Resolves once no declared controller is still loading or waiting for a
/// watched kind.
async fn settled(board: &StatusBoard) {
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    loop {
        ticker.tick().await;
        let statuses = board.all();
        if statuses.iter().all(|status| {
            !matches!(
                status.phase,
                Phase::Loading | Phase::WaitingForKind | Phase::Reloading
            )
        }) {
            return;
        }
    }
}

fn handles(board: &StatusBoard) -> Vec<ControllerHandle> {
    board
        .all()
        .into_iter()
        .filter_map(|status| status.handle)
        .collect()
}

/// Resolves once every controller has been idle (nothing queued, waiting
/// or running, and no new reconcile) for a second.
async fn converged(board: &StatusBoard) {
    let total = || -> u64 {
        handles(board)
            .iter()
            .map(|controller| ControllerStats::get(&controller.stats().reconciles))
            .sum()
    };
    let idle = || {
        handles(board).iter().all(|controller| {
            let queue = controller.queue_metrics();
            queue.depth == 0 && queue.in_flight == 0 && queue.waiting == 0
        })
    };
    let mut quiet = 0;
    let mut last = total();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while quiet < 10 {
        ticker.tick().await;
        let now = total();
        if idle() && now == last && now > 0 {
            quiet += 1;
        } else {
            quiet = 0;
        }
        last = now;
    }
}

fn print_summary(board: &StatusBoard) {
    println!(
        "\n{:<16} {:>10} {:>9} {:>8} {:>13} {:>7}",
        "controller", "reconciles", "succeeded", "actions", "guest errors", "denied"
    );
    for controller in handles(board) {
        let stats = controller.stats();
        println!(
            "{:<16} {:>10} {:>9} {:>8} {:>13} {:>7}",
            controller.name(),
            ControllerStats::get(&stats.reconciles),
            ControllerStats::get(&stats.succeeded),
            ControllerStats::get(&stats.actions),
            ControllerStats::get(&stats.guest_errors),
            ControllerStats::get(&stats.denied),
        );
    }
}

/// Ctrl-C or SIGTERM, asking the host to stop. It listens from the moment
/// it is made, not from the first wait: tokio keeps a signal's handler
/// once any listener installed it and drops a delivery that no listener
/// holds, so a SIGTERM between two separate waits (one while the
/// controllers start, one while they run) would be lost and the host
/// would run on until killed.
struct Shutdown {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "Ctrl-C (SIGINT)"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Waits until a signal has come since the last wait returned (or
    /// since [`Shutdown::listen`]).
    async fn requested(&mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => {}
                () = next(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use tokio::signal::unix::{SignalKind, signal};

    use super::Shutdown;

    /// `serve` waits for a signal while its controllers start, stops
    /// waiting once they have, and waits again after it has said they
    /// run. A SIGTERM that the runtime delivers between the two waits
    /// must end the second.
    #[tokio::test]
    async fn a_sigterm_between_two_waits_is_not_lost() {
        let mut shutdown = Shutdown::listen();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), shutdown.requested())
                .await
                .is_err(),
            "the first wait ends with no signal sent"
        );
        // A second listener sees when the runtime has handed the signal
        // to every listener there is, so the next wait starts after that.
        let mut witness = signal(SignalKind::terminate()).expect("listening for SIGTERM");
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
            .expect("sending SIGTERM to this process");
        tokio::time::timeout(Duration::from_secs(30), witness.recv())
            .await
            .expect("the runtime delivers the SIGTERM within 30 s");
        tokio::time::timeout(Duration::from_secs(30), shutdown.requested())
            .await
            .expect("the SIGTERM delivered while nothing waited ends the next wait");
    }
}
