//! The one table of `cargo xtask bench`: every scenario's headline numbers
//! from `target/bench/*.json`, against the targets Paddock holds itself to,
//! with how far each is missed. Writes `target/bench/summary.json`.

use anyhow::Context;
use paddock_bench::process::workspace;
use serde_json::Value;

/// One line of the table.
struct Row {
    measure: String,
    value: f64,
    unit: &'static str,
    /// The target: `(at most?, bound)`.
    target: Option<(bool, f64)>,
}

impl Row {
    fn met(&self) -> Option<bool> {
        self.target.map(|(at_most, bound)| {
            if at_most {
                self.value <= bound
            } else {
                self.value >= bound
            }
        })
    }

    fn verdict(&self) -> String {
        match (self.target, self.met()) {
            (Some(_), Some(true)) => "met".into(),
            (Some((at_most, bound)), Some(false)) => {
                let by = if at_most {
                    self.value / bound
                } else {
                    bound / self.value
                };
                format!("missed ({by:.2}x)")
            }
            _ => String::new(),
        }
    }
}

fn read(name: &str) -> Option<Value> {
    let path = workspace()
        .join("target/bench")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn dispatch_ns(report: &Value, contender: &str) -> Option<f64> {
    report["rows"]
        .as_array()?
        .iter()
        .find(|row| row["contender"] == contender)?["nsPerCall"]
        .as_f64()
}

fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    let mut row =
        |measure: &str, value: Option<f64>, unit: &'static str, target: Option<(bool, f64)>| {
            match value {
                Some(value) => rows.push(Row {
                    measure: measure.to_owned(),
                    value,
                    unit,
                    target,
                }),
                None => missing.push(measure.to_owned()),
            }
        };
    let dispatch = read("dispatch").unwrap_or_default();
    let native = dispatch_ns(&dispatch, "native");
    let rust = dispatch_ns(&dispatch, "rust guest reconcile");
    let rust_whole = dispatch_ns(&dispatch, "rust guest reconcile, whole object");
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    row("dispatch: native, ns per reconcile", native, "ns", None);
    row(
        "dispatch: Rust guest, whole object / native",
        ratio(rust_whole, native),
        "x",
        Some((true, 1.05)),
    );
    row(
        "dispatch: Rust guest, projection / native (whole object)",
        ratio(rust, native),
        "x",
        Some((true, 0.5)),
    );
    row(
        "dispatch: native, lazy reads / native",
        ratio(dispatch_ns(&dispatch, "native, lazy reads"), native),
        "x",
        None,
    );
    row(
        "dispatch: webhook / Rust guest, whole object",
        ratio(dispatch_ns(&dispatch, "webhook"), rust_whole),
        "x",
        Some((false, 5.0)),
    );
    for (language, name) in [("Python", "python"), ("JavaScript", "js")] {
        row(
            &format!("dispatch: {language} guest, projection, µs per reconcile"),
            dispatch_ns(&dispatch, &format!("{name} guest reconcile")).map(|ns| ns / 1000.0),
            "µs",
            Some((true, 40.0)),
        );
        row(
            &format!("dispatch: {language} guest, whole object, µs per reconcile"),
            dispatch_ns(&dispatch, &format!("{name} guest reconcile, whole object"))
                .map(|ns| ns / 1000.0),
            "µs",
            Some((true, 60.0)),
        );
    }
    for (language, name, bound) in [
        ("Rust", "rust", 10.0),
        ("Python", "python", 200.0),
        ("JavaScript", "js", 200.0),
    ] {
        let instantiate = |field: &str| {
            dispatch["languages"].as_array().and_then(|languages| {
                languages.iter().find(|entry| entry["language"] == name)?[field].as_f64()
            })
        };
        row(
            &format!("dispatch: {language} fresh instance, µs"),
            instantiate("instantiateUs"),
            "µs",
            None,
        );
        row(
            &format!("dispatch: {language} fresh instance from a pool, µs"),
            instantiate("instantiatePooledUs"),
            "µs",
            Some((true, bound)),
        );
    }
    let convergence = read("convergence").unwrap_or_default();
    row(
        "convergence: Paddock / native (time, paired rounds)",
        convergence["paddockOverNative"].as_f64(),
        "x",
        Some((true, 1.0)),
    );
    row(
        "convergence: webhook / Paddock (time, paired rounds)",
        convergence["webhookOverPaddock"].as_f64(),
        "x",
        None,
    );
    row(
        "convergence: as a ServiceAccount / as the host (time, paired rounds)",
        convergence["serviceAccountOverPaddock"].as_f64(),
        "x",
        None,
    );
    let memory = read("memory").unwrap_or_default();
    row(
        "memory: each extra idle Rust guest controller",
        memory["paddockMiBPerController"].as_f64(),
        "MiB",
        Some((true, 0.5)),
    );
    row(
        "memory: each native controller process",
        memory["nativeMiBPerProcess"].as_f64(),
        "MiB",
        None,
    );
    let footprint = read("footprint").unwrap_or_default();
    row(
        "cache: Paddock bytes per object / served JSON",
        ratio(
            footprint["paddockBytesPerObject"].as_f64(),
            footprint["servedJsonBytesPerObject"].as_f64(),
        ),
        "x",
        Some((true, 1.0)),
    );
    row(
        "cache: Paddock / kube-runtime Store<DynamicObject>",
        ratio(
            footprint["paddockBytesPerObject"].as_f64(),
            footprint["kubeRuntimeBytesPerObject"].as_f64(),
        ),
        "x",
        None,
    );
    let reload = read("reload").unwrap_or_default();
    row(
        "reload: cached module, written to serving",
        reload["cached_ms"]["median"].as_f64(),
        "ms",
        Some((true, 50.0)),
    );
    row(
        "reload: uncached module, written to serving",
        reload["uncached_ms"]["median"].as_f64(),
        "ms",
        None,
    );
    let tenants = read("tenants").unwrap_or_default();
    row(
        "tenants: good tenant beside every attack / alone",
        tenants["ratio"].as_f64(),
        "x",
        Some((true, 2.0)),
    );
    row(
        "tenants: host RSS after the attack",
        tenants["rss_mib"]["after"].as_f64(),
        "MiB",
        None,
    );
    let startup = read("startup").unwrap_or_default();
    row(
        "start-up: to ready, 3 controllers, 10,000 objects",
        startup["seconds"].as_f64(),
        "s",
        Some((true, 2.0)),
    );
    let scaleout = read("scaleout").unwrap_or_default();
    row(
        "several hosts: fail-over, kill -9 to first reconcile",
        scaleout["failOverSeconds"].as_f64(),
        "s",
        scaleout["leaseDurationSeconds"]
            .as_f64()
            .map(|lease| (true, lease + 1.0)),
    );
    let shadow = read("shadow").unwrap_or_default();
    let shadow_ratio = |mode: &str| {
        shadow["rows"]
            .as_array()?
            .iter()
            .find(|row| row["mode"] == mode)?["liveLatencyRatio"]
            .as_f64()
    };
    row(
        "shadow: live latency, trapping candidate / alone",
        shadow_ratio("trapping"),
        "x",
        None,
    );
    row(
        "shadow: live latency, recorded / alone",
        shadow_ratio("record"),
        "x",
        None,
    );

    println!("\nPaddock benchmarks: headline numbers and targets");
    println!(
        "{:<52} {:>12} {:<4} {:>10}",
        "measure", "value", "", "target"
    );
    let mut json_rows = Vec::new();
    for row in &rows {
        let target = row.target.map_or(String::new(), |(at_most, bound)| {
            format!("{} {bound}", if at_most { "<=" } else { ">=" })
        });
        println!(
            "{:<52} {:>12.2} {:<4} {:>10} {}",
            row.measure,
            row.value,
            row.unit,
            target,
            row.verdict()
        );
        json_rows.push(serde_json::json!({
            "measure": row.measure, "value": row.value, "unit": row.unit,
            "target": target, "met": row.met(),
        }));
    }
    for measure in &missing {
        println!("{measure:<52} {:>12}", "not measured");
    }
    let out = workspace().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(
            &serde_json::json!({"rows": json_rows, "notMeasured": missing}),
        )?,
    )
    .context("writing target/bench/summary.json")?;
    Ok(())
}
