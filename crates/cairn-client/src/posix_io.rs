//! Data and locks by inode, for mounts: a file's layout (attributes plus where each chunk
//! lives, in one master call), streaming reads over a layout, chunk-split writes, the
//! length commit, truncation, and byte-range locks owned by `(session, owner)`.
//!
//! These are the library's own pipelines (`write.rs`, `read.rs`, `ops.rs`, `session.rs`)
//! exposed by inode; nothing is duplicated. A write is durable on every replica of every
//! chunk it touches when [`Posix::write`] returns, but it becomes part of the file (its
//! length) only at [`Posix::commit`].

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::{ErrorKind, pb};

use crate::error::{Error, Result};
use crate::posix::Posix;
use crate::read::SharedLocations;
use crate::session::LockKind;
use crate::write::Payload;
use crate::{Attr, FileReader};

/// A file as of one moment: attributes, chunk size and where each chunk lives.
#[derive(Clone, Debug)]
pub struct Layout {
    pub attr: Attr,
    pub chunk_size: u64,
    /// Shared by clones, and kept current by the reads through it (see `SharedLocations`).
    chunks: SharedLocations,
}

impl Layout {
    /// The known chunks that `[offset, offset + len)`, clipped to the file's size, touches.
    fn chunks_for(&self, offset: u64, len: u64) -> Vec<pb::ChunkLocation> {
        let end = offset.saturating_add(len).min(self.attr.size);
        self.chunks
            .range(offset / self.chunk_size, end / self.chunk_size)
    }

    /// Whether chunk slot `index` is known to hold data (it may have been written since).
    pub fn has_chunk(&self, index: u64) -> bool {
        self.chunks.has_chunk(index)
    }
}

/// A lock another owner holds, as `F_GETLK` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub session_id: u64,
    pub owner: u64,
    pub kind: LockKind,
    pub start: u64,
    /// Exclusive end; `u64::MAX` means "to the end of the file".
    pub end: u64,
}

fn wire_kind(kind: LockKind) -> i32 {
    let k = match kind {
        LockKind::Shared => pb::LockKind::Shared,
        LockKind::Exclusive => pb::LockKind::Exclusive,
    };
    k as i32
}

impl Posix {
    /// The session this client's locks and writes belong to, opened on first use.
    pub async fn session(&self) -> Result<u64> {
        self.inner.ensure_session().await
    }

    /// Attributes and chunk locations of file `inode` (one master call). A mount calls this
    /// on every open, which is what gives close-to-open consistency.
    pub async fn layout(&self, inode: u64) -> Result<Layout> {
        let (attr, chunk_size, chunks) = self.inner.chunk_locations(inode, 0, 0).await?;
        if chunk_size == 0 {
            return Err(Error::new(
                ErrorKind::Internal,
                "the master reported a chunk size of 0",
            ));
        }
        Ok(Layout {
            attr,
            chunk_size,
            chunks: SharedLocations::new(chunks),
        })
    }

    /// Streams `[offset, offset + len)` of the file as `layout` describes it (clipped to its
    /// length). Replicas that fail are skipped and locations refreshed by the reader.
    pub fn reader(&self, layout: &Layout, offset: u64, len: u64) -> FileReader {
        let chunks = layout.chunks_for(offset, len);
        FileReader::start(
            self.inner.clone(),
            layout.attr.clone(),
            layout.chunk_size,
            chunks,
            Some(layout.chunks.clone()),
            offset,
            len,
        )
    }

    /// The bytes `[offset, offset + len)` of the file `layout` describes (clipped to its
    /// size), read in the caller's task: for short random reads, where a [`FileReader`]'s
    /// background task would cost more than it saves.
    pub async fn read_range(&self, layout: &Layout, offset: u64, len: u64) -> Result<Bytes> {
        let chunks = layout.chunks_for(offset, len);
        crate::read::read_in_place(
            self.inner.clone(),
            &layout.attr,
            layout.chunk_size,
            chunks,
            Some(layout.chunks.clone()),
            offset,
            len,
        )
        .await
    }

    /// Writes `data` at `offset` of file `inode`, split at chunk boundaries with up to
    /// `parallel` chunks in flight; durable on every replica when it returns. The file's
    /// length covers it only after [`Posix::commit`].
    pub async fn write(
        &self,
        inode: u64,
        chunk_size: u64,
        offset: u64,
        data: Bytes,
        parallel: usize,
    ) -> Result<()> {
        if offset.checked_add(data.len() as u64).is_none() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "write past the largest file size",
            ));
        }
        self.inner
            .write_range(inode, chunk_size, offset, Payload::Memory(data), parallel)
            .await
    }

    /// Records that bytes up to `end` are written: length = max(length, end), mtime = now.
    pub async fn commit(&self, inode: u64, end: u64) -> Result<Attr> {
        self.inner.commit_write(inode, end).await
    }

    /// Sets the length of file `inode` from `old` to `size` (shrinking drops the tail,
    /// growing reads as zeros).
    pub async fn truncate(&self, inode: u64, chunk_size: u64, old: u64, size: u64) -> Result<Attr> {
        self.inner
            .truncate_inode(inode, chunk_size, old, size)
            .await
    }

    /// Takes a byte-range lock `[start, end)` (`end` `u64::MAX`: to infinity) for `owner`
    /// in this client's session. With `wait`, waits up to that long in the master's fair
    /// queue (then `Timeout`); without, fails at once with `Locked`.
    pub async fn lock(
        &self,
        inode: u64,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
        wait: Option<Duration>,
    ) -> Result<()> {
        let session_id = self.session().await?;
        let req = pb::LockRequest {
            req: Some(self.inner.master.request_id()),
            session_id,
            path: String::new(),
            inode,
            owner,
            kind: wire_kind(kind),
            start,
            end: if end == u64::MAX { 0 } else { end },
            mandatory: false,
            wait_ms: wait.map_or(0, |d| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64),
        };
        let mut events = self.inner.master.call("lock", rpc!(lock, req)).await?;
        let limit = wait
            .unwrap_or_default()
            .saturating_add(self.inner.master.deadline);
        let granted = async {
            loop {
                match events.message().await {
                    Ok(Some(ev)) if ev.granted => return Ok(()),
                    Ok(Some(_queued)) => {}
                    Ok(None) => {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "the master ended the lock stream",
                        ));
                    }
                    Err(s) => return Err(Error::from(s)),
                }
            }
        };
        tokio::time::timeout(limit, granted).await.map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!("no answer to the lock request within {limit:?}"),
            )
        })?
    }

    /// Releases `owner`'s locks over `[start, end)` (`end` `u64::MAX`: to infinity).
    pub async fn unlock(&self, inode: u64, owner: u64, start: u64, end: u64) -> Result<()> {
        let session_id = self.inner.session_id();
        if session_id == 0 {
            return Ok(());
        }
        let req = pb::UnlockRequest {
            session_id,
            path: String::new(),
            inode,
            owner,
            start,
            end: if end == u64::MAX { 0 } else { end },
        };
        self.inner.master.call("unlock", rpc!(unlock, req)).await?;
        Ok(())
    }

    /// `F_GETLK`: the first lock of another owner that a lock `(owner, kind, [start, end))`
    /// would conflict with.
    pub async fn test_lock(
        &self,
        inode: u64,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Result<Option<LockHolder>> {
        let session_id = self.session().await?;
        let req = pb::TestLockRequest {
            session_id,
            inode,
            owner,
            kind: wire_kind(kind),
            start,
            end: if end == u64::MAX { 0 } else { end },
        };
        let r = self
            .inner
            .master
            .call("test lock", rpc!(test_lock, req))
            .await?;
        Ok(r.conflict.map(|h| LockHolder {
            session_id: h.session_id,
            owner: h.owner,
            kind: match pb::LockKind::try_from(h.kind) {
                Ok(pb::LockKind::Shared) => LockKind::Shared,
                _ => LockKind::Exclusive,
            },
            start: h.start,
            end: if h.end == 0 { u64::MAX } else { h.end },
        }))
    }

    /// Closes the session, releasing every lock it holds.
    pub async fn close_session(&self) -> Result<()> {
        crate::Client {
            inner: self.inner.clone(),
        }
        .close_session()
        .await
    }
}
