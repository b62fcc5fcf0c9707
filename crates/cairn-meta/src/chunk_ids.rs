//! Chunk ids set aside before any file references them, and the commit that binds them:
//! `ReserveChunkIds` and `CommitWriteNew`.
//!
//! The master places a new file's first chunk when it creates the file (so the first write
//! needs no `PrepareWrite`), but the chunk joins the file only when a write to it is
//! committed: a file created and never written, or whose writer died, has a hole there,
//! never a chunk without data. The ids come from reserved ranges, so no later
//! `AllocChunk` (after a restart too) can hand out an id whose replicas may exist.
//!
//! Must never: bind an id that was not set aside or that a chunk already uses, or fill a
//! slot another chunk holds.

use std::collections::BTreeSet;

use crate::state::MetaState;
use crate::{ChunkId, InodeId, MAX_FILE_SIZE, MetaError, MetaResponse, SessionId};

/// Most ids one `ReserveChunkIds` sets aside.
const MAX_RESERVED_CHUNK_IDS: u64 = 1 << 16;

impl MetaState {
    pub(crate) fn reserve_chunk_ids(&mut self, count: u64) -> Result<MetaResponse, MetaError> {
        if count == 0 || count > MAX_RESERVED_CHUNK_IDS {
            return Err(MetaError::invalid(
                format_args!("reserve of {count} chunk ids"),
                "must be 1 to 65536",
            ));
        }
        let first = self.next_chunk;
        self.next_chunk += count;
        Ok(MetaResponse::ChunkIds { first, count })
    }

    pub(crate) fn commit_write_new(
        &mut self,
        inode: InodeId,
        end: u64,
        new_chunks: &[(u64, ChunkId)],
        now_ns: i64,
        session: Option<SessionId>,
    ) -> Result<MetaResponse, MetaError> {
        if end > MAX_FILE_SIZE {
            return Err(MetaError::invalid(
                format_args!("write end {end}"),
                "lies past the largest file size (2^60 bytes)",
            ));
        }
        let chunk_size = self.config_chunk_size();
        let file = self.file(inode)?;
        self.check_write(inode, session)?;
        let (mut indexes, mut ids) = (BTreeSet::new(), BTreeSet::new());
        let mut to_bind = Vec::new();
        for &(index, chunk) in new_chunks {
            if index
                .checked_mul(chunk_size)
                .is_none_or(|offset| offset >= MAX_FILE_SIZE)
            {
                return Err(MetaError::invalid(
                    format_args!("chunk index {index}"),
                    "lies past the largest file size (2^60 bytes)",
                ));
            }
            if !indexes.insert(index) || !ids.insert(chunk) {
                return Err(MetaError::invalid(
                    format_args!("inode {inode}"),
                    "a new chunk or slot is named twice",
                ));
            }
            match file.slots.get(index) {
                Some(held) if held == chunk => {}
                Some(held) => {
                    return Err(MetaError::Stale(format!(
                        "inode {inode}: chunk slot {index} holds chunk {held} now, not {chunk}"
                    )));
                }
                None if chunk == 0 || chunk >= self.next_chunk => {
                    return Err(MetaError::Stale(format!(
                        "chunk {chunk}: not an id the master set aside"
                    )));
                }
                None if self.chunks.contains_key(&chunk) => {
                    return Err(MetaError::Stale(format!(
                        "chunk {chunk}: already in use by another file"
                    )));
                }
                None => to_bind.push((index, chunk)),
            }
        }
        // Checked in full above: from here on nothing fails, so the command is atomic.
        for (index, chunk) in to_bind {
            self.bind_chunk(inode, index, chunk);
        }
        self.commit_write(inode, end, now_ns, session)
    }
}
