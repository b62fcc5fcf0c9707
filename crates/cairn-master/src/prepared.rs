//! Leases handed out with a new file: the first chunk of a file created for writing is
//! placed at once, so its first write needs no `PrepareWrite` (a round trip and an op-log
//! sync for every small file), and joins the file only when that write is committed.
//!
//! - Ids come from ranges set aside durably (`ReserveChunkIds`, 256 at a time), so no
//!   `AllocChunk`, before or after a restart, hands out an id whose replicas may exist.
//! - A prepared chunk is soft state: `(inode, index)` and a deadline. `CommitWrite` with
//!   the chunk in `new_chunks` binds it (`CommitWriteNew`) if it is still prepared here;
//!   otherwise it is `Stale` and the client writes again through `PrepareWrite`.
//! - Until bound, its replicas are orphans to the namespace; orphan collection skips
//!   prepared chunks, and a prepared chunk past its deadline is forgotten (its replicas are
//!   then collected as orphans). A commit holds the chunk (`binding`) so the deadline
//!   cannot pass under it.
//!
//! Must never: hand out an id twice, or let orphan collection delete a chunk that a
//! commit in flight is binding.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_meta::{MetaCommand, MetaResponse};

use crate::cluster::ChunkId;
use crate::error::MasterError;
use crate::metastore::MetaStore;

/// Ids set aside per `ReserveChunkIds`.
const RESERVE_BATCH: u64 = 256;

/// One prepared chunk.
struct Prepared {
    inode: u64,
    index: u64,
    deadline: Instant,
    /// A commit is binding it now.
    binding: bool,
}

/// Prepared first chunks of new files, and the reserved ids they come from.
pub struct PreparedChunks {
    /// The rest of the current reserved range: `(next, end)`.
    ids: tokio::sync::Mutex<(ChunkId, ChunkId)>,
    chunks: Mutex<HashMap<ChunkId, Prepared>>,
    /// How long a prepared chunk waits for its commit.
    keep: Duration,
}

impl PreparedChunks {
    /// `keep`: how long a prepared chunk stays bindable (longer than a lease, so a write
    /// that finished under its lease can still be committed).
    pub fn new(keep: Duration) -> PreparedChunks {
        PreparedChunks {
            ids: tokio::sync::Mutex::new((0, 0)),
            chunks: Mutex::new(HashMap::new()),
            keep,
        }
    }

    fn chunks(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, Prepared>> {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id no chunk has or will have, reserving a new range when this one is used up.
    pub async fn take_id(&self, meta: &MetaStore) -> Result<ChunkId, MasterError> {
        let mut ids = self.ids.lock().await;
        if ids.0 >= ids.1 {
            let cmd = MetaCommand::ReserveChunkIds {
                count: RESERVE_BATCH,
            };
            match meta.propose(None, cmd).await? {
                MetaResponse::ChunkIds { first, count } => *ids = (first, first + count),
                other => {
                    return Err(MasterError::Internal(format!(
                        "unexpected response {other:?}"
                    )));
                }
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Records that `chunk` was placed for slot `index` of file `inode`.
    pub fn insert(&self, chunk: ChunkId, inode: u64, index: u64) {
        self.chunks().insert(
            chunk,
            Prepared {
                inode,
                index,
                deadline: Instant::now() + self.keep,
                binding: false,
            },
        );
    }

    /// Whether `chunk` is prepared (orphan collection leaves it alone).
    pub fn contains(&self, chunk: ChunkId) -> bool {
        self.chunks().contains_key(&chunk)
    }

    /// Marks every chunk of a commit as being bound, after checking each was prepared for
    /// that slot of `inode`; `Stale` (marking none) if one was not.
    pub fn begin_bind(&self, inode: u64, new: &[(u64, ChunkId)]) -> Result<(), MasterError> {
        let mut chunks = self.chunks();
        for &(index, chunk) in new {
            match chunks.get(&chunk) {
                Some(p) if p.inode == inode && p.index == index => {}
                _ => {
                    return Err(MasterError::Stale(format!(
                        "chunk {chunk} for slot {index} of inode {inode} is not prepared here \
                         (the master restarted or the lease lapsed); write it again"
                    )));
                }
            }
        }
        for (_, chunk) in new {
            if let Some(p) = chunks.get_mut(chunk) {
                p.binding = true;
            }
        }
        Ok(())
    }

    /// Ends a bind: bound chunks are now the namespace's; unbound ones stay prepared.
    pub fn end_bind(&self, new: &[(u64, ChunkId)], bound: bool) {
        let mut chunks = self.chunks();
        for (_, chunk) in new {
            if bound {
                chunks.remove(chunk);
            } else if let Some(p) = chunks.get_mut(chunk) {
                p.binding = false;
            }
        }
    }

    /// Removes and returns prepared chunks past their deadline (none being bound).
    pub fn expire(&self, now: Instant) -> Vec<ChunkId> {
        let mut chunks = self.chunks();
        let due: Vec<ChunkId> = chunks
            .iter()
            .filter(|(_, p)| !p.binding && p.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in &due {
            chunks.remove(c);
        }
        due
    }

    /// Chunks prepared now.
    pub fn count(&self) -> usize {
        self.chunks().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_checks_the_slot_and_holds_off_expiry() {
        let p = PreparedChunks::new(Duration::from_secs(60));
        p.insert(7, 100, 0);
        p.insert(8, 101, 0);
        assert!(p.begin_bind(100, &[(1, 7)]).is_err(), "wrong slot");
        assert!(p.begin_bind(101, &[(0, 7)]).is_err(), "wrong file");
        assert!(p.begin_bind(100, &[(0, 9)]).is_err(), "unknown chunk");
        p.begin_bind(100, &[(0, 7)]).unwrap();
        let later = Instant::now() + Duration::from_secs(120);
        assert_eq!(
            p.expire(later),
            vec![8],
            "a chunk being bound does not expire"
        );
        p.end_bind(&[(0, 7)], false);
        assert!(p.contains(7));
        p.begin_bind(100, &[(0, 7)]).unwrap();
        p.end_bind(&[(0, 7)], true);
        assert!(!p.contains(7));
        assert_eq!(p.count(), 0);
    }
}
