//! Errors of loading a guest and of calling into it.

use std::path::PathBuf;
use std::time::Duration;

use crate::actions::MalformedOutput;

/// A guest that could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the module {}", path.display())]
    Read {
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not WebAssembly.
    #[error(
        "{} is not a WebAssembly component (it does not start with the `\\0asm` magic); \
         build the guest for wasm32-wasip2 and load the `.wasm` file",
        path.display()
    )]
    NotWasm {
        /// The module file.
        path: PathBuf,
    },
    /// The file is a core WebAssembly module rather than a component.
    #[error(
        "{} is a core WebAssembly module, not a component; build the guest for the \
         wasm32-wasip2 target (or wrap it with `wasm-tools component new`)",
        path.display()
    )]
    CoreModule {
        /// The module file.
        path: PathBuf,
    },
    /// The component did not compile.
    #[error("{} does not compile", path.display())]
    Compile {
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: wasmtime::Error,
    },
    /// The component does not export the whole `controller` world.
    #[error(
        "{} does not implement the paddock:controller/controller world: it does not \
         export {}; export them (with the Rust SDK: `paddock_guest::export_controller!`)",
        path.display(),
        missing.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
    )]
    MissingExports {
        /// The module file.
        path: PathBuf,
        /// The names of the missing exports.
        missing: Vec<String>,
    },
    /// The component imports something the host does not provide.
    #[error(
        "{} imports `{import}`, which Paddock does not provide; a guest may import only \
         paddock:controller/cache, paddock:controller/log and WASI 0.2",
        path.display()
    )]
    UnsupportedImport {
        /// The module file.
        path: PathBuf,
        /// The import's name.
        import: String,
    },
    /// The component's imports or exports do not match the contract's types
    /// (for example a guest built against another version of the WIT).
    #[error("{} does not match the paddock:controller@0.1 contract", path.display())]
    Contract {
        /// The module file.
        path: PathBuf,
        /// What wasmtime found.
        #[source]
        source: wasmtime::Error,
    },
    /// `describe` failed.
    #[error("calling `describe` of {} failed", path.display())]
    Describe {
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<GuestError>,
    },
    /// `describe` answered something unusable.
    #[error("`describe` of {} answered an invalid description: {problem}", path.display())]
    InvalidInfo {
        /// The module file.
        path: PathBuf,
        /// What is wrong, naming the field.
        problem: String,
    },
}

/// A call into a guest that did not succeed. Each variant names the guest.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest answered with a transient error: retry with backoff.
    #[error("guest `{guest}` failed (transient): {message}")]
    Transient {
        /// The guest's name.
        guest: String,
        /// Its message.
        message: String,
    },
    /// The guest answered with a permanent error: do not retry until the
    /// object changes.
    #[error("guest `{guest}` failed (permanent): {message}")]
    Permanent {
        /// The guest's name.
        guest: String,
        /// Its message.
        message: String,
    },
    /// The call ran past the guest's deadline and was interrupted.
    #[error("guest `{guest}` ran past its deadline of {} ms and was stopped", deadline.as_millis())]
    Deadline {
        /// The guest's name.
        guest: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The guest tried to grow its memory past its cap.
    #[error(
        "guest `{guest}` exceeded its memory limit of {limit} bytes (it asked for {requested} bytes)"
    )]
    MemoryLimit {
        /// The guest's name.
        guest: String,
        /// The cap.
        limit: u64,
        /// The size it asked for.
        requested: u64,
    },
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("guest `{guest}` trapped{}", last_output_line(output))]
    Trap {
        /// The guest's name.
        guest: String,
        /// What the guest printed before trapping (a panic message, say).
        output: String,
        /// The trap.
        #[source]
        source: wasmtime::Error,
    },
    /// The guest answered with output that breaks the contract.
    #[error("guest `{guest}` returned malformed output")]
    Malformed {
        /// The guest's name.
        guest: String,
        /// Which action and field.
        #[source]
        source: MalformedOutput,
    },
    /// The guest answered more than its limits allow; nothing of the
    /// answer is performed.
    #[error("guest `{guest}` {problem} (limits.{limit})")]
    OutputLimit {
        /// The guest's name.
        guest: String,
        /// The limit, as the controller's `limits` field names it.
        limit: &'static str,
        /// How far the answer went.
        problem: String,
    },
}

impl GuestError {
    /// Whether retrying without a change to the object is pointless.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }

    /// A short machine-readable name of the failure, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::Permanent { .. } => "permanent",
            Self::Deadline { .. } => "deadline_exceeded",
            Self::MemoryLimit { .. } => "memory_limit_exceeded",
            Self::Trap { .. } => "trap",
            Self::Malformed { .. } => "malformed_output",
            Self::OutputLimit { .. } => "output_limit_exceeded",
        }
    }
}

/// The gist of what a guest printed before trapping: the panic message of a
/// Rust guest, else its last line.
fn last_output_line(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("note: run with"))
        .collect();
    let panic = lines.iter().rposition(|line| line.contains("panicked at"));
    let gist = match panic {
        Some(at) if at + 1 < lines.len() => format!("panicked: {}", lines[at + 1..].join(" ")),
        _ => match lines.last() {
            Some(line) => format!("printed: {line}"),
            None => return String::new(),
        },
    };
    format!(" after it {gist}")
}
