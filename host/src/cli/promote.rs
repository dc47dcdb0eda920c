//! `paddock promote`: make a controller's shadow candidate its live
//! version, in the controllers file or in its `WasmController` /
//! `ClusterWasmController` resource. The host then swaps it in as any
//! other new version: loaded and checked first, the old one serving until
//! then, no queued work lost.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use paddock::crd::{ClusterWasmController, WasmController};

/// Arguments of `paddock promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The controller: its name in the controllers file (with --config), or
    /// the name of its `WasmController` (or, with --cluster-scoped,
    /// `ClusterWasmController`).
    name: String,

    /// The controllers file that declares it; the entry's `module:` (or
    /// `image:`) takes the candidate's and its `shadow:` goes, everything
    /// else (comments included) staying as written.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["namespace", "cluster_scoped"])]
    config: Option<PathBuf>,

    /// The `WasmController`'s namespace; default: the kubeconfig context's.
    #[arg(short, long)]
    namespace: Option<String>,

    /// Promote a `ClusterWasmController`.
    #[arg(long)]
    cluster_scoped: bool,

    /// The kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use; default: its current context.
    #[arg(long)]
    context: Option<String>,
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the controllers file {}", path.display()))?;
        let promoted = paddock::config::promote_shadow(path, &text, &args.name)?;
        // Written whole and renamed into place: the host sees one change.
        let staged = path.with_extension("yaml.promoting");
        std::fs::write(&staged, promoted)
            .with_context(|| format!("cannot write {}", staged.display()))?;
        std::fs::rename(&staged, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        println!(
            "promoted the shadow candidate of `{}` in {}; a host watching the file swaps it in",
            args.name,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(promote_resource(&args))
}

async fn promote_resource(args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let client = super::run::client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    let (api, what): (Api<DynamicObject>, String) = if args.cluster_scoped {
        let resource = ApiResource::erase::<ClusterWasmController>(&());
        (
            Api::all_with(client, &resource),
            format!("ClusterWasmController {}", args.name),
        )
    } else {
        let resource = ApiResource::erase::<WasmController>(&());
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        (
            Api::namespaced_with(client, &namespace, &resource),
            format!("WasmController {namespace}/{}", args.name),
        )
    };
    let object = api
        .get(&args.name)
        .await
        .with_context(|| format!("cannot read {what}"))?;
    let object = serde_json::to_value(&object).context("reading the resource")?;
    let Some(patch) = paddock::crd::promotion(&object) else {
        bail!("{what} has no spec.shadow.module to promote");
    };
    api.patch(
        &args.name,
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .with_context(|| format!("cannot promote {what} (changed meanwhile? run the command again)"))?;
    println!(
        "promoted {what}: spec.module is now the candidate; the host swaps it in and status.moduleDigest shows it"
    );
    Ok(ExitCode::SUCCESS)
}
