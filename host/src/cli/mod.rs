//! Command-line interface: argument parsing and the subcommands.

mod build;
mod guest;
mod new;
mod promote;
mod push;
mod rbac;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use paddock::wasm::{EngineOptions, Limits, WasmEngine};

/// Paddock runs Kubernetes controllers as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "paddock", version, about)]
pub struct Cli {
    /// More logging (-v, -vv); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Where compiled components are cached. The directory must not be
    /// writable by untrusted users: its artifacts are loaded as native code.
    /// Default: $PADDOCK_CACHE_DIR, else the user cache dir's `paddock/components`.
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Do not read or write the compile cache.
    #[arg(long, global = true)]
    pub no_cache: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one reconcile of a guest offline, against an object and a cache
    /// made of YAML files, and print the actions it answers with.
    Test(guest::TestArgs),
    /// Print what a guest watches.
    Describe(guest::DescribeArgs),
    /// Run the controllers of a controllers file against a cluster.
    Run(run::RunArgs),
    /// Start the embedded cluster and run the controllers against it.
    Dev(run::DevArgs),
    /// Show the controllers of a running host: phase, module digest, queue
    /// depth, last error.
    Status(status::StatusArgs),
    /// Print the definitions of the `WasmController` and
    /// `ClusterWasmController` custom resources (as in deploy/crds.yaml).
    Crd,
    /// Create a guest project in Rust, Python or JavaScript: the contract,
    /// the SDK, one fixture; it builds and passes `paddock test` as it is.
    New(new::NewArgs),
    /// Build a guest project (as `paddock new` makes it) into a component.
    Build(build::BuildArgs),
    /// Make a controller's shadow candidate its live version, in the
    /// controllers file (--config) or in its WasmController resource.
    Promote(promote::PromoteArgs),
    /// Publish a component to an OCI registry (the wasm artifact layout),
    /// for controllers that name it by `image`.
    Push(push::PushArgs),
    /// Print the ClusterRole, Roles and bindings the host's own
    /// ServiceAccount needs for a controllers file and/or the cluster's
    /// controller resources.
    Rbac(rbac::RbacArgs),
}

/// Output formats, as kubectl's `-o`.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// YAML.
    #[default]
    Yaml,
    /// JSON, pretty-printed.
    Json,
}

/// Sandbox limits given on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Memory cap of the guest, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub memory_mib: u64,

    /// Wall-clock deadline of one call into the guest, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub deadline_ms: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits::default()
            .memory_bytes(self.memory_mib.saturating_mul(1024 * 1024))
            .deadline(Duration::from_millis(self.deadline_ms))
    }
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let command = match self.command {
            Command::New(args) => return new::new(args),
            Command::Build(args) => return build::build(args),
            Command::Push(args) => return push::push(args),
            Command::Status(args) => return status::status(args),
            Command::Rbac(args) => return rbac::rbac(args),
            Command::Promote(args) => return promote::promote(args),
            Command::Crd => {
                print!("{}", paddock::crd::definitions_yaml());
                return Ok(ExitCode::SUCCESS);
            }
            command => command,
        };
        let cache_dir = match (self.no_cache, self.cache_dir) {
            (true, _) => None,
            (false, Some(dir)) => Some(dir),
            (false, None) => EngineOptions::default().cache_dir,
        };
        let engine = WasmEngine::new(EngineOptions::default().cache_dir(cache_dir))?;
        match command {
            Command::Test(args) => guest::test(&engine, args),
            Command::Describe(args) => guest::describe(&engine, args),
            Command::Run(args) => run::run(&engine, args),
            Command::Dev(args) => run::dev(&engine, args),
            Command::New(_)
            | Command::Build(_)
            | Command::Push(_)
            | Command::Status(_)
            | Command::Rbac(_)
            | Command::Promote(_)
            | Command::Crd => {
                unreachable!("handled before the engine starts")
            }
        }
    }
}

/// Prints a value in the chosen format.
fn print(value: &impl serde::Serialize, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => serde_saphyr::to_string(value)?,
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
    };
    print!("{text}");
    Ok(())
}
