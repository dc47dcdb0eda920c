//! `paddock test` and `paddock describe`: working with one guest offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;
use paddock::harness::{self, Case, Declared, FixtureCache};
use paddock::kinds::ServedKinds;
use paddock::record;
use paddock::wasm::{Change, Clock, Instances, LoadOptions, WasmEngine};

use super::{Format, LimitArgs, print};

/// Whether the object exists, on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChangeArg {
    /// The object exists.
    Applied,
    /// The object was deleted (its last known state is given).
    Deleted,
}

/// Whether instances are reused, on the command line.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum InstancesArg {
    /// An instance serves many calls of the guest (the default).
    #[default]
    Reused,
    /// Every call gets a fresh instance.
    FreshPerCall,
}

impl From<InstancesArg> for Instances {
    fn from(instances: InstancesArg) -> Self {
        match instances {
            InstancesArg::Reused => Self::Reused,
            InstancesArg::FreshPerCall => Self::FreshPerCall,
        }
    }
}

/// Arguments of `paddock test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The guest component (`.wasm`).
    module: PathBuf,

    /// The object to reconcile (YAML or JSON, one object); with --map, the
    /// changed object to map.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["fixtures", "replay"])]
    object: Option<PathBuf>,

    /// Call `map` instead of `reconcile`: print the primary objects the
    /// guest names for the changed --object, reading --cache, as a `call:
    /// map` fixture's `expected.yaml` holds them.
    #[arg(long, requires = "object", conflicts_with_all = ["change", "attempt"])]
    map: bool,

    /// Instead of --object: replay a recording (`paddock run --record`):
    /// a controller's folder, or one of its .jsonl files. Every recorded
    /// call is made again with the recorded object, cache answers and
    /// clock, and its result compared with the recorded one; exit code 1
    /// on any difference unless --allow-diff.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["object", "fixtures", "cache", "now"])]
    replay: Option<PathBuf>,

    /// With --replay: exit 0 even when results differ.
    #[arg(long, requires = "replay")]
    allow_diff: bool,

    /// Instead of --object: run fixture cases (folders holding
    /// `object.yaml`, optional `cache/` and `case.yaml`, and `expected.yaml`)
    /// and check each outcome against `expected.yaml`, printing a diff of
    /// each failure. A folder of case folders runs them all. A case whose
    /// `case.yaml` says `call: map` maps `object.yaml` and expects
    /// `primaries:`.
    #[arg(long = "fixture", value_name = "DIR", conflicts_with_all = ["object", "cache", "now", "replay"])]
    fixtures: Vec<PathBuf>,

    /// A folder of YAML files whose objects the guest's cache reads see.
    #[arg(long = "cache", value_name = "DIR")]
    cache: Option<PathBuf>,

    /// A YAML file of CustomResourceDefinitions (other objects are
    /// skipped); repeatable. Every action must target a kind served at its
    /// apiVersion: a built-in kind, one of these, or a custom kind the
    /// guest watches or reads. Any other is a warning with --object, and
    /// fails a fixture case.
    #[arg(long = "crd", value_name = "FILE", conflicts_with = "replay")]
    crds: Vec<PathBuf>,

    /// Whether the object exists or was deleted.
    #[arg(long, value_enum, default_value = "applied")]
    change: ChangeArg,

    /// The attempt number handed to the guest (0: first attempt).
    #[arg(long, default_value_t = 0)]
    attempt: u32,

    /// Stop the guest's wall clock at this RFC 3339 instant, for
    /// reproducible output (e.g. 2025-01-01T00:00:00Z).
    #[arg(long, value_name = "INSTANT")]
    now: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: Format,

    /// Whether the guest's instances are reused across calls.
    #[arg(long, value_enum, default_value = "reused")]
    instances: InstancesArg,

    #[command(flatten)]
    limits: LimitArgs,
}

/// Arguments of `paddock describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// The guest component (`.wasm`).
    module: PathBuf,

    /// Output format.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: Format,
}

/// Runs one reconcile and prints the outcome; exit code 1 on a guest error.
/// With `--fixture`, runs and checks fixture cases; exit code 1 if any fails.
pub fn test(engine: &WasmEngine, args: TestArgs) -> anyhow::Result<ExitCode> {
    if let Some(recording) = &args.replay {
        return replay(engine, &args, recording);
    }
    let Some(object_path) = &args.object else {
        return test_fixtures(engine, &args);
    };
    let clock = match &args.now {
        Some(now) => Clock::Fixed(
            harness::parse_instant(now)
                .map_err(anyhow::Error::msg)
                .context("option --now")?,
        ),
        None => Clock::Real,
    };
    let object = harness::read_object(object_path)?;
    let cache = match &args.cache {
        Some(dir) => FixtureCache::from_dir(dir)?,
        None => FixtureCache::default(),
    };
    let guest = engine.load(
        &args.module,
        LoadOptions::default()
            .limits(args.limits.limits())
            .clock(clock)
            .instances(args.instances.into()),
    )?;
    // The guest reads only the kinds it declares, as on a cluster.
    let cache = Arc::new(Declared::new(cache, guest.info()));
    let kinds = ServedKinds::offline(&args.crds)?.with_declared(guest.info());
    let answered = if args.map {
        guest
            .map(&guest.projections().narrow(object.to_string()), cache)
            .map(|primaries| print(&harness::Primaries::new(primaries), args.output))
    } else {
        let change = match args.change {
            ChangeArg::Applied => Change::Applied,
            ChangeArg::Deleted => Change::Deleted,
        };
        guest
            .reconcile(
                &guest.projections().narrow(object.to_string()),
                change,
                args.attempt,
                cache,
            )
            .map(|outcome| {
                for target in kinds.unserved_targets(&outcome) {
                    eprintln!("warning: {target}");
                }
                print(&outcome, args.output)
            })
    };
    match answered {
        Ok(printed) => {
            printed?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {:#}", anyhow::Error::new(error));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs fixture cases and reports each as passed or failed, with a diff of
/// the expected and actual outcomes of a failure.
fn test_fixtures(engine: &WasmEngine, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let mut cases = Vec::new();
    for dir in &args.fixtures {
        if dir.join("object.yaml").is_file() {
            cases.push(Case::load(dir)?);
        } else {
            cases.extend(Case::load_all(dir)?);
        }
    }
    let kinds = ServedKinds::offline(&args.crds)?;
    let mut failed = 0;
    for case in &cases {
        let guest = engine.load(
            &args.module,
            LoadOptions::default()
                .limits(args.limits.limits())
                .clock(case.clock)
                .instances(args.instances.into()),
        )?;
        let actual = case.actual(&guest);
        let unserved = kinds
            .with_declared(guest.info())
            .unserved_targets_in(&actual);
        if case.passes(&actual) && unserved.is_empty() {
            println!("ok      {}", case.dir.display());
        } else {
            failed += 1;
            println!("FAILED  {}", case.dir.display());
            for target in &unserved {
                println!("  {target}");
            }
            let expected = serde_saphyr::to_string(&case.expected)?;
            let got = serde_saphyr::to_string(&actual)?;
            print!(
                "{}",
                similar::TextDiff::from_lines(&expected, &got)
                    .unified_diff()
                    .context_radius(3)
                    .header("expected.yaml", "got")
            );
        }
    }
    println!("{} passed, {failed} failed", cases.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Replays a recording against the module and reports each call as the
/// same or different, with a diff of a difference, and a summary.
fn replay(engine: &WasmEngine, args: &TestArgs, recording: &Path) -> anyhow::Result<ExitCode> {
    let recorded = record::replay::read(recording)?;
    let guest = engine.load(
        &args.module,
        LoadOptions::default()
            .limits(args.limits.limits())
            .instances(args.instances.into()),
    )?;
    let mut digests: Vec<&str> = recorded.iter().map(|r| r.entry.digest.as_str()).collect();
    digests.sort_unstable();
    digests.dedup();
    let short = |digest: &str| digest[..digest.len().min(12)].to_owned();
    println!(
        "replaying {} recorded calls of controller {} (module {}) against {} ({})",
        recorded.len(),
        recorded[0].entry.controller,
        digests
            .iter()
            .map(|d| short(d))
            .collect::<Vec<_>>()
            .join(", "),
        args.module.display(),
        short(guest.digest()),
    );
    let mut differences: BTreeMap<String, usize> = BTreeMap::new();
    let mut unrecorded = 0;
    for call in &recorded {
        let replayed = record::replay::replay(&guest, &call.entry);
        let what = format!(
            "{} {}",
            match call.entry.call {
                record::CallKind::Reconcile => "reconcile",
                record::CallKind::Map => "map",
            },
            call.entry.object_ref()
        );
        if replayed.unrecorded > 0 {
            unrecorded += 1;
        }
        match replayed.comparison.difference {
            None => println!("same     {what} ({})", call.location),
            Some(difference) => {
                let kind = difference.name("recorded", "replayed");
                println!("DIFFERS  {what} ({}): {kind}", call.location);
                print!("{}", replayed.comparison.diff);
                *differences.entry(kind).or_default() += 1;
            }
        }
    }
    let differ: usize = differences.values().sum();
    let kinds: Vec<String> = differences
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    println!(
        "{} calls replayed: {} same, {differ} differ{}",
        recorded.len(),
        recorded.len() - differ,
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    );
    if unrecorded > 0 {
        println!(
            "{unrecorded} calls read from the cache what the recording does not hold (read as absent): \
             the replayed module reads other objects than the recorded one"
        );
    }
    Ok(if differ == 0 || args.allow_diff {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints what a guest watches.
pub fn describe(engine: &WasmEngine, args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let guest = engine.load(&args.module, LoadOptions::default())?;
    print(guest.info(), args.output)?;
    Ok(ExitCode::SUCCESS)
}
