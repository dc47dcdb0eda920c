//! The `paddock` command.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    install_tracing(cli.verbose);
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default filter, which keeps
/// wasmtime and cranelift quiet.
fn install_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,paddock=info",
        1 => "info,paddock=debug,wasmtime=warn,cranelift=warn",
        _ => "debug,wasmtime=info,cranelift=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
