//! Directory streams, extended attributes, file-system statistics and byte-range locks.
//!
//! Directory streams page through the master's listing (a thousand entries with
//! attributes per call) as the kernel reads on; offsets are entry positions (1 = ".",
//! 2 = "..", 3 = the first entry), so a stream that is read again from an offset resumes
//! there. Names of files hidden while open (unlinked) are left out.
//!
//! Locks: `fcntl` byte-range locks and `flock` are the cluster's locks, held by this
//! mount's session with the kernel's lock owner (a process's files, or for `flock` an
//! open file description), so two mounts exclude each other like two local processes.
//! `flock` and `fcntl` locks share one lock space (as on NFS).

use std::time::Duration;

use bytes::Bytes;
use cairn_client::{DirPage, Error, Kind, LockKind, Node, Result, StatFs, XattrFlag};

use crate::core::Core;
use crate::namespace::HIDDEN_PREFIX;

/// Largest extended attribute value (the master's limit), in bytes.
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// How long a blocking lock request (`F_SETLKW`, `flock` without `LOCK_NB`) waits.
const LOCK_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Entries per directory page fetched from the master.
const DIR_PAGE: u32 = 1000;

/// One open directory stream.
#[derive(Default)]
pub struct DirStream {
    /// Entries fetched so far, in name order.
    pub entries: Vec<(String, Node)>,
    /// More entries follow the last one fetched.
    more: bool,
    started: bool,
    pub dir: Option<Node>,
    pub parent: u64,
}

/// The kernel's lock type.
pub fn lock_kind(typ: i32) -> Option<LockKind> {
    match typ {
        libc::F_RDLCK => Some(LockKind::Shared),
        libc::F_WRLCK => Some(LockKind::Exclusive),
        _ => None,
    }
}

/// The exclusive end of a kernel lock range (whose end is inclusive, `OFFSET_MAX` = EOF).
pub fn lock_end(end: u64) -> u64 {
    if end >= i64::MAX as u64 {
        u64::MAX
    } else {
        end + 1
    }
}

impl Core {
    /// Makes sure `stream` holds entry `index` (0-based) if the directory has it.
    pub async fn fill_stream(&self, ino: u64, stream: &mut DirStream, index: usize) -> Result<()> {
        while !stream.started || (stream.more && stream.entries.len() <= index) {
            let after = stream
                .entries
                .last()
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            let DirPage {
                entries,
                truncated,
                dir,
                parent,
            } = self.posix.read_dir(ino, &after, DIR_PAGE).await?;
            for (name, node) in &entries {
                self.cache.put_entry(ino, name, node);
            }
            stream.entries.extend(
                entries
                    .into_iter()
                    .filter(|(n, _)| !n.starts_with(HIDDEN_PREFIX)),
            );
            stream.more = truncated;
            stream.started = true;
            self.cache.put_attr(&dir);
            stream.dir = Some(dir);
            stream.parent = parent;
        }
        Ok(())
    }

    /// The value of extended attribute `name`; `None` if absent (`ENODATA`).
    pub async fn getxattr(&self, ino: u64, name: &str) -> Result<Option<Bytes>> {
        if let Some(v) = self.cache.xattr(ino, name) {
            return Ok(v);
        }
        let v = self.posix.get_xattr(ino, name).await?;
        self.cache.put_xattr(ino, name, v.clone());
        Ok(v)
    }

    /// Sets an extended attribute; `false` when `XATTR_REPLACE` found none.
    pub async fn setxattr(&self, ino: u64, name: &str, value: &[u8], flags: i32) -> Result<bool> {
        if name.starts_with("system.posix_acl_") {
            return Err(Error::new(
                Kind::InvalidArgument,
                "POSIX ACLs are not supported",
            ));
        }
        let flag = if flags & libc::XATTR_CREATE != 0 {
            XattrFlag::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrFlag::Replace
        } else {
            XattrFlag::Any
        };
        let found = self
            .posix
            .set_xattr(ino, name, Bytes::copy_from_slice(value), flag)
            .await;
        self.cache.forget_xattrs(ino);
        self.cache.forget_attr(ino);
        found
    }

    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>> {
        self.posix.list_xattr(ino).await
    }

    /// Removes an extended attribute; `false` when there was none.
    pub async fn removexattr(&self, ino: u64, name: &str) -> Result<bool> {
        let found = self.posix.remove_xattr(ino, name).await;
        self.cache.forget_xattrs(ino);
        self.cache.forget_attr(ino);
        found
    }

    pub async fn statfs(&self) -> Result<StatFs> {
        self.posix.stat_fs().await
    }

    /// `F_GETLK`: the conflicting lock `(start, inclusive end, type)`, or `F_UNLCK`.
    pub async fn getlk(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
    ) -> Result<(u64, u64, i32)> {
        let Some(kind) = lock_kind(typ) else {
            return Ok((start, end, libc::F_UNLCK));
        };
        let holder = self
            .posix
            .test_lock(ino, owner, kind, start, lock_end(end))
            .await?;
        Ok(match holder {
            None => (start, end, libc::F_UNLCK),
            Some(h) => {
                let end = if h.end == u64::MAX {
                    i64::MAX as u64
                } else {
                    h.end - 1
                };
                let typ = match h.kind {
                    LockKind::Shared => libc::F_RDLCK,
                    LockKind::Exclusive => libc::F_WRLCK,
                };
                (h.start, end, typ)
            }
        })
    }

    /// `F_SETLK`/`F_SETLKW`/`flock`: takes, converts or (type `F_UNLCK`) releases a lock.
    pub async fn setlk(
        &self,
        ino: u64,
        owner: u64,
        start: u64,
        end: u64,
        typ: i32,
        sleep: bool,
    ) -> Result<()> {
        let end = lock_end(end);
        match lock_kind(typ) {
            None => {
                let held = self
                    .files
                    .with_existing(ino, |s| s.lock_owners.contains(&owner))
                    .unwrap_or(false);
                if held {
                    self.posix.unlock(ino, owner, start, end).await?;
                }
                Ok(())
            }
            Some(kind) => {
                let wait = sleep.then_some(LOCK_WAIT);
                self.files.with(ino, |s| s.lock_owners.insert(owner));
                self.posix.lock(ino, owner, kind, start, end, wait).await
            }
        }
    }
}
