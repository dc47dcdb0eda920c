//! `paddock push`: publish a component to an OCI registry in the wasm
//! artifact layout, so that a controller can name it by `image`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use paddock::oci::{DockerConfig, PullLimits, Registries};

/// Arguments of `paddock push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The component (`.wasm`) to publish.
    #[arg(value_name = "MODULE")]
    module: PathBuf,

    /// Where: `registry/repository:tag`.
    #[arg(value_name = "REF")]
    reference: String,

    /// Speak plain HTTP to the registry (a local development registry,
    /// such as `paddock dev --registry-port`'s).
    #[arg(long)]
    plain_http: bool,
}

/// Pushes the component and prints the reference pinned to its digest.
pub fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    push_file(&args.module, &args.reference, args.plain_http)
}

/// Pushes the component at `module` as `reference` and prints the
/// reference pinned to its digest (`paddock push`, `paddock build --push`).
pub fn push_file(
    module: &std::path::Path,
    reference: &str,
    plain_http: bool,
) -> anyhow::Result<ExitCode> {
    let component =
        std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    if !is_component(&component) {
        anyhow::bail!(
            "{} is not a WebAssembly component (a core module, or not wasm at all); build it as a component (`paddock build`)",
            module.display()
        );
    }
    let parsed = paddock::oci::parse_reference(reference)?;
    let credentials = DockerConfig::of_user()?;
    let plain = if plain_http {
        vec![parsed.registry().to_owned()]
    } else {
        Vec::new()
    };
    let registries = Registries::new(plain, PullLimits::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pinned = runtime.block_on(registries.push(
        component,
        reference,
        &credentials.auth_for(reference),
    ))?;
    println!("{pinned}");
    Ok(ExitCode::SUCCESS)
}

/// Whether `bytes` start as a component does: the wasm magic, then the
/// component layer's version (`0x0d`, layer 1).
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_components_are_pushed() {
        assert!(is_component(b"\0asm\x0d\x00\x01\x00rest"));
        assert!(!is_component(b"\0asm\x01\x00\x00\x00core module"));
        assert!(!is_component(b"not wasm"));
    }
}
