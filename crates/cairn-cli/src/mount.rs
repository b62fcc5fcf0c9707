//! `cairn mount` and `cairn umount`.
//!
//! `cairn mount MOUNTPOINT` starts itself again with `--foreground` as a detached process
//! (its own process group, output to a log file), waits until the mount shows in
//! `/proc/self/mountinfo`, prints where it mounted and exits. With `--foreground` it
//! serves in this process until Ctrl-C or SIGTERM (then it unmounts cleanly) or until
//! something else unmounts it (`cairn umount`). With `auto_unmount` (the default when
//! `fusermount3` is installed) a killed mount does not leave a dead mountpoint behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::Client;
use cairn_fuse::{MountOptions, is_mounted, unmount_path};
use clap::Args;

use crate::{CmdResult, Failure};

/// How long `cairn mount` waits for its background process to have mounted.
const MOUNT_WAIT: Duration = Duration::from_secs(30);

#[derive(Args, Clone)]
pub struct MountArgs {
    /// Directory to mount the file system on.
    pub mountpoint: PathBuf,
    /// Serve in this process (logs to stderr) instead of in the background.
    #[arg(long)]
    pub foreground: bool,
    /// Seconds attributes are cached (by the kernel and the mount).
    #[arg(long, default_value_t = 1.0)]
    pub attr_timeout: f64,
    /// Seconds directory entries are cached.
    #[arg(long, default_value_t = 1.0)]
    pub entry_timeout: f64,
    /// Most MiB of buffered writes before writers wait for them to be flushed.
    #[arg(long, default_value_t = 256)]
    pub max_dirty_mib: u64,
    /// Let every user use the mount (the default when mounting as root).
    #[arg(long)]
    pub allow_other: bool,
    /// Keep the mountpoint if this process dies (no auto_unmount).
    #[arg(long)]
    pub no_auto_unmount: bool,
    /// Log file of the background process (default: /tmp/cairn-mount-<pid>.log).
    #[arg(long)]
    pub log: Option<PathBuf>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn have_fusermount() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
}

fn options(a: &MountArgs, master: &str) -> MountOptions {
    MountOptions {
        attr_timeout: Duration::from_secs_f64(a.attr_timeout.max(0.0)),
        entry_timeout: Duration::from_secs_f64(a.entry_timeout.max(0.0)),
        max_dirty: a.max_dirty_mib.max(1) << 20,
        allow_other: a.allow_other || is_root(),
        auto_unmount: !a.no_auto_unmount && have_fusermount(),
        threads: 2,
        fsname: format!("cairn:{master}"),
    }
}

/// `cairn mount`.
pub async fn mount(client: &Client, master: &str, a: &MountArgs) -> CmdResult {
    let dir = std::fs::canonicalize(&a.mountpoint)
        .with_context(|| format!("mountpoint {}", a.mountpoint.display()))?;
    if !dir.is_dir() {
        bail_failure(format!("{}: not a directory", dir.display()))?;
    }
    if is_mounted(&dir) {
        bail_failure(format!("{}: already mounted", dir.display()))?;
    }
    if !a.foreground {
        return daemonize(&dir, a);
    }
    let mounted = cairn_fuse::mount(client, &dir, options(a, master))
        .await
        .map_err(|e| Failure::Other(anyhow::anyhow!(e)))?;
    println!(
        "cairn: mounted {master} at {} (pid {})",
        dir.display(),
        std::process::id()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = {
        let dir = dir.clone();
        tokio::spawn(async move {
            // Notices an unmount done from outside (`cairn umount`, `fusermount3 -u`).
            while is_mounted(&dir) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = done_tx.send(());
        })
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = done_rx => {
            mounted.wait().await.context("wait for the session to end")?;
            eprintln!("cairn: {} was unmounted", dir.display());
            return Ok(());
        }
    }
    watch.abort();
    eprintln!("cairn: unmounting {}", dir.display());
    if let Err(e) = mounted.unmount().await {
        // Busy: detach it so new users no longer see it; open files keep working until
        // they are closed.
        eprintln!("cairn: unmount failed ({e}); detaching lazily");
        let _ = unmount_path(&dir, true);
    }
    Ok(())
}

fn bail_failure(msg: String) -> Result<(), Failure> {
    Err(Failure::Other(anyhow::anyhow!(msg)))
}

/// Starts `cairn mount --foreground` detached and waits until it has mounted.
fn daemonize(dir: &Path, a: &MountArgs) -> CmdResult {
    let exe = std::env::current_exe().context("find the cairn binary")?;
    let log = a
        .log
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/cairn-mount-{}.log", std::process::id())));
    let out = std::fs::File::create(&log).with_context(|| format!("log file {}", log.display()))?;
    let err = out.try_clone().context("log file")?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("--foreground".into());
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("start the mount process")?
    };
    let start = Instant::now();
    while start.elapsed() < MOUNT_WAIT {
        if is_mounted(dir) {
            println!(
                "cairn: mounted at {} (pid {}, log {})",
                dir.display(),
                child.id(),
                log.display()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("watch the mount process")? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Failure::Other(anyhow::anyhow!(
                "the mount process exited ({status}) before mounting:\n{}",
                text.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    Err(Failure::Other(anyhow::anyhow!(
        "{} was not mounted within {MOUNT_WAIT:?} (see {})",
        dir.display(),
        log.display()
    )))
}

/// `cairn umount`.
pub fn umount(mountpoint: &Path) -> CmdResult {
    let dir = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    if !is_mounted(&dir) {
        bail_failure(format!("{}: not a Cairn mount", dir.display()))?;
    }
    unmount_path(&dir, false).with_context(|| format!("unmount {}", dir.display()))?;
    println!("cairn: unmounted {}", dir.display());
    Ok(())
}
