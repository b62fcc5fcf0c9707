//! Shared by the mount tests: a real `TestCluster` with one or more real FUSE mounts of
//! it, torn down (unmounted, cluster stopped, temp dirs removed) even when a test fails.
//!
//! Tests skip, saying why, only when `/dev/fuse` is missing (or a tool they drive is not
//! installed); everything else is a failure.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_client::{Client, ClientConfig};
use cairn_fuse::{MountOptions, Mounted};
use cairn_testkit::TestCluster;

/// Why the mount tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent (no FUSE in this environment)".into());
    }
    None
}

/// Skips the calling test (with a message) when FUSE is unavailable.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Some(why) = common::skip_reason() {
            common::skipping(&why)?;
            return Ok(());
        }
    };
}

/// Says why a test skips; an error instead where CI asks for everything to run
/// (`CAIRN_REQUIRE_TOOLS` set: `.ci/run` installs every tool these tests drive).
pub fn skipping(why: &str) -> anyhow::Result<()> {
    if std::env::var_os("CAIRN_REQUIRE_TOOLS").is_some() {
        bail!("cannot run although CAIRN_REQUIRE_TOOLS is set: {why}");
    }
    eprintln!("SKIPPED: {why}");
    Ok(())
}

/// Whether `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A cluster with mounts; dropping it unmounts everything and stops the cluster.
pub struct Env {
    pub mounts: Vec<Mounted>,
    pub dirs: Vec<PathBuf>,
    _tmp: tempfile::TempDir,
    pub cluster: TestCluster,
}

/// Options every test mount uses: short caches, other users allowed (pjdfstest switches
/// users), no fusermount helper needed.
pub fn test_options() -> MountOptions {
    MountOptions {
        allow_other: true,
        auto_unmount: false,
        fsname: "cairn-test".into(),
        ..MountOptions::default()
    }
}

impl Env {
    /// Starts a cluster (three chunk servers, goal 3, chunk size `chunk_size`) and
    /// `mounts` mounts of it, each with its own client (so its own session).
    pub async fn start(mounts: usize, chunk_size: u64) -> anyhow::Result<Env> {
        let cluster = TestCluster::builder()
            .chunk_size(chunk_size)
            .start()
            .await?;
        let tmp = tempfile::Builder::new().prefix("cairn-mnt-").tempdir()?;
        let mut env = Env {
            mounts: Vec::new(),
            dirs: Vec::new(),
            _tmp: tmp,
            cluster,
        };
        for i in 0..mounts {
            let dir = env._tmp.path().join(format!("m{i}"));
            std::fs::create_dir(&dir)?;
            // Other users (pjdfstest's) must reach the mountpoint.
            Command::new("chmod")
                .arg("0755")
                .arg(env._tmp.path())
                .status()?;
            let client = Client::connect(ClientConfig::new(env.cluster.master_addr())).await?;
            let m = cairn_fuse::mount(&client, &dir, test_options())
                .await
                .with_context(|| format!("mount {}", dir.display()))?;
            env.mounts.push(m);
            env.dirs.push(dir);
        }
        Ok(env)
    }

    pub fn dir(&self, i: usize) -> &Path {
        &self.dirs[i]
    }

    /// Unmounts every mount, then stops the cluster.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        for m in self.mounts.drain(..) {
            if let Err(e) = m.unmount().await {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e).context("unmount"),
            None => Ok(()),
        }
    }
}

/// Runs a blocking closure (file I/O through the mount) off the async runtime, bounded
/// in time.
pub async fn blocking<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(joined) => joined.context("blocking task panicked")?,
        Err(_) => bail!("timed out after {limit:?}"),
    }
}

/// Runs a command to completion within `limit`, failing with its output if it fails.
pub async fn run(limit: Duration, cmd: &mut Command) -> anyhow::Result<String> {
    let desc = format!("{cmd:?}");
    let child = tokio::process::Command::from(std::mem::replace(cmd, Command::new("true")))
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("start {desc}"))?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{desc} did not finish within {limit:?}"))??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{desc} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}
