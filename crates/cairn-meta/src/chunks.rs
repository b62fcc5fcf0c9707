//! File content commands: AllocChunk, SetChunkVersion, CommitWrite, Truncate,
//! ReserveAppend, and the helpers that keep the chunk table and the byte total in step with
//! the files.
//!
//! Invariants: a chunk is in the chunk table exactly while one file slot references it,
//! with that file's inode and slot index; versions only rise; a file's length and every
//! allocated chunk's offset stay below [`MAX_FILE_SIZE`]; an append reservation is kept
//! only while it lies past the file's length (so `CommitWrite` drops the ones it covers).

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::state::MetaState;
use crate::{Attr, ChunkId, ChunkMeta, InodeId, MAX_FILE_SIZE, MetaError, MetaResponse, SessionId};

/// A chunk table record: [`ChunkMeta`] with a non-zero inode, so that the paged chunk
/// table's `Option<ChunkRec>` costs 24 bytes, no tag. Serializes exactly as `ChunkMeta`
/// (a `NonZeroU64` writes as its `u64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "ChunkMeta")]
pub(crate) struct ChunkRec {
    pub inode: NonZeroU64,
    pub index: u64,
    pub version: u64,
}

impl ChunkRec {
    pub fn meta(&self) -> ChunkMeta {
        ChunkMeta {
            inode: self.inode.get(),
            index: self.index,
            version: self.version,
        }
    }
}

impl MetaState {
    pub(crate) fn alloc_chunk(
        &mut self,
        inode: InodeId,
        index: u64,
    ) -> Result<MetaResponse, MetaError> {
        let chunk_size = self.config_chunk_size();
        let file = self.file(inode)?;
        if index
            .checked_mul(chunk_size)
            .is_none_or(|offset| offset >= MAX_FILE_SIZE)
        {
            return Err(MetaError::invalid(
                format_args!("chunk index {index}"),
                "lies past the largest file size (2^60 bytes)",
            ));
        }
        if let Some(chunk_id) = file.slots.get(index) {
            let version = self.version(chunk_id);
            return Ok(MetaResponse::Chunk {
                chunk_id,
                version,
                fresh: false,
            });
        }
        let chunk_id = self.alloc_chunk_id();
        self.bind_chunk(inode, index, chunk_id);
        Ok(MetaResponse::Chunk {
            chunk_id,
            version: 1,
            fresh: true,
        })
    }

    /// Puts `chunk_id` (version 1) into slot `index` of file `inode`. The caller has checked
    /// that the inode is a file, the slot a hole and the id unused.
    pub(crate) fn bind_chunk(&mut self, inode: InodeId, index: u64, chunk_id: ChunkId) {
        self.chunks.insert(
            chunk_id,
            ChunkRec {
                inode: NonZeroU64::new(inode).expect("inode ids start at 1"),
                index,
                version: 1,
            },
        );
        let file = self
            .node_mut(inode)
            .as_file_mut()
            .expect("checked to be a file by the caller");
        file.slots.insert(index, chunk_id);
    }

    pub(crate) fn set_chunk_version(
        &mut self,
        chunk_id: ChunkId,
        version: u64,
    ) -> Result<MetaResponse, MetaError> {
        let meta = self
            .chunks
            .get_mut(&chunk_id)
            .ok_or_else(|| MetaError::NotFound(format!("chunk {chunk_id}")))?;
        // Never lowers: a late or repeated bump must not undo a newer one.
        meta.version = meta.version.max(version);
        Ok(MetaResponse::Unit)
    }

    pub(crate) fn commit_write(
        &mut self,
        inode: InodeId,
        end: u64,
        now_ns: i64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        if end > MAX_FILE_SIZE {
            return Err(MetaError::invalid(
                format_args!("write end {end}"),
                "lies past the largest file size (2^60 bytes)",
            ));
        }
        let length = self.file(inode)?.length;
        self.check_write(inode, session)?;
        let length = length.max(end);
        self.set_length(inode, length);
        if self.appends.get(&inode).is_some_and(|&r| r <= length) {
            self.appends.remove(&inode);
        }
        let node = self.node_mut(inode);
        node.touch(now_ns);
        Ok(MetaResponse::Attr(node.attr(inode)))
    }

    pub(crate) fn truncate(
        &mut self,
        inode: InodeId,
        size: u64,
        now_ns: i64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        if size > MAX_FILE_SIZE {
            return Err(MetaError::invalid(
                format_args!("size {size}"),
                "is past the largest file size (2^60 bytes)",
            ));
        }
        self.file(inode)?;
        self.check_write(inode, session)?;
        let freed = self.resize(inode, size, now_ns);
        let attr: Attr = self.node(inode).attr(inode);
        Ok(MetaResponse::Truncated { attr, freed })
    }

    /// Sets the length of file `inode` (checked by the caller), freeing the slots past it
    /// and resetting its append reservation; mtime = ctime = now. Returns the freed
    /// chunks, sorted by id.
    pub(crate) fn resize(&mut self, inode: InodeId, size: u64, now_ns: i64) -> Vec<(ChunkId, u64)> {
        let keep_slots = size.div_ceil(self.config_chunk_size());
        let mut freed = Vec::new();
        self.free_slots_from(inode, keep_slots, &mut freed);
        self.set_length(inode, size);
        self.node_mut(inode).touch(now_ns);
        self.appends.remove(&inode);
        freed.sort_unstable();
        freed
    }

    pub(crate) fn reserve_append(
        &mut self,
        inode: InodeId,
        len: u64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        let length = self.file(inode)?.length;
        self.check_write(inode, session)?;
        let offset = self.appends.get(&inode).copied().unwrap_or(0).max(length);
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= MAX_FILE_SIZE)
            .ok_or_else(|| {
                MetaError::invalid(
                    format_args!("append of {len} bytes at {offset}"),
                    "lies past the largest file size (2^60 bytes)",
                )
            })?;
        if end > length {
            self.appends.insert(inode, end);
        }
        Ok(MetaResponse::Offset(offset))
    }

    // ---- helpers that cannot fail

    /// Removes the slots of file `inode` with index >= `keep_slots` and their chunks,
    /// appending `(chunk, version)` of each to `freed`.
    pub(crate) fn free_slots_from(
        &mut self,
        inode: InodeId,
        keep_slots: u64,
        freed: &mut Vec<(ChunkId, u64)>,
    ) {
        let file = self
            .node_mut(inode)
            .as_file_mut()
            .expect("caller checked that this is a file");
        let gone = file.slots.remove_from(keep_slots);
        for slot in gone {
            let meta = self
                .chunks
                .remove(&slot.chunk)
                .expect("every slot's chunk is in the table");
            freed.push((slot.chunk, meta.version));
        }
    }

    /// Sets the length of file `inode`, keeping the byte total in step.
    pub(crate) fn set_length(&mut self, inode: InodeId, length: u64) {
        let file = self
            .node_mut(inode)
            .as_file_mut()
            .expect("caller checked that this is a file");
        let old = std::mem::replace(&mut file.length, length);
        self.counts.bytes = self.counts.bytes - u128::from(old) + u128::from(length);
    }
}
