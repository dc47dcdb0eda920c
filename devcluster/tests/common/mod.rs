//! The real `kubectl`, run against one kubeconfig, for the tests that drive
//! the devcluster with it. kubectl must be on PATH (CI installs it): when it
//! is missing the test fails and says so; it is never skipped.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokio::process::Command;

/// How long one kubectl command may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// kubectl with one kubeconfig, run in one folder.
pub struct Kubectl {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    /// Writes `yaml` as the kubeconfig `dir/name` and runs kubectl in
    /// `dir`; fails, naming the fix, when kubectl is not on PATH.
    pub fn new(dir: &Path, name: &str, yaml: &str) -> Result<Self> {
        require_kubectl()?;
        let kubeconfig = dir.join(name);
        std::fs::write(&kubeconfig, yaml).with_context(|| format!("writing {name}"))?;
        Ok(Self {
            kubeconfig,
            dir: dir.to_owned(),
        })
    }

    /// A kubectl command with the kubeconfig, killed when dropped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(&self.dir)
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub async fn try_run(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = tokio::time::timeout(WAIT, self.command(args).output())
            .await
            .with_context(|| format!("kubectl {args:?} timed out"))?
            .with_context(|| format!("running kubectl {args:?}"))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs kubectl expecting success; returns stdout.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let (ok, stdout, stderr) = self.try_run(args).await?;
        if !ok {
            bail!("kubectl {args:?} failed: {stderr}");
        }
        Ok(stdout)
    }

    /// Runs kubectl with `-o json`; returns the parsed output.
    pub async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.run(&all).await?)?)
    }

    /// Runs kubectl expecting it to fail; returns stderr.
    pub async fn refused(&self, args: &[&str]) -> Result<String> {
        let (ok, stdout, stderr) = self.try_run(args).await?;
        if ok {
            bail!("kubectl {args:?} succeeded but should have been refused: {stdout}");
        }
        Ok(stderr)
    }
}

/// Fails unless a `kubectl` executable is on PATH.
fn require_kubectl() -> Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("kubectl").is_file())
    });
    ensure!(
        found,
        "kubectl is not on PATH: this test drives the devcluster with the real kubectl; \
         install kubectl (1.32 or newer) and run it again"
    );
    Ok(())
}
