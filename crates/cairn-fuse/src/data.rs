//! File data through the mount: open (which revalidates: close-to-open consistency),
//! reads (chunk servers' bytes, then this mount's buffered writes on top), buffered writes
//! (write-back per inode, flushed as large chunk-aligned mutations), flush, fsync,
//! release, truncation and `fallocate`.
//!
//! A write is acknowledged once it is buffered; it reaches every replica, and the master
//! commits the new length, when the buffer fills (in the background), on `fsync`, and on
//! `close` (FUSE flush), whose answer reports any failure. So after `close` returns, any
//! mount that opens the file sees the data.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use cairn_client::{Error, Kind, Layout, Node, Result};

use crate::convert::ns_of;
use crate::core::{Core, flush_threshold};
use crate::extents::Frozen;

/// Chunks written concurrently by one flush.
const FLUSH_PARALLELISM: usize = 4;

impl Core {
    /// Opens `ino` for I/O: fetches fresh attributes and chunk locations (one master call),
    /// so this open sees everything closed before it anywhere. Answers the handle and
    /// whether the kernel may keep its cached pages.
    pub async fn open_file(&self, ino: u64) -> Result<(u64, bool)> {
        let layout = self.posix.layout(ino).await?;
        let node = Node {
            attr: layout.attr.clone(),
            special: None,
            rdev: 0,
        };
        let unchanged = self.cache.attr(ino).is_some_and(|c| {
            (c.attr.size, c.attr.mtime_ns) == (node.attr.size, node.attr.mtime_ns)
        });
        self.revalidate_kernel(&node);
        self.cache.put_attr(&node);
        self.files.with(ino, |s| {
            if !s.has_local_data() {
                s.size = node.attr.size;
                s.remote_size = node.attr.size;
            }
            s.layout = Some(Arc::new(layout));
            s.layout_gen += 1;
        });
        Ok((self.files.open(ino), unchanged))
    }

    /// Reads up to `len` bytes at `off` through handle `fh`.
    pub async fn read(&self, fh: u64, off: u64, len: u32) -> Result<Bytes> {
        let h = self
            .files
            .handle(fh)
            .ok_or_else(|| Error::new(Kind::InvalidArgument, "unknown file handle"))?;
        let ino = h.ino;
        // Snapshot of this mount's view, taken before the chunk servers are read: a flush
        // that completes meanwhile has put its bytes there already.
        let snap = self.files.with(ino, |s| {
            let end = off.saturating_add(u64::from(len)).min(s.size);
            (end > off).then(|| Snapshot {
                end,
                remote: s.remote_size,
                frozen: s.frozen.clone(),
                dirty: s.dirty_slice(off, end),
                layout: s.layout.clone(),
                generation: s.layout_gen,
            })
        });
        let Some(snap) = snap else {
            return Ok(Bytes::new());
        };
        let len = (snap.end - off) as usize;
        let remote_end = snap.end.min(snap.remote);
        let remote = if off < remote_end {
            let layout = match snap.layout {
                Some(l) => l,
                None => self.refresh_layout(ino).await?,
            };
            let mut ra = h.read_ahead.lock().await;
            let n = (remote_end - off) as usize;
            ra.read(&self.posix, &layout, snap.generation, off, n)
                .await?
        } else {
            Bytes::new()
        };
        if remote.len() == len && snap.frozen.0.is_empty() && snap.dirty.0.is_empty() {
            // Nothing of this mount's own writes lies on top: the chunk servers' bytes as
            // they came, without a copy.
            return Ok(remote);
        }
        let mut out = vec![0u8; len];
        out[..remote.len()].copy_from_slice(&remote);
        snap.frozen.overlay(off, &mut out);
        snap.dirty.overlay(off, &mut out);
        Ok(Bytes::from(out))
    }

    async fn refresh_layout(&self, ino: u64) -> Result<Arc<Layout>> {
        let layout = Arc::new(self.posix.layout(ino).await?);
        self.files.with(ino, |s| {
            s.layout = Some(layout.clone());
        });
        Ok(layout)
    }

    /// Buffers `data` written at `off` (with `append`, at the end of the file as this
    /// mount sees it: the kernel's idea of the size may predate the open); flushes in the
    /// background when the inode's buffer is full, and waits for a flush when the mount's
    /// buffers are.
    pub async fn write(
        self: &Arc<Self>,
        ino: u64,
        off: u64,
        data: &[u8],
        append: bool,
    ) -> Result<u32> {
        let off = if append {
            self.files.with(ino, |s| s.size)
        } else {
            off
        };
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= crate::MAX_FILE_SIZE)
            .ok_or_else(|| Error::new(Kind::InvalidArgument, "write past the largest file size"))?;
        let threshold = flush_threshold(self.chunk_size);
        let (delta, start_flush, err) = self.files.with(ino, |s| {
            if let Some(e) = s.error.take() {
                return (0, false, Some(e));
            }
            let before = s.dirty.bytes();
            s.dirty.insert(off, data, threshold as usize);
            s.size = s.size.max(end);
            s.mtime_local = Some(ns_of(SystemTime::now()));
            let start = s.dirty.bytes() >= threshold && !s.flushing;
            if start {
                s.flushing = true;
            }
            (s.dirty.bytes() as i64 - before as i64, start, None)
        });
        if let Some(e) = err {
            return Err(e);
        }
        self.files.add_dirty(delta);
        if start_flush {
            self.spawn_flush(ino);
        }
        if self.files.dirty_total() > self.opts.max_dirty {
            self.flush_inode(ino).await?;
        }
        Ok(data.len() as u32)
    }

    fn spawn_flush(self: &Arc<Self>, ino: u64) {
        let core = self.clone();
        tokio::spawn(async move {
            if let Err(e) = core.flush_inode(ino).await {
                tracing::warn!(ino, error = %e, "background flush failed; reported at the next close");
                core.files.with(ino, |s| {
                    s.error.get_or_insert(e);
                });
            }
            core.files.with(ino, |s| s.flushing = false);
            core.files.drop_if_idle(ino);
        });
    }

    /// Sends every buffered write of `ino` to the chunk servers and commits the new length
    /// with the master. Returns the first error a background flush left, if any.
    pub async fn flush_inode(&self, ino: u64) -> Result<()> {
        let lock = self.files.flush_lock(ino);
        let _one = lock.lock().await;
        let taken = self.files.with_existing(ino, |s| {
            if s.dirty.is_empty() {
                return None;
            }
            let bytes = s.dirty.bytes();
            let ext = s.dirty.take();
            s.frozen = Frozen(ext.clone());
            Some((ext, bytes))
        });
        let Some((extents, bytes)) = taken.flatten() else {
            return match self.take_error(ino) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        };
        self.files.add_dirty(-(bytes as i64));
        let end = extents
            .iter()
            .map(|(o, b)| o + b.len() as u64)
            .max()
            .unwrap_or(0);
        let result = match self.write_extents(ino, extents.clone()).await {
            Ok(()) => match self.posix.commit(ino, end).await {
                // The master did not take the first chunk written under the create's lease
                // (it restarted, or the lease lapsed): the lease is dropped, so writing the
                // extents again goes the ordinary way.
                Err(e) if e.kind() == Kind::Stale => {
                    tracing::info!(ino, error = %e, "writing a file's first chunk again");
                    match self.write_extents(ino, extents).await {
                        Ok(()) => self.posix.commit(ino, end).await,
                        Err(e) => Err(e),
                    }
                }
                r => r,
            },
            Err(e) => Err(e),
        };
        let committed = self.files.with(ino, |s| {
            s.frozen = Frozen::default();
            s.layout = None;
            s.layout_gen += 1;
            match &result {
                Ok(attr) => {
                    s.remote_size = attr.size;
                    s.size = s.size.max(attr.size);
                    if s.dirty.is_empty() {
                        s.mtime_local = None;
                    }
                }
                Err(_) => {
                    if s.dirty.is_empty() {
                        s.mtime_local = None;
                    }
                }
            }
            s.dirty.is_empty()
        });
        let attr = result?;
        if committed {
            self.cache.put_attr(&Node {
                attr,
                special: None,
                rdev: 0,
            });
        } else {
            self.cache.forget_attr(ino);
        }
        match self.take_error(ino) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn write_extents(&self, ino: u64, extents: Vec<(u64, Bytes)>) -> Result<()> {
        let mut set = tokio::task::JoinSet::new();
        for (off, data) in extents {
            while set.len() >= FLUSH_PARALLELISM {
                join_one(&mut set).await?;
            }
            let posix = self.posix.clone();
            let cs = self.chunk_size;
            set.spawn(async move { posix.write(ino, cs, off, data, FLUSH_PARALLELISM).await });
        }
        while !set.is_empty() {
            join_one(&mut set).await?;
        }
        Ok(())
    }

    /// Whether a `close` of `ino` by `owner` has nothing to do: no buffered or in-flight
    /// writes, no unreported flush error, no POSIX lock of `owner` to release.
    pub fn flush_is_noop(&self, ino: u64, owner: u64) -> bool {
        self.files
            .with_existing(ino, |s| {
                !s.has_local_data()
                    && !s.flushing
                    && s.error.is_none()
                    && !s.lock_owners.contains(&owner)
            })
            .unwrap_or(true)
    }

    /// `close` of one descriptor: flushes, and releases the POSIX locks `owner` holds on
    /// the file (closing any descriptor does that, per POSIX).
    pub async fn flush(&self, ino: u64, owner: u64) -> Result<()> {
        let flushed = self.flush_inode(ino).await;
        let had_locks = self
            .files
            .with_existing(ino, |s| s.lock_owners.remove(&owner))
            .unwrap_or(false);
        if had_locks {
            self.posix.unlock(ino, owner, 0, u64::MAX).await?;
        }
        flushed
    }

    /// The last close of handle `fh`: flushes, drops `flock` locks of `flock_owner`, and
    /// removes a file that was unlinked while open.
    pub async fn release(&self, fh: u64, flock_owner: Option<u64>) -> Result<()> {
        let Some(h) = self.files.handle(fh) else {
            return Ok(());
        };
        let ino = h.ino;
        let flushed = self.flush_inode(ino).await;
        if let Some(owner) = flock_owner {
            let had = self
                .files
                .with_existing(ino, |s| s.lock_owners.remove(&owner))
                .unwrap_or(false);
            if had {
                self.posix.unlock(ino, owner, 0, u64::MAX).await?;
            }
        }
        if let Some((ino, 0)) = self.files.close(fh) {
            let hidden = self.files.with(ino, |s| s.hidden.take());
            if let Some((parent, name)) = hidden {
                let dir = self.posix.unlink_at(parent, &name).await?;
                self.cache.forget_entry(parent, &name);
                self.changed_dir(parent, dir);
                self.cache.forget_attr(ino);
            }
        }
        self.files.drop_if_idle(ino);
        flushed
    }

    /// Sets the length of `ino` (flushing buffered writes first, so they land in order).
    pub async fn truncate(&self, ino: u64, size: u64) -> Result<cairn_client::Attr> {
        if size > crate::MAX_FILE_SIZE {
            return Err(Error::new(
                Kind::InvalidArgument,
                "size is past the largest file size",
            ));
        }
        self.flush_inode(ino).await?;
        let known = self.files.with_existing(ino, |s| s.remote_size);
        let old = match known {
            Some(old) => old,
            None => self.posix.get_attr(ino).await?.attr.size,
        };
        let attr = self.posix.truncate(ino, self.chunk_size, old, size).await?;
        self.files.with_existing(ino, |s| {
            s.dirty.truncate(size);
            s.size = attr.size;
            s.remote_size = attr.size;
            s.layout = None;
            s.layout_gen += 1;
        });
        Ok(attr)
    }

    /// `fallocate`: mode 0 grows the file to `off + len` (reading as zeros);
    /// `FALLOC_FL_KEEP_SIZE` alone is accepted as is (space is not reserved ahead);
    /// anything else (punching or zeroing ranges) is `EOPNOTSUPP`.
    pub async fn fallocate(&self, ino: u64, off: u64, len: u64, mode: i32) -> Result<bool> {
        match mode {
            0 => {
                let end = off.checked_add(len).ok_or_else(|| {
                    Error::new(Kind::InvalidArgument, "range is past the largest file size")
                })?;
                let size = match self.files.with_existing(ino, |s| s.size) {
                    Some(s) => s,
                    None => self.posix.get_attr(ino).await?.attr.size,
                };
                if end > size {
                    self.truncate(ino, end).await?;
                    self.cache.forget_attr(ino);
                }
                Ok(true)
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(true),
            _ => Ok(false),
        }
    }
}

async fn join_one(set: &mut tokio::task::JoinSet<Result<()>>) -> Result<()> {
    match set.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(Error::new(Kind::Internal, format!("flush task: {e}"))),
        None => Ok(()),
    }
}

/// What one read sees of this mount's state.
struct Snapshot {
    end: u64,
    remote: u64,
    frozen: Frozen,
    dirty: Frozen,
    layout: Option<Arc<Layout>>,
    generation: u64,
}

impl crate::files::InodeState {
    /// Copies of the buffered bytes in `[off, end)`.
    fn dirty_slice(&self, off: u64, end: u64) -> Frozen {
        if self.dirty.is_empty() {
            return Frozen::default();
        }
        let mut out = vec![0u8; (end - off) as usize];
        let mut mask = vec![0u8; (end - off) as usize];
        self.dirty.overlay(off, &mut out);
        // Marks which bytes are buffered by overlaying a run of ones.
        self.dirty.overlay_mask(off, &mut mask);
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < mask.len() {
            if mask[i] == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < mask.len() && mask[i] != 0 {
                i += 1;
            }
            pieces.push((off + start as u64, Bytes::copy_from_slice(&out[start..i])));
        }
        Frozen(pieces)
    }
}
