//! Helpers for benchmarks that run `paddock` and the baselines as
//! processes: where the binaries are, readiness, and resident memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The workspace root.
pub fn workspace() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or(manifest.clone(), Path::to_path_buf)
}

/// A release binary of the workspace (`cargo xtask bench` builds them):
/// `$PADDOCK_BENCH_BIN_DIR/<name>`, else `target/release/<name>`.
///
/// # Errors
/// When it is not built, with the command that builds it.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("PADDOCK_BENCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release"));
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing; build it with `cargo build --release --bins -p paddock -p paddock-bench` (`cargo xtask bench` does)",
            path.display()
        );
    }
    Ok(path)
}

/// A client from a kubeconfig file.
///
/// # Errors
/// When the file cannot be read or used.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    Ok(paddock::cluster::client(config)?)
}

/// A free port on 127.0.0.1.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The response to `GET path` on 127.0.0.1:`port`, if it answers.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// The status code of `GET path` on 127.0.0.1:`port`, if it answers.
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path)
        .await?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The body of `GET path` on 127.0.0.1:`port`, if it answers.
pub async fn http_body(port: u16, path: &str) -> Option<String> {
    let response = http_get(port, path).await?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// Waits until `GET /readyz` answers 200; how long it took since `since`.
///
/// # Errors
/// After `timeout`.
pub async fn wait_ready(port: u16, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
    loop {
        if http_status(port, "/readyz").await == Some(200) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > timeout {
            bail!("not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// User and system CPU time of a process so far, in seconds: `pid` is a
/// process id, or `"self"` for this process.
///
/// # Errors
/// When `/proc/<pid>/stat` cannot be read or parsed.
pub fn cpu_seconds(pid: impl std::fmt::Display) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .with_context(|| format!("the fields of /proc/{pid}/stat"))?;
    // utime and stime are fields 14 and 15; the rest starts at field 3.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// The resident set size of a process, in bytes.
///
/// # Errors
/// When `/proc/<pid>/status` cannot be read.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .context("VmRSS in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

/// The resident set size once it has stopped growing: sampled every 100 ms
/// until three samples in a row are within 1 % (at most `timeout`).
///
/// # Errors
/// When the process is gone.
pub async fn settled_rss(pid: u32, timeout: Duration) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut previous = rss(pid)?;
    let mut steady = 0;
    while steady < 3 && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss(pid)?;
        if now.abs_diff(previous) * 100 <= previous {
            steady += 1;
        } else {
            steady = 0;
        }
        previous = now;
    }
    Ok(previous)
}

/// Kills a child process and reaps it.
pub fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}
