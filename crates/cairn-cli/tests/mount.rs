//! `cairn mount` and `cairn umount` as a user runs them, against a process-level cluster:
//! the background mount serves files the CLI sees, `cairn umount` ends it, a foreground
//! mount unmounts cleanly on SIGTERM, and a mount killed with `kill -9` does not leave a
//! dead mountpoint behind (auto_unmount). Skips only when `/dev/fuse` is absent.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cairn_testkit::process::ProcessCluster;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cairn"))
}

/// Whether `dir` is a FUSE mount point, per `/proc/self/mountinfo`.
fn is_mounted(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| {
        l.split(' ').nth(4) == Some(want.as_str())
            && l.split(" - ").nth(1).is_some_and(|t| t.starts_with("fuse"))
    })
}

/// Waits until `cond` holds, failing after `limit`.
fn wait_until(limit: Duration, what: &str, cond: impl Fn() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|t| t.trim_start().starts_with('Z')),
    }
}

/// The pid `cairn mount` printed ("... (pid N, log ...)").
fn printed_pid(out: &str) -> anyhow::Result<u32> {
    let at = out.find("(pid ").context("no pid in the output")? + 5;
    let digits: String = out[at..].chars().take_while(char::is_ascii_digit).collect();
    Ok(digits.parse()?)
}

fn ok(out: std::process::Output) -> anyhow::Result<String> {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// Unmounts `dir` if a failed test left it mounted.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_umount_sigterm_and_kill_9() -> anyhow::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        anyhow::ensure!(
            std::env::var_os("CAIRN_REQUIRE_TOOLS").is_none(),
            "/dev/fuse is absent although CAIRN_REQUIRE_TOOLS is set"
        );
        eprintln!("SKIPPED: /dev/fuse is absent (no FUSE in this environment)");
        return Ok(());
    }
    let c = ProcessCluster::start(bin(), 3, 1 << 20).await?;
    let dir = c.root().join("mnt");
    std::fs::create_dir(&dir)?;
    let _cleanup = Cleanup(&dir);
    let dir_s = dir.to_str().context("utf-8 path")?;
    let log = c.root().join("mount.log");
    let log_s = log.to_str().context("utf-8 path")?;

    // In the background: `cairn mount` returns once mounted.
    let out = ok(c.cli(&["mount", dir_s, "--log", log_s])?)?;
    ensure!(is_mounted(&dir), "not mounted after `cairn mount`: {out}");
    let pid = printed_pid(&out)?;
    std::fs::write(dir.join("hello.txt"), b"through the mount\n")?;
    let cat = ok(c.cli(&["cat", "/hello.txt"])?)?;
    ensure!(cat == "through the mount\n", "cat: {cat:?}");
    let again = c.cli(&["mount", dir_s])?;
    ensure!(
        !again.status.success(),
        "a second mount on the same directory succeeded"
    );
    ok(c.cli(&["umount", dir_s])?)?;
    ensure!(!is_mounted(&dir), "still mounted after `cairn umount`");
    wait_until(Duration::from_secs(10), "the mount process exiting", || {
        gone(pid)
    })?;

    // In the foreground: SIGTERM unmounts and exits 0; data written before is kept.
    let mut fg = Command::new(bin())
        .args(["--master", c.master_addr(), "mount", dir_s, "--foreground"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let waited = wait_until(Duration::from_secs(30), "the foreground mount", || {
        is_mounted(&dir)
    });
    if waited.is_err() {
        let _ = fg.kill();
        let _ = fg.wait();
    }
    waited?;
    std::fs::write(dir.join("second.txt"), b"before SIGTERM")?;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(fg.id().to_string())
        .status()?;
    ensure!(status.success(), "kill -TERM failed");
    let exited = Instant::now();
    let status = loop {
        if let Some(s) = fg.try_wait()? {
            break s;
        }
        if exited.elapsed() > Duration::from_secs(20) {
            let _ = fg.kill();
            bail!("the foreground mount did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(status.success(), "foreground mount exited with {status}");
    ensure!(!is_mounted(&dir), "still mounted after SIGTERM");
    let cat = ok(c.cli(&["cat", "/second.txt"])?)?;
    ensure!(cat == "before SIGTERM", "cat: {cat:?}");

    // kill -9: auto_unmount (through fusermount3) removes the dead mount.
    if Path::new("/usr/bin/fusermount3").exists() || Path::new("/bin/fusermount3").exists() {
        let out = ok(c.cli(&["mount", dir_s, "--log", log_s])?)?;
        let pid = printed_pid(&out)?;
        ensure!(is_mounted(&dir));
        Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()?;
        wait_until(
            Duration::from_secs(15),
            "auto_unmount after kill -9",
            || !is_mounted(&dir),
        )?;
        ensure!(
            std::fs::read_dir(&dir)?.next().is_none(),
            "the mountpoint is not empty"
        );
    } else {
        anyhow::ensure!(
            std::env::var_os("CAIRN_REQUIRE_TOOLS").is_none(),
            "fusermount3 is missing although CAIRN_REQUIRE_TOOLS is set"
        );
        eprintln!("kill -9 part skipped: fusermount3 (package fuse3) is not installed");
    }
    Ok(())
}
