//! Helpers shared by the fault suites: a record of acknowledged writes that every fault
//! test checks against, waits on the master's replication figures, and `cairn fsck`.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use cairn_client::Client;
use cairn_testkit::wait_until;

/// Every write the cluster acknowledged: path -> the bytes it must read back.
#[derive(Clone, Default)]
pub struct Acked {
    files: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl Acked {
    /// Records that `path` was acknowledged with `data`.
    pub fn record(&self, path: &str, data: Bytes) {
        self.files
            .lock()
            .expect("acked lock")
            .insert(path.to_string(), data);
    }

    /// Every acknowledged path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.files
            .lock()
            .expect("acked lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.files.lock().expect("acked lock").len()
    }

    /// Reads every acknowledged file back and fails on the first difference.
    pub async fn verify(&self, client: &Client) -> anyhow::Result<()> {
        let files = self.files.lock().expect("acked lock").clone();
        for (path, data) in &files {
            let back = client
                .read_all(path)
                .await
                .with_context(|| format!("read acknowledged {path}"))?;
            anyhow::ensure!(
                back == *data,
                "{path}: acknowledged {} bytes, read back {} bytes that differ",
                data.len(),
                back.len()
            );
        }
        Ok(())
    }
}

/// Waits until the master says every chunk is exactly at its goal (none under, over or
/// lost) and nothing is being copied.
pub async fn wait_at_goal(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let last = Mutex::new(String::new());
    let r = wait_until(timeout, "every chunk back at its goal", || async {
        match client.status().await {
            Ok(s) => {
                *last.lock().expect("last lock") = format!(
                    "at goal {}, under {}, over {}, lost {}, in flight {}, safe mode {}",
                    s.chunks_at_goal,
                    s.chunks_under_goal,
                    s.chunks_over_goal,
                    s.chunks_lost,
                    s.replications_in_flight,
                    s.safe_mode
                );
                !s.safe_mode
                    && s.chunks_under_goal == 0
                    && s.chunks_over_goal == 0
                    && s.chunks_lost == 0
                    && s.replications_in_flight == 0
            }
            Err(_) => false,
        }
    })
    .await;
    let last = last.into_inner().unwrap_or_default();
    r.with_context(|| format!("last status: {last}"))
}

/// Runs `cairn fsck --json /` against `master` and returns its report and exit code.
pub fn fsck(bin: &Path, master: &str) -> anyhow::Result<(i32, serde_json::Value)> {
    let out = Command::new(bin)
        .args(["--master", master, "--timeout", "20", "fsck", "--json", "/"])
        .output()
        .context("run cairn fsck")?;
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "fsck output (exit {code}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, report))
}

/// Asserts that `cairn fsck` verified every chunk at its goal and exits 0; returns the
/// number of chunks it checked.
pub fn fsck_clean(bin: &Path, master: &str) -> anyhow::Result<u64> {
    let (code, r) = fsck(bin, master)?;
    let total = &r["total"];
    let chunks = total["chunks"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        code == 0 && r["healthy"] == true && total["at_goal"].as_u64() == Some(chunks),
        "fsck is not clean (exit {code}): {total}"
    );
    Ok(chunks)
}
