//! Cairn's FUSE mount: the cluster's namespace as a POSIX file system, on the client
//! library (`cairn_client::Posix`), through the pure-Rust `fuser` (no libfuse).
//!
//! What it promises (`docs/architecture.md`, "FUSE mount", has the why):
//! - inode numbers are the master's inode ids (stable, shared by hard links);
//! - the kernel checks permissions (`default_permissions`); new nodes belong to the
//!   calling process's uid and gid;
//! - close-to-open consistency between mounts: `close` pushes buffered data and the new
//!   length to the cluster before it returns, and `open` fetches fresh attributes;
//! - attributes and entries are cached for short, configurable times and dropped at once
//!   when this mount changes them;
//! - writes are buffered per file and sent as large chunk-aligned mutations; memory for
//!   buffered writes is bounded by [`MountOptions::max_dirty`];
//! - `fcntl` and `flock` locks are the cluster's locks, so two mounts exclude each other.
//!
//! [`mount`] mounts and serves on background threads until [`Mounted::unmount`] (or an
//! external `umount`), so tests and the `cairn mount` command share one code path.

#[macro_use]
mod macros;
mod cache;
mod convert;
mod core;
mod data;
mod dir_ops;
mod errno;
mod extents;
mod file_ops;
mod files;
mod fs;
mod misc;
mod namespace;
mod read;
mod xattr_lock_ops;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::Client;
use fuser::{Config, MountOption, SessionACL, SessionUnmounter};

use crate::core::Core;
use crate::fs::CairnFs;

/// Largest file length the namespace accepts (2^60 bytes).
pub const MAX_FILE_SIZE: u64 = 1 << 60;

/// How a mount behaves.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// How long attributes are cached (by the kernel and the mount).
    pub attr_timeout: Duration,
    /// How long directory entries are cached.
    pub entry_timeout: Duration,
    /// Most bytes of buffered writes over all files; writers wait for flushes beyond it.
    pub max_dirty: u64,
    /// Let every user use the mount (`allow_other`; needed when it is shared, e.g. by
    /// tests that switch users). Root may always; others need `user_allow_other`.
    pub allow_other: bool,
    /// Have `fusermount3` unmount the file system if this process dies.
    pub auto_unmount: bool,
    /// Threads reading requests from the kernel (the work itself runs on tokio).
    pub threads: usize,
    /// Source name shown in `mount` and `/proc/mounts`.
    pub fsname: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            attr_timeout: Duration::from_secs(1),
            entry_timeout: Duration::from_secs(1),
            max_dirty: 256 << 20,
            allow_other: false,
            auto_unmount: false,
            threads: 2,
            fsname: "cairn".into(),
        }
    }
}

/// Why a mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] cairn_client::Error),
    #[error("cannot mount at {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
}

/// A live mount. Dropping it unmounts.
pub struct Mounted {
    mountpoint: PathBuf,
    unmounter: Option<SessionUnmounter>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    client: Client,
}

/// Mounts `client`'s cluster at `mountpoint` and serves it on background threads, with
/// the work on the current tokio runtime. Opens the client's session (locks belong to it).
pub async fn mount(
    client: &Client,
    mountpoint: &Path,
    opts: MountOptions,
) -> Result<Mounted, MountError> {
    let posix = client.posix();
    let stat = posix.stat_fs().await?;
    posix.session().await?;
    let rt = tokio::runtime::Handle::current();
    let core = Arc::new(Core::new(posix, opts.clone(), stat.chunk_size.max(1)));
    let mut options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("cairn".into()),
        MountOption::DefaultPermissions,
        MountOption::RW,
        MountOption::Exec,
        MountOption::Suid,
        MountOption::Dev,
    ];
    if opts.auto_unmount {
        options.push(MountOption::AutoUnmount);
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.auto_unmount {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));
    let path = mountpoint.to_path_buf();
    let fs = CairnFs::new(core.clone(), rt);
    let mut session = tokio::task::spawn_blocking({
        let path = path.clone();
        move || fuser::Session::new(fs, &path, &config)
    })
    .await
    .map_err(|e| MountError::Mount {
        path: path.clone(),
        source: io::Error::other(e.to_string()),
    })?
    .map_err(|source| MountError::Mount {
        path: path.clone(),
        source,
    })?;
    let _ = core.notifier.set(session.notifier());
    let unmounter = session.unmount_callable();
    let thread = std::thread::Builder::new()
        .name("cairn-fuse".into())
        .spawn(move || session.run())
        .map_err(|source| MountError::Mount {
            path: path.clone(),
            source,
        })?;
    tracing::info!(mountpoint = %path.display(), "mounted");
    Ok(Mounted {
        mountpoint: path,
        unmounter: Some(unmounter),
        thread: Some(thread),
        client: client.clone(),
    })
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the session still serves (false once something unmounted it).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Unmounts, waits for the session to end, and closes the client's session (releasing
    /// this mount's locks).
    pub async fn unmount(mut self) -> io::Result<()> {
        let result = self.stop();
        let thread = self.thread.take();
        let joined = tokio::task::spawn_blocking(move || match thread {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("session thread panicked"))),
            None => Ok(()),
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        if let Err(e) = self.client.close_session().await {
            tracing::warn!(error = %e, "could not close the session; it expires by itself");
        }
        result.and(joined)
    }

    /// Waits until something else unmounts the file system (`cairn umount`, `fusermount3
    /// -u`), then closes the client's session.
    pub async fn wait(mut self) -> io::Result<()> {
        let thread = self.thread.take();
        let joined = tokio::task::spawn_blocking(move || match thread {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("session thread panicked"))),
            None => Ok(()),
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        self.unmounter = None;
        let _ = self.client.close_session().await;
        joined
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(mut u) = self.unmounter.take() else {
            return Ok(());
        };
        u.unmount()?;
        // With auto_unmount, fuser only closes its socket to `fusermount3`, which leaves a
        // file system that still answers mounted: unmount it here.
        if is_mounted(&self.mountpoint) {
            unmount_path(&self.mountpoint, false)?;
        }
        Ok(())
    }
}

/// Whether `dir` is a FUSE mount point, per `/proc/self/mountinfo`.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| {
        let point = l.split(' ').nth(4);
        let fstype = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
        point == Some(want.as_str()) && fstype.is_some_and(|t| t.starts_with("fuse"))
    })
}

/// Unmounts `dir` (`lazy`: detaches it even while busy): `umount2` as root, else
/// `fusermount3 -u`, which works for the mounting user.
pub fn unmount_path(dir: &Path, lazy: bool) -> io::Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mountpoint holds a NUL byte"))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let umount_err = io::Error::last_os_error();
    if umount_err.raw_os_error() != Some(libc::EPERM) {
        return Err(umount_err);
    }
    let status = std::process::Command::new("fusermount3")
        .arg(if lazy { "-uz" } else { "-u" })
        .arg(dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u {}: {status}",
            dir.display()
        )))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount failed");
        }
    }
}
