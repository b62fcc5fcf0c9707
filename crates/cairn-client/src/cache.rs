//! Remembered chunk locations, so that reads of files this client has read before keep
//! working while the master is unreachable (restarting, crashed, partitioned away).
//!
//! Every successful location lookup by path is remembered (bounded: the newest
//! `MAX_FILES` files and `MAX_CHUNKS` chunk locations). A read first asks the master as
//! usual; if the master does not answer within `MASTER_GRACE` (or the client's deadline, if
//! shorter) and the path is remembered, the read uses the remembered locations instead of
//! waiting. Without a remembered entry the read waits for the master up to the deadline and
//! then fails with `Timeout`, as every call does.
//!
//! Why this is safe: chunk servers check the version of every read, and every version move
//! (new lease, re-replication) happens through the master, so a remembered location either
//! reads the chunk's bytes or fails (stale, gone) and the read moves on to the next replica
//! or fails; it never returns another chunk's bytes. A remembered entry carries the file
//! length of its lookup, so a read served from it sees the file as of that lookup.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use cairn_proto::{ErrorKind, pb};

use crate::Inner;
use crate::error::Result;

/// Files remembered at most.
const MAX_FILES: usize = 1024;
/// Chunk locations remembered at most, over all files.
const MAX_CHUNKS: usize = 65_536;
/// How long a read waits for the master before it falls back to remembered locations.
pub(crate) const MASTER_GRACE: Duration = Duration::from_secs(2);

/// Chunk locations by path, oldest evicted first.
#[derive(Default)]
pub(crate) struct LocationCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_path: HashMap<String, pb::GetChunksResponse>,
    /// Insertion order, for eviction (a path may appear more than once; stale positions
    /// are skipped).
    order: VecDeque<String>,
    chunks: usize,
}

impl LocationCache {
    /// Remembers the answer to a whole-file lookup of `path`.
    pub(crate) fn put(&self, path: &str, r: &pb::GetChunksResponse) {
        if r.chunks.len() > MAX_CHUNKS {
            return;
        }
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = e.by_path.insert(path.to_string(), r.clone()) {
            e.chunks -= old.chunks.len();
        } else {
            e.order.push_back(path.to_string());
        }
        e.chunks += r.chunks.len();
        while e.by_path.len() > MAX_FILES || e.chunks > MAX_CHUNKS {
            let Some(oldest) = e.order.pop_front() else {
                break;
            };
            if let Some(old) = e.by_path.remove(&oldest) {
                e.chunks -= old.chunks.len();
            }
        }
    }

    /// The remembered answer for `path`, if any.
    pub(crate) fn get(&self, path: &str) -> Option<pb::GetChunksResponse> {
        let e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.by_path.get(path).cloned()
    }

    /// Forgets `path` (this client changed or removed it).
    pub(crate) fn forget(&self, path: &str) {
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = e.by_path.remove(path) {
            e.chunks -= old.chunks.len();
            e.order.retain(|p| p != path);
        }
    }
}

impl Inner {
    /// Attributes and every chunk location of the file at `path` (a validated path), from
    /// the master, or from remembered locations if the master does not answer in time.
    pub(crate) async fn locate_file(&self, path: &str) -> Result<pb::GetChunksResponse> {
        let req = pb::GetChunksRequest {
            path: path.to_string(),
            inode: 0,
            first_index: 0,
            count: 0,
        };
        let ask = self.master.call("get chunks", rpc!(get_chunks, req));
        let Some(remembered) = self.locations.get(path) else {
            let r = ask.await?;
            self.locations.put(path, &r);
            return Ok(r);
        };
        match tokio::time::timeout(MASTER_GRACE.min(self.master.deadline), ask).await {
            Ok(Ok(r)) => {
                self.locations.put(path, &r);
                Ok(r)
            }
            Ok(Err(e)) if !matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unavailable) => {
                if e.kind() == ErrorKind::NotFound {
                    self.locations.forget(path);
                }
                Err(e)
            }
            _ => {
                tracing::info!(
                    path,
                    "the master is not answering; reading from remembered chunk locations"
                );
                Ok(remembered)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(chunks: usize) -> pb::GetChunksResponse {
        pb::GetChunksResponse {
            attr: None,
            chunk_size: 1,
            chunks: (0..chunks as u64)
                .map(|i| pb::ChunkLocation {
                    index: i,
                    chunk_id: i + 1,
                    version: 1,
                    replicas: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn remembers_replaces_and_forgets() {
        let c = LocationCache::default();
        c.put("/a", &answer(2));
        c.put("/a", &answer(3));
        assert_eq!(c.get("/a").map(|r| r.chunks.len()), Some(3));
        c.forget("/a");
        assert!(c.get("/a").is_none());
        assert_eq!(c.inner.lock().unwrap().chunks, 0);
    }

    #[test]
    fn evicts_the_oldest_beyond_the_bounds() {
        let c = LocationCache::default();
        for i in 0..MAX_FILES + 5 {
            c.put(&format!("/f{i}"), &answer(1));
        }
        assert!(c.get("/f0").is_none());
        assert!(c.get(&format!("/f{}", MAX_FILES + 4)).is_some());
        c.put("/big", &answer(MAX_CHUNKS));
        let e = c.inner.lock().unwrap();
        assert!(e.chunks <= MAX_CHUNKS && e.by_path.contains_key("/big"));
    }
}
