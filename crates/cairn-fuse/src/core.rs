//! The mount's shared state and the helpers every operation uses: attributes as the
//! kernel must see them (this mount's unflushed writes included), and what the kernel was
//! last told about each inode (so an open that finds the file changed elsewhere can make
//! the kernel drop its stale attributes: close-to-open consistency).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cairn_client::{Error, Node, Posix, Result};
use fuser::{FileAttr, INodeNo, Notifier};

use crate::MountOptions;
use crate::cache::Cache;
use crate::convert::{file_attr, time_of};
use crate::files::Files;

/// Everything one mount shares between its request handlers.
pub struct Core {
    pub posix: Posix,
    pub opts: MountOptions,
    pub cache: Cache,
    pub files: Files,
    /// The cluster's chunk size (flushes are split and sized by it).
    pub chunk_size: u64,
    /// Sends invalidations to the kernel; set once the session exists.
    pub notifier: OnceLock<Notifier>,
    /// `(size, mtime_ns)` of each inode as last replied to the kernel.
    seen: Mutex<HashMap<u64, (u64, i64)>>,
}

/// Size at which one inode's buffered writes are flushed in the background: one chunk,
/// within [8 MiB, 64 MiB].
pub fn flush_threshold(chunk_size: u64) -> u64 {
    chunk_size.clamp(8 << 20, 64 << 20)
}

impl Core {
    pub fn new(posix: Posix, opts: MountOptions, chunk_size: u64) -> Core {
        Core {
            cache: Cache::new(opts.attr_timeout, opts.entry_timeout),
            posix,
            opts,
            files: Files::default(),
            chunk_size,
            notifier: OnceLock::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn attr_ttl(&self) -> Duration {
        self.opts.attr_timeout
    }

    pub fn entry_ttl(&self) -> Duration {
        self.opts.entry_timeout
    }

    /// The kernel's attributes of `node`, with this mount's unflushed writes applied, and
    /// remembered as what the kernel now believes.
    pub fn kattr(&self, node: &Node) -> FileAttr {
        let mut a = file_attr(node);
        let ino = node.attr.inode;
        self.files.with_existing(ino, |s| {
            if s.has_local_data() || s.size != s.remote_size {
                a.size = s.size;
                a.blocks = s.size.div_ceil(512);
            }
            if s.hidden.is_some() {
                // The hidden name an unlinked-while-open file keeps is not a link.
                a.nlink = a.nlink.saturating_sub(1);
            }
            if let Some(m) = s.mtime_local {
                a.mtime = time_of(m);
                a.ctime = time_of(m);
            }
        });
        let mtime = crate::convert::ns_of(a.mtime);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 1 << 20 {
            seen.clear();
        }
        seen.insert(ino, (a.size, mtime));
        a
    }

    /// Tells the kernel to drop its cached attributes of `ino` if they differ from `node`
    /// (another mount changed the file since the kernel last asked).
    pub fn revalidate_kernel(&self, node: &Node) {
        let ino = node.attr.inode;
        let fresh = (node.attr.size, node.attr.mtime_ns);
        let stale = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ino)
            .is_some_and(|&s| s != fresh);
        if stale
            && let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(INodeNo(ino), -1, 0)
        {
            tracing::debug!(ino, error = %e, "could not invalidate the kernel's attributes");
        }
    }

    /// Forgets what the kernel was told about `ino` (it forgot the inode).
    pub fn forget(&self, ino: u64) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ino);
    }

    /// The node `ino`, from the cache while fresh, else from the master.
    pub async fn node(&self, ino: u64) -> Result<Node> {
        if let Some(n) = self.cache.attr(ino) {
            return Ok(n);
        }
        let n = self.posix.get_attr(ino).await?;
        self.cache.put_attr(&n);
        Ok(n)
    }

    /// The error a background flush of `ino` left, if any (taken: reported once).
    pub fn take_error(&self, ino: u64) -> Option<Error> {
        self.files.with_existing(ino, |s| s.error.take()).flatten()
    }
}
