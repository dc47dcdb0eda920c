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
use paddock::config::{ControllerSpec, ControllersFile};
use paddock::controller::{ControllerConfig, ControllerStats, RunningController, Runtime};
use paddock::harness::read_objects;
use paddock::ops::OpsState;
use paddock::wasm::{LoadOptions, WasmEngine};

/// How long in-flight reconciles may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    let file = ControllersFile::load(&args.config)?;
    tokio_runtime()?.block_on(async {
        let client = client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        serve(engine, client, &file, Until::Signal, args.ops_addr).await
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
        let code = serve(engine, client, &file, until, args.ops_addr).await;
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

/// Loads and starts every controller (a failing one is reported and the
/// others still start), then runs until Ctrl-C or SIGTERM.
async fn serve(
    engine: &WasmEngine,
    client: Client,
    file: &ControllersFile,
    until: Until,
    ops_addr: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(client);
    let ops = OpsState::new(runtime.informers().clone());
    let (bound, _ops_task) = paddock::ops::serve(ops_addr, ops.clone())
        .await
        .with_context(|| format!("serving /healthz, /readyz and /metrics on {ops_addr}"))?;
    tracing::info!(addr = %bound, "operations endpoint: /healthz /readyz /metrics");
    let mut running: Vec<RunningController> = Vec::new();
    let mut failed = 0;
    // Controllers start side by side; one waiting for its CRD does not hold
    // up the others.
    let starts = futures::future::join_all(
        file.controllers
            .iter()
            .map(|spec| start(engine, &runtime, spec, &ops)),
    );
    let results = tokio::select! {
        results = starts => results,
        () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
    };
    for (spec, result) in file.controllers.iter().zip(results) {
        match result {
            Ok(controller) => running.push(controller),
            Err(error) => {
                failed += 1;
                tracing::error!(controller = %spec.name, "not started: {error:#}");
            }
        }
    }
    ops.mark_started();
    if running.is_empty() {
        anyhow::bail!("no controller could be started ({failed} failed); see the errors above");
    }
    let mut code = ExitCode::SUCCESS;
    match until {
        Until::Signal => {
            tracing::info!(
                running = running.len(),
                failed,
                "controllers running; Ctrl-C to stop"
            );
            shutdown_signal().await;
        }
        Until::Converged => {
            if tokio::time::timeout(CONVERGE_TIMEOUT, converged(&running))
                .await
                .is_err()
            {
                eprintln!("the controllers did not go idle within {CONVERGE_TIMEOUT:?}");
                code = ExitCode::FAILURE;
            }
            print_summary(&running);
        }
    }
    tracing::info!("shutting down");
    for controller in running {
        controller.shutdown(SHUTDOWN_GRACE).await;
    }
    if failed > 0 {
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// Resolves once every controller has been idle (nothing queued, waiting
/// or running, and no new reconcile) for a second.
async fn converged(running: &[RunningController]) {
    let total = || -> u64 {
        running
            .iter()
            .map(|controller| ControllerStats::get(&controller.stats().reconciles))
            .sum()
    };
    let mut quiet = 0;
    let mut last = total();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    while quiet < 10 {
        ticker.tick().await;
        let now = total();
        if running.iter().all(RunningController::is_idle) && now == last && now > 0 {
            quiet += 1;
        } else {
            quiet = 0;
        }
        last = now;
    }
}

fn print_summary(running: &[RunningController]) {
    println!(
        "\n{:<16} {:>10} {:>9} {:>8} {:>13} {:>7}",
        "controller", "reconciles", "succeeded", "actions", "guest errors", "denied"
    );
    for controller in running {
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

async fn start(
    engine: &WasmEngine,
    runtime: &Runtime,
    spec: &ControllerSpec,
    ops: &OpsState,
) -> anyhow::Result<RunningController> {
    let engine = engine.clone();
    let module = spec.module.clone();
    let options = LoadOptions::default()
        .name(spec.name.clone())
        .limits(spec.limits.sandbox());
    let guest = tokio::task::spawn_blocking(move || engine.load(&module, options))
        .await
        .context("loading task")??;
    let controller = runtime
        .start_when_served(ControllerConfig {
            guest,
            grant: spec.grant(),
            namespaces: spec.namespaces.clone(),
            concurrency: spec.limits.concurrency,
            queue: spec.queue.clone(),
            resync: (spec.resync_seconds > 0).then(|| Duration::from_secs(spec.resync_seconds)),
        })
        .await?;
    ops.add(controller.handle());
    Ok(controller)
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
