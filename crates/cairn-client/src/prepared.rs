//! Leases the master hands out with a new file for its first chunk (`prepare_write` on a
//! create), so the first write skips `PrepareWrite`, and the chunks written under them
//! until a commit puts them into the file (`CommitWriteRequest.new_chunks`).
//!
//! Such a chunk is not the file's until that commit: if the master no longer knows it
//! (it restarted, or the lease lapsed) the commit is `Stale` and the caller writes the data
//! again the ordinary way. So only callers that still hold their data at commit time create
//! with `prepare_write`: `write_all`, `put_file` and the mount's flush.
//!
//! Must never: use a lease for another slot than the one it was granted for, or drop a
//! written chunk from the next commit of its file.

use std::collections::HashMap;
use std::sync::Mutex;

use cairn_proto::pb;

/// A lease this close to its end is not started on (the primary refuses within 2 s).
const MARGIN_MS: u64 = 10_000;
/// Leases kept before unused expired ones are dropped.
const KEEP: usize = 4096;

/// Prepared leases by inode (always chunk slot 0), and chunks written under them.
#[derive(Default)]
pub(crate) struct PreparedLeases {
    leases: Mutex<HashMap<u64, pb::PrepareWriteResponse>>,
    written: Mutex<HashMap<u64, Vec<(u64, u64)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn expiry(p: &pb::PrepareWriteResponse) -> u64 {
    p.lease.as_ref().map_or(0, |l| l.expiry_unix_ms)
}

impl PreparedLeases {
    /// Keeps the lease a create answered for `inode`'s first chunk.
    pub fn offer(&self, inode: u64, lease: pb::PrepareWriteResponse) {
        let mut leases = lock(&self.leases);
        if leases.len() >= KEEP {
            let now = cairn_common::time::unix_ms();
            leases.retain(|_, l| expiry(l) > now);
        }
        leases.insert(inode, lease);
    }

    /// The prepared lease for slot `index` of `inode`, if one is held and not about to end.
    pub fn lease_for(&self, inode: u64, index: u64) -> Option<pb::PrepareWriteResponse> {
        if index != 0 {
            return None;
        }
        let leases = lock(&self.leases);
        let l = leases.get(&inode)?;
        (expiry(l) > cairn_common::time::unix_ms() + MARGIN_MS).then(|| l.clone())
    }

    /// A write under the prepared lease of `inode` succeeded: its chunk goes with the next
    /// commit.
    pub fn wrote(&self, inode: u64, index: u64, chunk_id: u64) {
        let mut written = lock(&self.written);
        let list = written.entry(inode).or_default();
        if !list.contains(&(index, chunk_id)) {
            list.push((index, chunk_id));
        }
    }

    /// A write under the prepared lease failed: later writes take the ordinary way.
    pub fn failed(&self, inode: u64) {
        lock(&self.leases).remove(&inode);
    }

    /// The chunks to bind with the next commit of `inode`.
    pub fn take_written(&self, inode: u64) -> Vec<(u64, u64)> {
        lock(&self.written).remove(&inode).unwrap_or_default()
    }

    /// The master refused to bind: the lease is of no more use, and the data is written
    /// again the ordinary way.
    pub fn forget(&self, inode: u64) {
        lock(&self.leases).remove(&inode);
        lock(&self.written).remove(&inode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(expiry_unix_ms: u64) -> pb::PrepareWriteResponse {
        pb::PrepareWriteResponse {
            lease: Some(pb::Lease {
                expiry_unix_ms,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_serves_slot_zero_until_near_its_end() {
        let p = PreparedLeases::default();
        let now = cairn_common::time::unix_ms();
        p.offer(5, lease(now + 60_000));
        p.offer(6, lease(now + 1_000));
        assert!(p.lease_for(5, 0).is_some());
        assert!(
            p.lease_for(5, 1).is_none(),
            "only the slot it was granted for"
        );
        assert!(p.lease_for(6, 0).is_none(), "too close to its end");
        p.wrote(5, 0, 77);
        p.wrote(5, 0, 77);
        assert_eq!(p.take_written(5), vec![(0, 77)]);
        assert!(p.take_written(5).is_empty());
        p.failed(5);
        assert!(p.lease_for(5, 0).is_none());
    }
}
