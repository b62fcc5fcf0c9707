//! Staged writes and new replica files.
//!
//! A [`StagedWrite`] collects the bytes of one write while they stream in: in memory up to
//! `memory_stage_limit`, beyond that in a temporary file under `staging/`. That file is laid
//! out as a replica file from the start (data at `data_offset + offset`, the CRC of every
//! completed block computed as the bytes pass), so committing it as a *new* replica only adds
//! the CRC table and header, syncs, and renames: the data is written once and never re-read.
//!
//! Invariants:
//! - A temporary file is removed when its owner is dropped, unless it was renamed into
//!   place, or the store is halted (then it stays, as after a crash, and the next open
//!   removes it).
//! - A [`TempReplica`]'s state (`pos`, CRCs) advances only after its bytes are written, so a
//!   failed append (e.g. `ENOSPC`) can be retried.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;
use crate::direct::{BufPool, DirectWriter, split_aligned};
use crate::faults::Faults;
use crate::format::{Layout, ReplicaHeader, crc_zeros, new_incarnation};
use crate::record::Payload;

/// What staged writes of one store share.
pub(crate) struct StagingCtx {
    /// The `staging/` directory.
    pub(crate) dir: PathBuf,
    /// The store's fault hooks.
    pub(crate) faults: Arc<Faults>,
    /// Staged bytes kept in memory before spilling to a file.
    pub(crate) memory_limit: usize,
    /// Makes temporary file names unique.
    counter: AtomicU64,
    /// Bounce buffers of direct writes.
    bufs: Arc<BufPool>,
}

impl StagingCtx {
    /// Creates the context for the staging directory `dir`.
    pub(crate) fn new(dir: PathBuf, faults: Arc<Faults>, memory_limit: usize) -> Self {
        StagingCtx {
            dir,
            faults,
            memory_limit,
            counter: AtomicU64::new(0),
            bufs: Arc::default(),
        }
    }

    /// Starts a new replica file for `chunk_id` whose data begins at `start` (zeros before),
    /// its whole pages written with `O_DIRECT` if `direct` and the file system allows.
    pub(crate) fn temp_replica(
        &self,
        chunk_id: u64,
        layout: Layout,
        start: u64,
        direct: bool,
    ) -> io::Result<TempReplica> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{chunk_id:016x}-{n:x}.tmp"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let bs = layout.block_size();
        let direct = if direct {
            DirectWriter::open(&path, &self.bufs)
        } else {
            None
        };
        Ok(TempReplica {
            direct,
            tmp: TempFile {
                file,
                path,
                faults: self.faults.clone(),
                keep: false,
            },
            layout,
            start,
            pos: start,
            crcs: Vec::new(),
            flushed: start,
            cur: crc_zeros(start % bs),
        })
    }
}

/// A temporary file removed on drop unless persisted.
pub(crate) struct TempFile {
    file: File,
    path: PathBuf,
    faults: Arc<Faults>,
    keep: bool,
}

impl TempFile {
    /// Renames the file to `to` (same file system); it is no longer removed on drop.
    pub(crate) fn persist(mut self, to: &Path) -> io::Result<()> {
        fs::rename(&self.path, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep && !self.faults.halted() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A replica file being written sequentially from `start`.
pub(crate) struct TempReplica {
    tmp: TempFile,
    /// Writes the whole pages of the data when set (see `direct.rs`).
    direct: Option<DirectWriter>,
    layout: Layout,
    start: u64,
    /// Data length so far (`start` + bytes appended).
    pos: u64,
    /// CRCs of the completed blocks from `start / bs` on.
    crcs: Vec<u32>,
    /// Running CRC of the block containing `pos`.
    cur: u32,
    /// Data bytes below this offset have been handed to the kernel for writeback.
    flushed: u64,
}

/// Writeback of a temp replica is started every this many bytes, so the disk works while
/// data still streams in and the final `fdatasync` has only the tail left to wait for.
const WRITEBACK_STEP: u64 = 8 << 20;

impl TempReplica {
    /// Appends `data` at the current end.
    pub(crate) fn append(&mut self, data: &[u8], faults: &Faults) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        faults.before_write()?;
        let at = self.layout.data_offset() + self.pos;
        self.write_data(data, at)?;
        let bs = self.layout.block_size();
        let mut rest = data;
        while !rest.is_empty() {
            let take = ((bs - self.pos % bs) as usize).min(rest.len());
            self.cur = crc32c::crc32c_append(self.cur, &rest[..take]);
            self.pos += take as u64;
            rest = &rest[take..];
            if self.pos.is_multiple_of(bs) {
                self.crcs.push(self.cur);
                self.cur = 0;
            }
        }
        if self.direct.is_none() && self.pos - self.flushed >= WRITEBACK_STEP {
            let from = self.layout.data_offset() + self.flushed;
            let len = self.pos - self.flushed;
            crate::fsutil::start_writeback(&self.tmp.file, from, len);
            self.flushed = self.pos;
        }
        Ok(())
    }

    /// Writes `data` at file offset `at`: whole pages direct when possible, the ragged
    /// ends (and everything, without direct writes) through the page cache.
    fn write_data(&mut self, data: &[u8], at: u64) -> io::Result<()> {
        let file = &self.tmp.file;
        let Some(d) = self.direct.as_mut() else {
            return file.write_all_at(data, at);
        };
        let (head, run) = split_aligned(at, data.len());
        file.write_all_at(&data[..head], at)?;
        let run_at = at + head as u64;
        if let Err(e) = d.write_at(&data[head..head + run], run_at) {
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            // The file system takes O_DIRECT opens but not these writes: buffer from now on.
            self.direct = None;
            file.write_all_at(&data[head..head + run], run_at)?;
        }
        file.write_all_at(&data[head + run..], run_at + run as u64)
    }

    /// The appended bytes, as a journal payload.
    pub(crate) fn payload(&self) -> Payload<'_> {
        Payload::File {
            file: &self.tmp.file,
            at: self.layout.data_offset() + self.start,
            len: self.pos - self.start,
        }
    }

    /// Completes the file as replica `chunk_id` at `version`/`serial` with a fresh
    /// incarnation: CRC table, exact size, header, `fdatasync`. Returns the file (to rename
    /// into place) and its header.
    pub(crate) fn finish(
        self,
        chunk_id: u64,
        version: u64,
        serial: u64,
        faults: &Faults,
    ) -> io::Result<(TempFile, ReplicaHeader)> {
        let layout = self.layout;
        let bs = layout.block_size();
        let len = self.pos;
        // The whole table is written (zeros past the data) so that later in-place updates
        // of it never need new disk space.
        let mut table = Vec::with_capacity((layout.blocks() * 4) as usize);
        let zero = crc_zeros(bs).to_le_bytes();
        for _ in 0..self.start / bs {
            table.extend_from_slice(&zero);
        }
        for c in &self.crcs {
            table.extend_from_slice(&c.to_le_bytes());
        }
        if !len.is_multiple_of(bs) {
            table.extend_from_slice(&self.cur.to_le_bytes());
        }
        debug_assert_eq!(table.len() as u64, layout.blocks_for(len) * 4);
        table.resize((layout.blocks() * 4) as usize, 0);
        let header = ReplicaHeader {
            chunk_id,
            version,
            length: len,
            serial,
            incarnation: new_incarnation(),
            layout,
        };
        drop(self.direct);
        let file = &self.tmp.file;
        faults.before_write()?;
        file.write_all_at(&table, layout.crc_offset(0))?;
        file.set_len(layout.data_offset() + len)?;
        file.write_all_at(&header.encode(), 0)?;
        faults.sync_data(file)?;
        Ok((self.tmp, header))
    }
}

/// The body of a staged write: in memory, or spilled to a replica-format temporary file.
enum Body {
    Mem(Vec<u8>),
    Temp(TempReplica),
}

/// A write being staged: bytes stream in with [`StagedWrite::write`] and stay invisible
/// until [`crate::ChunkStore::commit_write`] (or [`crate::ChunkStore::install`]). Dropping
/// it discards it, removing any temporary file.
pub struct StagedWrite {
    pub(crate) ctx: Arc<StagingCtx>,
    pub(crate) chunk_id: u64,
    pub(crate) offset: u64,
    /// Geometry a new replica made from this write would have.
    pub(crate) layout: Layout,
    /// Whether a spilled body writes direct (the chunk had no replica when staging began,
    /// so the file most likely becomes one instead of being copied into the journal).
    direct: bool,
    len: u64,
    body: Body,
}

impl StagedWrite {
    /// Starts an empty staged write of `chunk_id` at `offset`.
    pub(crate) fn new(
        ctx: Arc<StagingCtx>,
        chunk_id: u64,
        offset: u64,
        layout: Layout,
        direct: bool,
    ) -> Self {
        StagedWrite {
            ctx,
            chunk_id,
            offset,
            layout,
            direct,
            len: 0,
            body: Body::Mem(Vec::new()),
        }
    }

    /// Appends `data` to the staged bytes (they land at `offset + len()`).
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.ctx.faults.check_alive()?;
        let end = self.offset + self.len + data.len() as u64;
        if end > self.layout.capacity() {
            return Err(StoreError::InvalidArgument(format!(
                "chunk {:016x}: write up to byte {end} beyond capacity {}",
                self.chunk_id,
                self.layout.capacity()
            )));
        }
        let faults = &self.ctx.faults;
        match &mut self.body {
            Body::Mem(v) if v.len() + data.len() <= self.ctx.memory_limit => {
                v.extend_from_slice(data)
            }
            Body::Mem(v) => {
                let mut t =
                    self.ctx
                        .temp_replica(self.chunk_id, self.layout, self.offset, self.direct)?;
                t.append(v, faults)?;
                t.append(data, faults)?;
                self.body = Body::Temp(t);
            }
            Body::Temp(t) => t.append(data, faults)?,
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// Whether `more` bytes would still be kept in memory: then [`StagedWrite::write`] does
    /// no I/O and is cheap enough to call from an async task.
    pub fn stays_in_memory(&self, more: usize) -> bool {
        matches!(&self.body, Body::Mem(v) if v.len() + more <= self.ctx.memory_limit)
    }

    /// Bytes staged so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is staged yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk this write is for.
    pub fn chunk_id(&self) -> u64 {
        self.chunk_id
    }

    /// The chunk offset of the first staged byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the staged bytes are still in memory (not spilled to a temporary file).
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.body, Body::Mem(_))
    }

    /// The staged bytes, as a journal payload.
    pub(crate) fn payload(&self) -> Payload<'_> {
        match &self.body {
            Body::Mem(v) => Payload::Mem(v),
            Body::Temp(t) => t.payload(),
        }
    }

    /// Turns the staged bytes into a replica-format temporary file (spilling from memory if
    /// needed), ready for [`TempReplica::finish`].
    pub(crate) fn into_temp_replica(self) -> io::Result<TempReplica> {
        match self.body {
            Body::Temp(t) => Ok(t),
            Body::Mem(v) => {
                // An empty write does not extend: a replica created by it is empty.
                let start = if v.is_empty() { 0 } else { self.offset };
                let mut t =
                    self.ctx
                        .temp_replica(self.chunk_id, self.layout, start, self.direct)?;
                t.append(&v, &self.ctx.faults)?;
                Ok(t)
            }
        }
    }
}

impl std::fmt::Debug for StagedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedWrite")
            .field("chunk_id", &self.chunk_id)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("in_memory", &matches!(self.body, Body::Mem(_)))
            .finish()
    }
}
