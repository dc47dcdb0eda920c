//! The controllers file: which guests to run, with what grant, limits and
//! queue settings. Validated at load; errors name the file, the entry and
//! the field.
//!
//! ```yaml
//! manifests: [crds/app.yaml]          # applied by `paddock dev` first
//! controllers:
//! - name: replica-floor
//!   module: guests/replica_floor.wasm # relative to this file; or, instead:
//!   # image: registry.example.com/team/replica-floor:v1  # an OCI image
//!   # pollSeconds: 60                 # with a tag: follow it; 0: never
//!   namespaces: []                    # empty: cluster-wide
//!   grant:
//!   - apiGroups: [apps]
//!     resources: [deployments, deployments/scale]
//!     verbs: [get, list, watch, patch]
//!   - apiGroups: [events.k8s.io]
//!     resources: [events]
//!     verbs: [create, patch]
//!   limits: {memoryMiB: 64, deadlineMs: 250, concurrency: 2}
//!   queue: {baseDelayMs: 5, maxDelayMs: 1000000, qps: 10, burst: 100}
//!   resyncSeconds: 0                  # re-queue everything periodically; 0: never
//!   instances: reused                 # or fresh-per-call
//!   serviceAccount: shop/replica-floor  # act as it; absent: as the host
//!   shadow:                           # a candidate version, compared, never acting
//!     module: guests/replica_floor_next.wasm  # or `image:`
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::grants::{Grant, Rule};
use crate::queue::QueueConfig;
use crate::wasm::{Instances, Limits};

/// The whole controllers file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllersFile {
    /// Manifests (YAML, CRDs first) that `paddock dev` applies to the
    /// embedded cluster before it starts the controllers; relative paths are
    /// relative to the controllers file.
    #[serde(default)]
    pub manifests: Vec<PathBuf>,
    /// The guests to run.
    pub controllers: Vec<ControllerSpec>,
}

/// A file of `manifests`, read.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file.
    pub path: PathBuf,
    /// Its objects, in order.
    pub objects: Vec<serde_json::Value>,
}

/// One guest to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControllerSpec {
    /// A unique name: a DNS label (lower-case letters, digits and `-`).
    pub name: String,
    /// The component file; relative paths are relative to the controllers
    /// file. Exactly one of `module` and `image`.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// The component as an OCI image in the wasm artifact layout
    /// (`registry/repository:tag` or `...@sha256:<digest>`), pulled with
    /// the credentials of the host's Docker config. Exactly one of
    /// `module` and `image`.
    #[serde(default)]
    pub image: Option<String>,
    /// With a tag in `image`: check it this often, in seconds, and load
    /// the manifest it names when it changes; 0 (the default): never.
    #[serde(default)]
    pub poll_seconds: u64,
    /// The namespaces the guest works in; empty for all namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// What the guest may read and do.
    pub grant: Vec<Rule>,
    /// Sandbox and concurrency limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Work queue settings (client-go's defaults when absent).
    #[serde(default)]
    pub queue: QueueConfig,
    /// Re-queue every primary object this often, in seconds, even when
    /// nothing changed; 0 (the default) never does.
    #[serde(default)]
    pub resync_seconds: u64,
    /// `reused` (the default): an instance serves the guest's next call
    /// too; `fresh-per-call`: nothing survives from one call to the next.
    #[serde(default)]
    pub instances: Instances,
    /// The ServiceAccount the controller acts as, `namespace/name`: every
    /// API call made for it impersonates it, and its RBAC bounds the
    /// grant. Without one it acts as the host.
    #[serde(default)]
    pub service_account: Option<String>,
    /// A candidate version run beside this one on every call, whose
    /// answers are compared with the live ones and never acted upon.
    #[serde(default)]
    pub shadow: Option<ShadowSpec>,
}

impl ControllerSpec {
    /// The module files it names: its module's and its shadow candidate's
    /// (an image names none).
    pub fn module_files(&self) -> impl Iterator<Item = &Path> {
        let shadow = self
            .shadow
            .as_ref()
            .and_then(|shadow| shadow.module.as_deref());
        self.module.as_deref().into_iter().chain(shadow)
    }
}

/// The candidate of a shadow run: a module file or an image, exactly one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShadowSpec {
    /// The component file; relative paths are relative to the controllers
    /// file.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// The component as an OCI image.
    #[serde(default)]
    pub image: Option<String>,
}

/// The `limits` of a controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSpec {
    /// Memory cap of one guest instance, in MiB. Default 64.
    #[serde(default = "default_memory_mib", rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Wall-clock deadline of one call, in milliseconds. Default 250.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// The most reconciles of this guest running at once. Default 1.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The most actions one reconcile may answer; a larger answer fails
    /// the reconcile and none of it is performed. Default 1000.
    #[serde(default = "default_max_actions")]
    pub max_actions: u32,
    /// The most bytes one answer may hold (its actions' JSON, or the
    /// references `map` returns). Default 4194304 (4 MiB).
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
    /// Longer log lines (from `log` or printed) are cut to this many
    /// bytes. Default 4096.
    #[serde(default = "default_max_log_line_bytes")]
    pub max_log_line_bytes: u32,
    /// Log bytes one call may write; its further lines are dropped and
    /// counted. Default 65536.
    #[serde(default = "default_max_log_bytes_per_call")]
    pub max_log_bytes_per_call: u64,
    /// Log lines per second for the whole controller (bursts of twice as
    /// many); further lines are dropped and counted. Default 100.
    #[serde(default = "default_log_lines_per_second")]
    pub log_lines_per_second: u32,
    /// The shortest `requeue-after`, in milliseconds; shorter requests
    /// wait this long. Default 1000.
    #[serde(default = "default_min_requeue_ms")]
    pub min_requeue_ms: u64,
}

fn default_max_actions() -> u32 {
    crate::wasm::DEFAULT_MAX_ACTIONS
}

fn default_max_answer_bytes() -> u64 {
    crate::wasm::DEFAULT_MAX_ANSWER_BYTES
}

fn default_max_log_line_bytes() -> u32 {
    crate::wasm::DEFAULT_MAX_LOG_LINE_BYTES
}

fn default_max_log_bytes_per_call() -> u64 {
    crate::wasm::DEFAULT_MAX_LOG_BYTES_PER_CALL
}

fn default_log_lines_per_second() -> u32 {
    crate::wasm::DEFAULT_LOG_LINES_PER_SECOND
}

fn default_min_requeue_ms() -> u64 {
    crate::wasm::DEFAULT_MIN_REQUEUE_AFTER.as_millis() as u64
}

fn default_memory_mib() -> u64 {
    64
}

fn default_deadline_ms() -> u64 {
    250
}

fn default_concurrency() -> usize {
    1
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            deadline_ms: default_deadline_ms(),
            concurrency: default_concurrency(),
            max_actions: default_max_actions(),
            max_answer_bytes: default_max_answer_bytes(),
            max_log_line_bytes: default_max_log_line_bytes(),
            max_log_bytes_per_call: default_max_log_bytes_per_call(),
            log_lines_per_second: default_log_lines_per_second(),
            min_requeue_ms: default_min_requeue_ms(),
        }
    }
}

impl LimitsSpec {
    /// The sandbox limits.
    pub fn sandbox(&self) -> Limits {
        Limits::default()
            .memory_bytes(self.memory_mib.saturating_mul(1024 * 1024))
            .deadline(Duration::from_millis(self.deadline_ms))
            .max_actions(self.max_actions)
            .max_answer_bytes(self.max_answer_bytes)
            .max_log_line_bytes(self.max_log_line_bytes)
            .max_log_bytes_per_call(self.max_log_bytes_per_call)
            .log_lines_per_second(self.log_lines_per_second)
            .min_requeue_after(Duration::from_millis(self.min_requeue_ms))
    }
}

impl ControllerSpec {
    /// The grant.
    pub fn grant(&self) -> Grant {
        Grant::new(self.grant.clone())
    }

    /// The ServiceAccount it acts as (checked at load, so one that does not
    /// read is `None` only for a spec that was never loaded).
    pub fn service_account(&self) -> Option<crate::identity::ServiceAccount> {
        self.service_account
            .as_deref()
            .and_then(|text| crate::identity::ServiceAccount::parse(text).ok())
    }
}

/// A controllers file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the controllers file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the right shape.
    #[error("{} is not a valid controllers file", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why (the file, line and column).
        #[source]
        source: Box<crate::yaml::YamlError>,
    },
    /// A file `manifests` names does not exist.
    #[error(
        "{}: field `manifests[{index}]`: {} does not exist; give the path of a YAML file of \
         objects to apply, relative to the controllers file, or remove the entry",
        path.display(),
        manifest.display()
    )]
    MissingManifest {
        /// The controllers file.
        path: PathBuf,
        /// The entry's position in `manifests`, from 0.
        index: usize,
        /// The manifest, resolved against the controllers file's folder.
        manifest: PathBuf,
    },
    /// A file `manifests` names is not YAML of Kubernetes objects.
    #[error(
        "{}: field `manifests[{index}]`: fix the manifest it names, or remove the entry",
        path.display()
    )]
    Manifest {
        /// The controllers file.
        path: PathBuf,
        /// The entry's position in `manifests`, from 0.
        index: usize,
        /// What is wrong with the manifest, naming it.
        #[source]
        source: Box<crate::harness::FixtureError>,
    },
    /// A field of one entry is invalid.
    #[error("{}: controller `{entry}`: field `{field}`: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The entry's name (or `#N` when it has none).
        entry: String,
        /// The field.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl ControllersFile {
    /// Reads and validates a controllers file; module and manifest paths
    /// come back resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates the text of a controllers file found at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut file: Self =
            crate::yaml::from_str(path, text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for manifest in &mut file.manifests {
            *manifest = base.join(&*manifest);
        }
        for controller in &mut file.controllers {
            if let Some(module) = &mut controller.module {
                *module = base.join(&*module);
            }
            if let Some(module) = controller
                .shadow
                .as_mut()
                .and_then(|shadow| shadow.module.as_mut())
            {
                *module = base.join(&*module);
            }
        }
        file.validate(path)?;
        Ok(file)
    }

    /// Reads every file `manifests` names, in order, each checked to hold
    /// Kubernetes objects: `paddock dev` reads them before it starts the
    /// embedded cluster. `path` is the controllers file's, for the errors.
    pub fn read_manifests(&self, path: &Path) -> Result<Vec<Manifest>, ConfigError> {
        self.manifests
            .iter()
            .enumerate()
            .map(|(index, manifest)| {
                if !manifest.is_file() {
                    return Err(ConfigError::MissingManifest {
                        path: path.to_owned(),
                        index,
                        manifest: manifest.clone(),
                    });
                }
                let objects = crate::harness::read_objects(manifest).map_err(|source| {
                    ConfigError::Manifest {
                        path: path.to_owned(),
                        index,
                        source: Box::new(source),
                    }
                })?;
                Ok(Manifest {
                    path: manifest.clone(),
                    objects,
                })
            })
            .collect()
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |entry: &str, field: &str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            entry: entry.to_owned(),
            field: field.to_owned(),
            problem,
        };
        let mut names = std::collections::HashSet::new();
        for (index, controller) in self.controllers.iter().enumerate() {
            let entry = if controller.name.is_empty() {
                format!("#{}", index + 1)
            } else {
                controller.name.clone()
            };
            if !is_dns_label(&controller.name) {
                return Err(invalid(
                    &entry,
                    "name",
                    "must be a DNS label: 1 to 63 lower-case letters, digits or `-`, \
                     starting and ending with a letter or digit"
                        .into(),
                ));
            }
            if !names.insert(controller.name.as_str()) {
                return Err(invalid(
                    &entry,
                    "name",
                    "is used by an earlier entry; names must be unique".into(),
                ));
            }
            check_module_source(
                controller.module.as_deref(),
                controller.image.as_deref(),
                "",
            )
            .map_err(|(field, problem)| invalid(&entry, &field, problem))?;
            if controller.module.is_some() && controller.poll_seconds > 0 {
                return Err(invalid(
                    &entry,
                    "pollSeconds",
                    "only used with `image`; a module file is watched for changes already".into(),
                ));
            }
            if let Some(shadow) = &controller.shadow {
                check_module_source(shadow.module.as_deref(), shadow.image.as_deref(), "shadow.")
                    .map_err(|(field, problem)| invalid(&entry, &field, problem))?;
            }
            check_settings(
                &controller.namespaces,
                &controller.grant,
                &controller.limits,
                &controller.queue,
            )
            .map_err(|(field, problem)| invalid(&entry, &field, problem))?;
            if let Some(account) = &controller.service_account {
                crate::identity::ServiceAccount::parse(account)
                    .map_err(|problem| invalid(&entry, "serviceAccount", problem))?;
            }
        }
        Ok(())
    }
}

/// Checks a module source: exactly one of a module file that exists and
/// an image reference that parses. On failure, the field (after `prefix`,
/// `shadow.` for a candidate) and the problem.
fn check_module_source(
    module: Option<&Path>,
    image: Option<&str>,
    prefix: &str,
) -> Result<(), (String, String)> {
    let what = if prefix.is_empty() {
        "guest"
    } else {
        "candidate"
    };
    match (module, image) {
        (Some(module), None) if !module.is_file() => Err((
            format!("{prefix}module"),
            format!(
                "{} does not exist; give the path of the {what}'s .wasm file, relative to the controllers file",
                module.display()
            ),
        )),
        (Some(_), None) => Ok(()),
        (None, Some(image)) => crate::oci::parse_reference(image)
            .map(|_| ())
            .map_err(|error| (format!("{prefix}image"), error.to_string())),
        (Some(_), Some(_)) | (None, None) => Err((
            format!("{prefix}module"),
            format!(
                "give exactly one of `{prefix}module` (the {what}'s .wasm file) and `{prefix}image` (an OCI image of it)"
            ),
        )),
    }
}

/// The text of a controllers file with controller `name`'s shadow
/// candidate promoted: its `module:` (or `image:`) line takes the
/// candidate's, and its `shadow:` block goes; everything else, comments
/// included, stays as written. The result is parsed and checked before it
/// is returned. Entries written in flow style (`{...}`) are not edited:
/// the error says what to change by hand.
pub fn promote_shadow(path: &Path, text: &str, name: &str) -> Result<String, ConfigError> {
    let invalid = |field: &str, problem: String| ConfigError::Invalid {
        path: path.to_owned(),
        entry: name.to_owned(),
        field: field.to_owned(),
        problem,
    };
    let file = ControllersFile::parse(path, text)?;
    let Some(entry) = file.controllers.iter().find(|entry| entry.name == name) else {
        let names: Vec<&str> = file.controllers.iter().map(|c| c.name.as_str()).collect();
        return Err(invalid(
            "name",
            format!(
                "no entry has this name; the file declares: {}",
                names.join(", ")
            ),
        ));
    };
    if entry.shadow.is_none() {
        return Err(invalid(
            "shadow",
            "the entry declares no shadow candidate to promote".into(),
        ));
    }
    let by_hand = |why: &str| {
        invalid(
            "shadow",
            format!(
                "cannot edit the file automatically ({why}); promote by hand: set the entry's \
                 `module:` (or `image:`) to the candidate's and remove its `shadow:` block"
            ),
        )
    };
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let is_name = |line: &str| {
        let body = line.trim_start().trim_start_matches('-').trim_start();
        body.strip_prefix("name:").is_some_and(|value| {
            let value = value.split(" #").next().unwrap_or_default().trim();
            value.trim_matches(|c| c == '"' || c == '\'') == name
        })
    };
    // The entry: from its `- ` line to the next line as little indented.
    let Some(name_line) = lines.iter().position(|line| is_name(line)) else {
        return Err(by_hand("its `name:` line was not found"));
    };
    let dash = (0..=name_line)
        .rev()
        .find(|&index| lines[index].trim_start().starts_with('-'))
        .ok_or_else(|| by_hand("its list item was not found"))?;
    let dash_indent = indent(lines[dash]);
    let field_indent = indent(lines[name_line])
        + if name_line == dash {
            lines[name_line].trim_start().len()
                - lines[name_line].trim_start()[1..].trim_start().len()
        } else {
            0
        };
    let end = (dash + 1..lines.len())
        .find(|&index| {
            let line = lines[index];
            !line.trim().is_empty()
                && !line.trim_start().starts_with('#')
                && indent(line) <= dash_indent
        })
        .unwrap_or(lines.len());
    let field_at = |index: usize, key: &str| {
        let line = lines[index];
        let body = if index == dash {
            line.trim_start()[1..].trim_start()
        } else {
            line.trim_start()
        };
        (index == dash || indent(line) == field_indent)
            && body
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
    };
    let Some(shadow) = (dash..end).find(|&index| field_at(index, "shadow")) else {
        return Err(by_hand("its `shadow:` line was not found"));
    };
    let shadow_end = (shadow + 1..end)
        .find(|&index| {
            let line = lines[index];
            !line.trim().is_empty() && indent(line) <= field_indent
        })
        .unwrap_or(end);
    let candidate = (shadow + 1..shadow_end)
        .find_map(|index| {
            let body = lines[index].trim_start();
            ["module", "image"].into_iter().find_map(|key| {
                let value = body.strip_prefix(key)?.strip_prefix(':')?.trim();
                (!value.is_empty()).then(|| (key, value.to_owned()))
            })
        })
        .ok_or_else(|| by_hand("the candidate's `module:` or `image:` line was not found"))?;
    let Some(live) =
        (dash..end).find(|&index| field_at(index, "module") || field_at(index, "image"))
    else {
        return Err(by_hand(
            "the entry's `module:` or `image:` line was not found",
        ));
    };
    let poll = (dash..end).find(|&index| field_at(index, "pollSeconds"));
    let mut edited: Vec<String> = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if (shadow..shadow_end).contains(&index) {
            continue;
        }
        if candidate.0 == "module" && poll == Some(index) {
            // A module file needs no polling; the field is refused with one.
            continue;
        }
        if index == live {
            let prefix_len = line.len() - line.trim_start().len();
            let prefix = if index == dash {
                let after_dash = &line.trim_start()[1..];
                format!(
                    "{}-{}",
                    &line[..prefix_len],
                    &after_dash[..after_dash.len() - after_dash.trim_start().len()]
                )
            } else {
                line[..prefix_len].to_owned()
            };
            edited.push(format!("{prefix}{}: {}", candidate.0, candidate.1));
            continue;
        }
        edited.push((*line).to_owned());
    }
    let mut result = edited.join("\n");
    if text.ends_with('\n') {
        result.push('\n');
    }
    let promoted = ControllersFile::parse(path, &result)?;
    let ok = promoted
        .controllers
        .iter()
        .find(|entry| entry.name == name)
        .is_some_and(|entry| entry.shadow.is_none());
    if !ok || promoted.controllers.len() != file.controllers.len() {
        return Err(by_hand("the edit would not leave the entry as intended"));
    }
    Ok(result)
}

/// Checks the settings every declaration of a controller has, wherever it
/// comes from; on failure, the field (as written in YAML) and the problem.
pub fn check_settings(
    namespaces: &[String],
    grant: &[Rule],
    limits: &LimitsSpec,
    queue: &QueueConfig,
) -> Result<(), (String, String)> {
    let invalid = |field: &str, problem: String| Err((field.to_owned(), problem));
    if let Some(namespace) = namespaces.iter().find(|ns| !is_dns_label(ns)) {
        return invalid(
            "namespaces",
            format!("`{namespace}` is not a valid namespace name"),
        );
    }
    if grant.is_empty() {
        return invalid(
            "grant",
            "is empty; a guest needs at least `list` and `watch` on what it watches".into(),
        );
    }
    for (rule_index, rule) in grant.iter().enumerate() {
        if let Err(problem) = rule.validate() {
            return invalid(&format!("grant[{rule_index}]"), problem);
        }
    }
    if limits.memory_mib == 0 || limits.memory_mib > 4096 {
        return invalid("limits.memoryMiB", "must be between 1 and 4096".into());
    }
    if limits.deadline_ms == 0 || limits.deadline_ms > 60_000 {
        return invalid("limits.deadlineMs", "must be between 1 and 60000".into());
    }
    if limits.concurrency == 0 || limits.concurrency > 256 {
        return invalid("limits.concurrency", "must be between 1 and 256".into());
    }
    if limits.max_actions == 0 {
        return invalid("limits.maxActions", "must be at least 1".into());
    }
    if limits.max_answer_bytes < 1024 {
        return invalid("limits.maxAnswerBytes", "must be at least 1024".into());
    }
    if limits.max_log_line_bytes < 80 {
        return invalid("limits.maxLogLineBytes", "must be at least 80".into());
    }
    if let Err(error) = queue.validate() {
        return invalid("queue", error.to_string());
    }
    Ok(())
}

/// Whether `name` is an RFC 1123 DNS label.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_module(dir: &Path) {
        std::fs::write(dir.join("guest.wasm"), b"\0asm").expect("write module");
    }

    fn parse(dir: &Path, text: &str) -> Result<ControllersFile, ConfigError> {
        ControllersFile::parse(&dir.join("controllers.yaml"), text)
    }

    const GOOD: &str = "controllers:
- name: floor
  module: guest.wasm
  grant:
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [list, watch]
";

    #[test]
    fn a_good_file_loads_with_defaults_and_resolved_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        let file = parse(dir.path(), GOOD).expect("valid");
        let controller = &file.controllers[0];
        assert_eq!(controller.module, Some(dir.path().join("guest.wasm")));
        assert_eq!(controller.limits, LimitsSpec::default());
        assert!(controller.namespaces.is_empty());
    }

    #[test]
    fn errors_name_the_file_entry_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        let error =
            parse(dir.path(), &GOOD.replace("name: floor", "name: Floor_1")).expect_err("bad name");
        let text = error.to_string();
        assert!(
            text.contains("controllers.yaml: controller `Floor_1`: field `name`"),
            "{text}"
        );

        let error = parse(dir.path(), &GOOD.replace("guest.wasm", "missing.wasm"))
            .expect_err("missing module");
        assert!(error.to_string().contains("field `module`"), "{error}");

        let both = GOOD.replace(
            "module: guest.wasm",
            "module: guest.wasm\n  image: 127.0.0.1:5000/floor:v1",
        );
        let error = parse(dir.path(), &both).expect_err("two sources");
        assert!(
            error.to_string().contains("exactly one of `module`"),
            "{error}"
        );
        let image = GOOD.replace("module: guest.wasm", "image: 127.0.0.1:5000/floor:v1");
        let file = parse(dir.path(), &image).expect("an image");
        assert_eq!(
            file.controllers[0].image.as_deref(),
            Some("127.0.0.1:5000/floor:v1")
        );
        let error = parse(
            dir.path(),
            &GOOD.replace("module: guest.wasm", "image: \"floor:\""),
        )
        .expect_err("bad reference");
        assert!(error.to_string().contains("field `image`"), "{error}");
        let error =
            parse(dir.path(), &format!("{GOOD}  pollSeconds: 30\n")).expect_err("polling a file");
        assert!(error.to_string().contains("field `pollSeconds`"), "{error}");

        let error = parse(
            dir.path(),
            &GOOD.replace("verbs: [list, watch]", "verbs: [list, steal]"),
        )
        .expect_err("bad verb");
        assert!(error.to_string().contains("field `grant[0]`"), "{error}");

        let error = parse(dir.path(), &format!("{GOOD}  limits: {{concurrency: 0}}\n"))
            .expect_err("zero concurrency");
        assert!(
            error.to_string().contains("field `limits.concurrency`"),
            "{error}"
        );

        let error = parse(dir.path(), &format!("{GOOD}  serviceAccount: floor\n"))
            .expect_err("a ServiceAccount without its namespace");
        let text = error.to_string();
        assert!(
            text.contains("field `serviceAccount`: `floor` is not `namespace/name`"),
            "{text}"
        );
    }

    #[test]
    fn a_service_account_is_read_as_namespace_slash_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        let file =
            parse(dir.path(), &format!("{GOOD}  serviceAccount: shop/floor\n")).expect("valid");
        assert_eq!(
            file.controllers[0].service_account(),
            Some(crate::identity::ServiceAccount::new("shop", "floor"))
        );
        assert_eq!(
            parse(dir.path(), GOOD).expect("valid").controllers[0].service_account(),
            None
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        let error = parse(dir.path(), &format!("{GOOD}  memory: 10\n")).expect_err("unknown field");
        let ConfigError::Parse { source, .. } = &error else {
            panic!("expected a parse error, got {error:?}");
        };
        let text = source.to_string();
        assert!(text.contains("unknown field `memory`"), "{text}");
        // The snippet is headed with the file, the line and the column.
        let place = format!("--> {}:8:3", dir.path().join("controllers.yaml").display());
        assert!(text.contains(&place), "{text}");
        assert!(!text.contains("<input>"), "{text}");
    }

    #[test]
    fn manifests_are_read_naming_the_field_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        let path = dir.path().join("controllers.yaml");
        let file = parse(
            dir.path(),
            &format!("manifests: [crds/app.yaml, app.yaml]\n{GOOD}"),
        )
        .expect("valid: manifests are read by `paddock dev` only");
        let error = file.read_manifests(&path).expect_err("missing");
        assert_eq!(
            error.to_string(),
            format!(
                "{}: field `manifests[0]`: {} does not exist; give the path of a YAML file of \
                 objects to apply, relative to the controllers file, or remove the entry",
                path.display(),
                dir.path().join("crds/app.yaml").display()
            )
        );

        std::fs::create_dir(dir.path().join("crds")).expect("mkdir");
        std::fs::write(
            dir.path().join("crds/app.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("app.yaml"), "kind: [unclosed\n").expect("write");
        let error = file.read_manifests(&path).expect_err("not YAML");
        let chain = crate::cluster::error_chain(&error);
        assert!(
            chain.starts_with(&format!(
                "{}: field `manifests[1]`: fix the manifest it names, or remove the entry: {} \
                 is not valid YAML",
                path.display(),
                dir.path().join("app.yaml").display()
            )),
            "{chain}"
        );
        assert!(
            chain.contains(&format!("--> {}:1:", dir.path().join("app.yaml").display())),
            "{chain}"
        );

        std::fs::write(
            dir.path().join("app.yaml"),
            "apiVersion: v1\nkind: ConfigMap\n",
        )
        .expect("write");
        let error = file.read_manifests(&path).expect_err("no name");
        assert!(
            crate::cluster::error_chain(&error).contains("document #1 is not a Kubernetes object"),
            "{error}"
        );

        std::fs::write(
            dir.path().join("app.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\n",
        )
        .expect("write");
        let manifests = file.read_manifests(&path).expect("both read");
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[1].objects[0]["kind"], "ConfigMap");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        let twice = format!("{GOOD}{}", GOOD.trim_start_matches("controllers:\n"));
        let error = parse(dir.path(), &twice).expect_err("duplicate");
        assert!(
            error.to_string().contains("names must be unique"),
            "{error}"
        );
    }

    #[test]
    fn promoting_a_shadow_edits_only_its_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_module(dir.path());
        std::fs::write(dir.path().join("next.wasm"), b"\0asm").expect("write");
        let text = "# the shop's controllers
controllers:
- name: other
  module: guest.wasm   # stays
  grant: [{apiGroups: [apps], resources: [deployments], verbs: [list, watch]}]
  shadow:
    module: next.wasm
- name: floor
  # the live version
  image: 127.0.0.1:5000/floor:v1
  pollSeconds: 30
  grant: [{apiGroups: [apps], resources: [deployments], verbs: [list, watch]}]
  shadow:          # trying the next one
    module: next.wasm
  limits: {concurrency: 2}
";
        let path = dir.path().join("controllers.yaml");
        let promoted = promote_shadow(&path, text, "floor").expect("promoted");
        assert_eq!(
            promoted,
            "# the shop's controllers
controllers:
- name: other
  module: guest.wasm   # stays
  grant: [{apiGroups: [apps], resources: [deployments], verbs: [list, watch]}]
  shadow:
    module: next.wasm
- name: floor
  # the live version
  module: next.wasm
  grant: [{apiGroups: [apps], resources: [deployments], verbs: [list, watch]}]
  limits: {concurrency: 2}
"
        );
        let error = promote_shadow(&path, &promoted, "floor").expect_err("no shadow now");
        assert!(error.to_string().contains("declares no shadow"), "{error}");
        let error = promote_shadow(&path, text, "nope").expect_err("no such entry");
        assert!(
            error
                .to_string()
                .contains("the file declares: other, floor"),
            "{error}"
        );
        let flow = "controllers:\n- {name: floor, module: guest.wasm, grant: [{apiGroups: [apps], resources: [deployments], verbs: [list, watch]}], shadow: {module: next.wasm}}\n";
        let error = promote_shadow(&path, flow, "floor").expect_err("flow style");
        assert!(error.to_string().contains("promote by hand"), "{error}");
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("replica-floor"));
        assert!(is_dns_label("a1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(""));
    }
}
