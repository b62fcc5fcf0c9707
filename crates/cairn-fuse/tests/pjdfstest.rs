//! The Rust pjdfstest (crate `pjdfstest`) against a real mount of a real cluster: every
//! POSIX test it has for chmod, chown, link, mkdir, mkfifo, mknod, open, rename, rmdir,
//! symlink, truncate, unlink, utimensat and more, as root switching to other users.
//!
//! Every failure must be listed, with its reason, in `pjdfstest-expected-failures.txt`
//! beside this file; a failure not listed fails this test. Tests pjdfstest skips (it
//! says why: no remount allowed, `LINK_MAX` unknown to `pathconf`) are reported.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use common::{Env, have};

/// Parses the expected-failures file: one test name per line, `#` starts a comment.
fn expected() -> anyhow::Result<BTreeSet<String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pjdfstest-expected-failures.txt"
    );
    let text = std::fs::read_to_string(path).context("read the expected-failures file")?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pjdfstest_suite() -> anyhow::Result<()> {
    require_fuse!();
    if !have("pjdfstest") {
        common::skipping(
            "pjdfstest is not installed (`cargo install pjdfstest`; .ci/run does it)",
        )?;
        return Ok(());
    }
    let expected = expected()?;
    let env = Env::start(1, 1 << 20).await?;
    let result = run_suite(&env, &expected).await;
    let stopped = env.stop().await;
    result.and(stopped)
}

async fn run_suite(env: &Env, expected: &BTreeSet<String>) -> anyhow::Result<()> {
    let work = env.dir(0).join("pjdfstest");
    std::fs::create_dir(&work)?;
    Command::new("chmod").arg("0777").arg(&work).status()?;
    // A second file system for the EXDEV tests: a local directory.
    let local = tempfile::tempdir()?;
    let secondary = local.path().join("secondary");
    std::fs::create_dir(&secondary)?;
    Command::new("chmod")
        .arg("0777")
        .arg(local.path())
        .arg(&secondary)
        .status()?;
    let list: Vec<String> = expected.iter().map(|n| format!("{n:?}")).collect();
    let config = format!(
        "[features]\nposix_fallocate = {{}}\nutime_now = {{}}\nutimensat = {{}}\nrename_ctime = {{}}\n\n\
         [settings]\nnaptime = 0.001\nallow_remount = false\nexpected_failures = [{}]\n\n\
         [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"daemon\", \"daemon\"]]\n",
        list.join(", ")
    );
    let config_path = local.path().join("pjdfstest.toml");
    std::fs::write(&config_path, config)?;
    let child = tokio::process::Command::new("pjdfstest")
        .arg("-c")
        .arg(&config_path)
        .arg("-p")
        .arg(&work)
        .arg("-s")
        .arg(&secondary)
        .current_dir(&work)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), child)
        .await
        .context("pjdfstest did not finish within 600 s")??;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .context(format!("no summary in pjdfstest's output:\n{text}"))?;
    eprintln!("pjdfstest: {summary}");
    let failed: BTreeSet<String> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for skipped in text.lines().filter(|l| l.trim_end().ends_with("skipped")) {
        eprintln!(
            "pjdfstest skipped: {}",
            skipped.split_whitespace().next().unwrap_or("")
        );
    }
    let unexpected: Vec<&String> = failed.difference(expected).collect();
    let fixed: Vec<&String> = expected
        .iter()
        .filter(|n| !text.contains(n.as_str()) || passed(&text, n))
        .collect();
    if !fixed.is_empty() {
        eprintln!("pjdfstest: listed as expected failures but passed now: {fixed:?}");
    }
    if !unexpected.is_empty() {
        bail!("pjdfstest failures not in the expected-failures file: {unexpected:?}\n{text}");
    }
    Ok(())
}

fn passed(text: &str, name: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().next() == Some(name) && l.trim_end().ends_with(" ok"))
}
