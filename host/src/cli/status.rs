//! `paddock status`: what a running host's `/status` endpoint says, as a
//! table (or YAML/JSON).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use paddock::ops::StatusReport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `paddock status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The host's operations endpoint (`paddock run --ops-addr`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    addr: SocketAddr,

    /// Output: a table (default), yaml or json.
    #[arg(short, long, value_name = "FORMAT")]
    output: Option<super::Format>,

    /// Instead of the table: what the shadow candidate of controller NAME
    /// found (agreement, differences by kind, and the latest differences
    /// as diffs of the live and the candidate answers).
    #[arg(long, value_name = "NAME")]
    shadow: Option<String>,
}

/// How long to wait for the host.
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let body = runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, get(args.addr, "/status")).await })
        .with_context(|| format!("{} did not answer within {TIMEOUT:?}", args.addr))?
        .with_context(|| {
            format!(
                "cannot read the status of the host at {}; is `paddock run` running with --ops-addr {}?",
                args.addr, args.addr
            )
        })?;
    let report: StatusReport = serde_json::from_str(&body).with_context(|| {
        format!(
            "{} answered /status with something else than a status report",
            args.addr
        )
    })?;
    if let Some(name) = &args.shadow {
        return shadow(&report, name, args.output);
    }
    match args.output {
        Some(format) => super::print(&report, format)?,
        None => print!("{}", table(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what a controller's shadow candidate found.
fn shadow(
    report: &StatusReport,
    name: &str,
    output: Option<super::Format>,
) -> anyhow::Result<ExitCode> {
    let Some(controller) = report
        .controllers
        .iter()
        .find(|controller| controller.status.name == name)
    else {
        let names: Vec<&str> = report
            .controllers
            .iter()
            .map(|controller| controller.status.name.as_str())
            .collect();
        bail!(
            "the host runs no controller `{name}`; it runs: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    };
    let Some(shadow) = controller
        .running
        .as_ref()
        .and_then(|running| running.shadow.as_ref())
    else {
        bail!(
            "controller `{name}` has no shadow candidate; declare one under `shadow:` in its controllers-file entry or `spec.shadow` of its resource"
        );
    };
    if let Some(format) = output {
        super::print(shadow, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "controller {name}: live {} / candidate {}",
        controller
            .status
            .digest
            .as_deref()
            .map_or("-", |digest| &digest[..digest.len().min(12)]),
        &shadow.digest[..shadow.digest.len().min(12)]
    );
    println!(
        "agreement {} ({} of {} compared; {} skipped)",
        shadow.agreement(),
        shadow.agreed,
        shadow.compared,
        shadow.skipped
    );
    if shadow.watches_differ {
        println!("the candidate declares other watches; it is asked only about the live version's");
    }
    if shadow.unrecorded_reads > 0 {
        println!(
            "{} candidate reads were not made by the live version and were answered from the live cache",
            shadow.unrecorded_reads
        );
    }
    for (kind, count) in &shadow.differences {
        println!("  {kind}: {count}");
    }
    for sample in &shadow.samples {
        println!(
            "\n{} {} {} (resourceVersion {}): {}",
            sample.at, sample.call, sample.object, sample.resource_version, sample.difference
        );
        print!("{}", sample.diff);
    }
    Ok(ExitCode::SUCCESS)
}

/// One HTTP/1.0 GET; the body of a 200 answer.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response).context("the answer is not UTF-8")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the answer is not HTTP")?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        bail!("{path} answered {}", head.lines().next().unwrap_or(head));
    }
    Ok(body.to_owned())
}

/// The report as a kubectl-style table.
fn table(report: &StatusReport) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "PHASE".to_owned(),
        "IDENTITY".to_owned(),
        "DIGEST".to_owned(),
        "RELOADS".to_owned(),
        "QUEUE".to_owned(),
        "RECONCILES".to_owned(),
        "ERRORS".to_owned(),
        "DENIED".to_owned(),
        "LIMITS".to_owned(),
        "LAST ERROR".to_owned(),
    ]];
    for controller in &report.controllers {
        let status = &controller.status;
        let running = controller.running.as_ref();
        let last_error = [
            status.last_reload_error.as_ref(),
            running.and_then(|running| running.last_error.as_ref()),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|error| error.at)
        .map(|error| {
            format!(
                "{}: {}",
                error.at.strftime("%H:%M:%S"),
                one_line(&error.message)
            )
        })
        .unwrap_or_default();
        rows.push([
            status.name.clone(),
            format!("{:?}", status.phase),
            status.identity.clone(),
            status
                .digest
                .as_deref()
                .map(|digest| digest[..digest.len().min(12)].to_owned())
                .unwrap_or_else(|| "-".to_owned()),
            status.reloads.to_string(),
            running.map_or("-".to_owned(), |running| {
                (running.queue_depth + running.waiting + running.in_flight).to_string()
            }),
            running.map_or("-".to_owned(), |running| running.reconciles.to_string()),
            running.map_or("-".to_owned(), |running| {
                (running.guest_errors + running.action_errors).to_string()
            }),
            running.map_or("-".to_owned(), |running| {
                (running.denied + running.cache_denied).to_string()
            }),
            running.map_or("-".to_owned(), |running| {
                running.limit_hits.total().to_string()
            }),
            last_error,
        ]);
    }
    let widths: Vec<usize> = (0..11)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[column]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for (source, status) in &report.sources {
        if let Some(error) = &status.error {
            out.push_str(&format!(
                "\nsource {source} cannot be used (the controllers it declared keep running): {}\n",
                one_line(&error.message)
            ));
        }
    }
    for informer in &report.informers {
        if let Some(error) = &informer.error {
            out.push_str(&format!(
                "\ninformer {} cannot reach the API server: {}\n",
                informer.informer,
                one_line(error)
            ));
        }
    }
    if let Some(ring) = &report.ring {
        out.push_str(&ring_lines(ring));
    }
    if let Some(why) = &report.not_ready {
        out.push_str(&format!("\nnot ready: {}\n", one_line(why)));
    }
    out
}

/// The ring this host joined: who works, the members, the hand-overs.
fn ring_lines(ring: &paddock::replication::RingStatus) -> String {
    let role = match (ring.active, ring.joining) {
        (true, _) => "working",
        (false, true) => "joining",
        (false, false) => "standing by",
    };
    let mut out = match ring.mode {
        paddock::replication::Mode::Leader => format!(
            "\nring {} (leader mode, Leases in {}): this host {} is {role}; leader {}; took over {} times, lost the Lease {} times\n",
            ring.ring,
            ring.namespace,
            ring.identity,
            ring.leader.as_deref().unwrap_or("none"),
            ring.acquired,
            ring.lost,
        ),
        paddock::replication::Mode::Sharded => format!(
            "\nring {} (sharded mode, Leases in {}): this host {} is {role}; joined {} times, lost its Lease {} times, its share changed {} times\n",
            ring.ring, ring.namespace, ring.identity, ring.acquired, ring.lost, ring.handovers,
        ),
    };
    let members: Vec<String> = ring
        .members
        .iter()
        .map(|member| match ring.shares.get(&member.identity) {
            Some(share) => format!("{} ({share} objects)", member.identity),
            None => member.identity.clone(),
        })
        .collect();
    out.push_str(&format!(
        "members ({}): {}\n",
        members.len(),
        members.join(", ")
    ));
    if let Some(error) = &ring.error {
        out.push_str(&format!("ring: {}\n", one_line(error)));
    }
    out
}

/// A message on one line, at most 120 characters.
fn one_line(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 120 {
        let cut: String = line.chars().take(117).collect();
        format!("{cut}...")
    } else {
        line
    }
}
