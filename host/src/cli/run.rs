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
use paddock::config::ControllersFile;
use paddock::controller::{ControllerHandle, ControllerStats, Runtime};
use paddock::harness::read_objects;
use paddock::ops::OpsState;
use paddock::reload::{Phase, StatusBoard, Supervisor};
use paddock::wasm::WasmEngine;

/// Arguments of `paddock run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The controllers file (YAML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// The kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use; default: its current context.
    #[arg(long)]
    context: Option<String>,

    /// Where to serve /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    ops_addr: std::net::SocketAddr,
}

/// Arguments of `paddock dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The controllers file (YAML); its `manifests` are applied first.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Where to write the embedded cluster's kubeconfig (for kubectl).
    #[arg(long, value_name = "FILE", default_value = ".paddock/kubeconfig")]
    kubeconfig_out: PathBuf,

    /// Port of the embedded API server (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Do not simulate workloads (Deployment status following spec).
    #[arg(long)]
    no_workload_simulator: bool,

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

/// How long `--once` waits for the controllers to go idle.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the controllers against a cluster until Ctrl-C or SIGTERM.
pub fn run(engine: &WasmEngine, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Checked before connecting; the source reads it again and watches it.
    ControllersFile::load(&args.config)?;
    tokio_runtime()?.block_on(async {
        let client = client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        serve(engine, client, &args.config, Until::Signal, args.ops_addr).await
    })
}

/// Starts the embedded cluster, applies the manifests, and runs the
/// controllers until Ctrl-C or SIGTERM.
pub fn dev(engine: &WasmEngine, args: DevArgs) -> anyhow::Result<ExitCode> {
    let file = ControllersFile::load(&args.config)?;
    tokio_runtime()?.block_on(async {
        let cluster = devcluster::DevCluster::start(
            devcluster::Options::new()
                .port(args.port)
                .workload_simulator(!args.no_workload_simulator),
        )
        .await
        .context("starting the embedded cluster")?;
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
        apply_manifests(&client, &file.manifests).await?;
        let until = if args.once {
            Until::Converged
        } else {
            Until::Signal
        };
        let code = serve(engine, client, &args.config, until, args.ops_addr).await;
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
    Client::try_from(config).context("creating the Kubernetes client")
}

/// Server-side applies every object of the manifest files, in order.
pub async fn apply_manifests(client: &Client, manifests: &[PathBuf]) -> anyhow::Result<()> {
    let discovery = Discovery::new(client.clone());
    for path in manifests {
        for object in read_objects(path)? {
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
                &Patch::Apply(&object),
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
    client: Client,
    config: &Path,
    until: Until,
    ops_addr: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(client);
    let supervisor = Supervisor::new(engine.clone(), runtime.clone());
    let ops = OpsState::new(runtime.informers().clone(), supervisor.board().clone());
    let (bound, _ops_task) = paddock::ops::serve(ops_addr, ops.clone())
        .await
        .with_context(|| {
            format!("serving /healthz, /readyz, /metrics and /status on {ops_addr}")
        })?;
    tracing::info!(addr = %bound, "operations endpoint: /healthz /readyz /metrics /status");
    let _source = paddock::reload::files::watch(config, supervisor.clone())?;
    // Controllers start side by side; one waiting for its CRD does not hold
    // up the others.
    tokio::select! {
        () = settled(supervisor.board()) => {}
        () = shutdown_signal() => {
            supervisor.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
    }
    ops.mark_started();
    let statuses = supervisor.board().all();
    let failed = statuses
        .iter()
        .filter(|status| status.phase == Phase::Failed)
        .count();
    if failed == statuses.len() {
        supervisor.shutdown().await;
        anyhow::bail!("no controller could be started ({failed} failed); see the errors above");
    }
    let mut code = ExitCode::SUCCESS;
    match until {
        Until::Signal => {
            tracing::info!(
                running = statuses.len() - failed,
                failed,
                "controllers running; the controllers file and modules are watched for changes; Ctrl-C to stop"
            );
            shutdown_signal().await;
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

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
