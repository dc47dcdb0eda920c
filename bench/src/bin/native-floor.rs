//! replica-floor as a native kube-runtime controller process: the baseline
//! of the memory benchmark (one process per controller). Not part of the
//! product.
//!
//! `native-floor --kubeconfig FILE [--concurrency N]`

use std::sync::Arc;

use anyhow::Context;
use paddock_bench::native::{self, Counters, Decider};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut kubeconfig = None;
    let mut concurrency = 4;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig" => kubeconfig = args.next(),
            "--concurrency" => {
                concurrency = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .context("--concurrency takes a number")?;
            }
            other => anyhow::bail!(
                "unknown argument {other}; usage: native-floor --kubeconfig FILE [--concurrency N]"
            ),
        }
    }
    let path = kubeconfig.context("--kubeconfig FILE is required")?;
    let client = paddock_bench::process::client(std::path::Path::new(&path)).await?;
    native::run(
        client,
        Decider::Native,
        concurrency,
        Arc::new(Counters::default()),
    )
    .await;
    Ok(())
}
