//! The mutating operations of [`ChunkStore`]: request checks (version, serial, capacity,
//! reserve) and the two commit paths.
//!
//! - Small new replica (a first write still staged in memory): a `Create` record holding the
//!   bytes goes to the journal and is made durable (group commit, shared with every other
//!   write of the store), then the replica file is written without a sync. One journal
//!   sync instead of a file and a directory sync each: what makes small files cheap. The
//!   checkpoint syncs the file and its directory before the journal is retired.
//! - Large new replica (spilled to disk, or [`ChunkStore::install`]): the staged bytes
//!   become a replica-format temporary file; [`TempReplica::finish`] adds CRC table and
//!   header and syncs it; it is renamed into place and the directory synced. Nothing is
//!   visible before it is durable, and the data is written once.
//! - Existing replica: space for the write is reserved, a record goes to the journal and is
//!   made durable (group commit), then applied in place without a sync. The chunk's write
//!   lock is held throughout, so its mutations apply in serial order.

use std::fs::OpenOptions;
use std::sync::Arc;

use super::{ChunkStore, SlotState, check_poisoned, read};
use crate::faults::{CrashPoint, lock};
use crate::format::new_incarnation;
use crate::format::{Layout, ReplicaHeader, chunk_path};
use crate::fsutil::{fsync_dir, preallocate, statvfs};
use crate::record::encode_layout;
use crate::record::{Payload, Record, RecordKind};
use crate::replica::{apply, create};
use crate::staging::{StagedWrite, TempReplica};
use crate::{ReplicaInfo, StoreError};

impl ChunkStore {
    /// Commits a staged write, durably. An existing replica must be at `version` (else
    /// [`StoreError::Stale`]) and `serial` must be its serial + 1 (else
    /// [`StoreError::OutOfOrder`]). Without a replica, `create` must be set (else
    /// [`StoreError::NotFound`]) and `serial` must be 1; the new replica is at `version`.
    pub fn commit_write(
        &self,
        staged: StagedWrite,
        version: u64,
        serial: u64,
        create: bool,
    ) -> Result<ReplicaInfo, StoreError> {
        self.faults.check_alive()?;
        self.check_own(&staged)?;
        let id = staged.chunk_id;
        let res = {
            let _gate = read(&self.gate);
            self.with_slot(id, create, |st| match st.header {
                Some(h) => {
                    self.check_mutation(st, &h, version, serial)?;
                    let (offset, len) = (staged.offset, staged.len());
                    let end = offset + len;
                    if end > h.layout.capacity() {
                        return Err(StoreError::InvalidArgument(format!(
                            "chunk {id:016x}: write up to byte {end} beyond capacity {}",
                            h.layout.capacity()
                        )));
                    }
                    let new_length = if len == 0 {
                        h.length
                    } else {
                        h.length.max(end)
                    };
                    let rec = Record {
                        kind: RecordKind::Write,
                        lsn: 0,
                        chunk_id: id,
                        incarnation: h.incarnation,
                        version,
                        serial,
                        prev_length: h.length,
                        new_length,
                        offset,
                        payload_len: len,
                    };
                    self.commit_record(st, &h, rec, Some(staged.payload()))
                }
                None if !create => Err(StoreError::NotFound(id)),
                None => {
                    check_first_serial(id, serial)?;
                    self.check_reserve()?;
                    if staged.in_memory() {
                        return self.create_journaled(st, &staged, version, serial);
                    }
                    let t = staged.into_temp_replica()?;
                    self.publish_new(st, id, t, version, serial)
                }
            })
        };
        self.maybe_rotate();
        res
    }

    /// The journaled create of a small new replica (see the module comment).
    fn create_journaled(
        &self,
        st: &mut SlotState,
        staged: &StagedWrite,
        version: u64,
        serial: u64,
    ) -> Result<ReplicaInfo, StoreError> {
        let id = staged.chunk_id;
        let len = staged.len();
        // An empty write does not extend: a replica created by it is empty.
        let offset = if len == 0 { 0 } else { staged.offset };
        let mut rec = Record {
            kind: RecordKind::Create,
            lsn: 0,
            chunk_id: id,
            incarnation: new_incarnation(),
            version,
            serial,
            prev_length: encode_layout(&staged.layout),
            new_length: if len == 0 { 0 } else { offset + len },
            offset,
            payload_len: len,
        };
        let payload = staged.payload();
        let ticket = self.journal.append(&mut rec, Some(payload))?;
        self.journal.wait_durable(ticket)?;
        self.faults.crash_point(CrashPoint::AfterJournalSync)?;
        lock(&self.touched).insert(id, true);
        let path = chunk_path(&self.chunks_dir, id);
        match create(&path, &rec, staged.layout, Some(payload), &self.faults) {
            Ok((_, h)) => {
                st.header = Some(h);
                self.unpoison(st);
                Ok(h.info())
            }
            Err(e) => {
                // The record is durable; replay at the next open makes the replica.
                self.poison(st);
                Err(e.into())
            }
        }
    }

    /// Sets the replica's length to `length` (shrinking drops bytes, growing adds zeros),
    /// durably, under the same version/serial/create rules as [`ChunkStore::commit_write`].
    #[allow(clippy::too_many_arguments)]
    pub fn truncate(
        &self,
        chunk_id: u64,
        version: u64,
        serial: u64,
        create: bool,
        length: u64,
        capacity: u64,
    ) -> Result<ReplicaInfo, StoreError> {
        self.faults.check_alive()?;
        let id = chunk_id;
        let res = {
            let _gate = read(&self.gate);
            self.with_slot(id, create, |st| match st.header {
                Some(h) => {
                    self.check_mutation(st, &h, version, serial)?;
                    check_length(id, length, h.layout.capacity())?;
                    let rec = Record {
                        kind: RecordKind::Truncate,
                        lsn: 0,
                        chunk_id: id,
                        incarnation: h.incarnation,
                        version,
                        serial,
                        prev_length: h.length,
                        new_length: length,
                        offset: 0,
                        payload_len: 0,
                    };
                    self.commit_record(st, &h, rec, None)
                }
                None if !create => Err(StoreError::NotFound(id)),
                None => {
                    check_first_serial(id, serial)?;
                    let layout = Layout::new(self.cfg.block_size, capacity)
                        .map_err(StoreError::InvalidArgument)?;
                    check_length(id, length, capacity)?;
                    self.check_reserve()?;
                    let t = self.staging.temp_replica(id, layout, length, false)?;
                    self.publish_new(st, id, t, version, serial)
                }
            })
        };
        self.maybe_rotate();
        res
    }

    /// Moves a replica from version `from` to `to` (`to > from`), resetting its serial to 0,
    /// durably. Succeeds without change if it is already at `to`; [`StoreError::Stale`] if it
    /// is at neither.
    pub fn set_version(
        &self,
        chunk_id: u64,
        from: u64,
        to: u64,
    ) -> Result<ReplicaInfo, StoreError> {
        self.faults.check_alive()?;
        if to <= from {
            return Err(StoreError::InvalidArgument(format!(
                "chunk {chunk_id:016x}: new version {to} not above {from}"
            )));
        }
        let res = {
            let _gate = read(&self.gate);
            self.with_slot(chunk_id, false, |st| {
                let h = st.header.ok_or(StoreError::NotFound(chunk_id))?;
                check_poisoned(chunk_id, st)?;
                if h.version == to {
                    return Ok(h.info());
                }
                if h.version != from {
                    return Err(StoreError::Stale {
                        chunk_id,
                        have: h.version,
                        want: from,
                    });
                }
                let rec = Record {
                    kind: RecordKind::SetVersion,
                    lsn: 0,
                    chunk_id,
                    incarnation: h.incarnation,
                    version: to,
                    serial: 0,
                    prev_length: h.length,
                    new_length: h.length,
                    offset: 0,
                    payload_len: 0,
                };
                self.commit_record(st, &h, rec, None)
            })
        };
        self.maybe_rotate();
        res
    }

    /// Installs a complete replica copied from a peer (staged from offset 0), replacing any
    /// existing replica of the chunk atomically and durably.
    pub fn install(
        &self,
        staged: StagedWrite,
        version: u64,
        serial: u64,
    ) -> Result<ReplicaInfo, StoreError> {
        self.faults.check_alive()?;
        self.check_own(&staged)?;
        let id = staged.chunk_id;
        if staged.offset != 0 {
            return Err(StoreError::InvalidArgument(format!(
                "chunk {id:016x}: install must be staged from offset 0, not {}",
                staged.offset
            )));
        }
        self.check_reserve()?;
        self.with_slot(id, true, |st| {
            let t = staged.into_temp_replica()?;
            self.publish_new(st, id, t, version, serial)
        })
    }

    /// Checks that a mutation at `version`/`serial` may apply to the replica `h`.
    fn check_mutation(
        &self,
        st: &SlotState,
        h: &ReplicaHeader,
        version: u64,
        serial: u64,
    ) -> Result<(), StoreError> {
        check_poisoned(h.chunk_id, st)?;
        if h.version != version {
            return Err(StoreError::Stale {
                chunk_id: h.chunk_id,
                have: h.version,
                want: version,
            });
        }
        if h.serial.checked_add(1) != Some(serial) {
            return Err(StoreError::OutOfOrder {
                chunk_id: h.chunk_id,
                have: h.serial,
                got: serial,
            });
        }
        Ok(())
    }

    /// The journaled commit: reserve space, append, wait for durability (group commit),
    /// then apply in place without a sync.
    fn commit_record(
        &self,
        st: &mut SlotState,
        base: &ReplicaHeader,
        mut rec: Record,
        payload: Option<Payload<'_>>,
    ) -> Result<ReplicaInfo, StoreError> {
        let id = base.chunk_id;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(chunk_path(&self.chunks_dir, id))?;
        if rec.kind == RecordKind::Write && rec.payload_len > 0 {
            self.faults.before_write()?;
            preallocate(
                &file,
                base.layout.data_offset() + rec.offset,
                rec.payload_len,
            )?;
        }
        let ticket = self.journal.append(&mut rec, payload)?;
        self.journal.wait_durable(ticket)?;
        self.faults.crash_point(CrashPoint::AfterJournalSync)?;
        lock(&self.touched).entry(id).or_insert(false);
        match apply(&file, base, &rec, payload, &self.faults) {
            Ok(h) => {
                st.header = Some(h);
                Ok(h.info())
            }
            Err(e) => {
                self.poison(st);
                Err(e.into())
            }
        }
    }

    /// Completes a new replica file and renames it into place (replacing any replica of the
    /// chunk), durably.
    fn publish_new(
        &self,
        st: &mut SlotState,
        id: u64,
        t: TempReplica,
        version: u64,
        serial: u64,
    ) -> Result<ReplicaInfo, StoreError> {
        let (tmp, h) = t.finish(id, version, serial, &self.faults)?;
        self.faults.crash_point(CrashPoint::BeforeRename)?;
        let path = chunk_path(&self.chunks_dir, id);
        tmp.persist(&path)?;
        // The rename is visible from here on, so the slot follows it even if the directory
        // sync fails (then the caller gets the error and the replica is suspect).
        st.header = Some(h);
        self.unpoison(st);
        fsync_dir(path.parent().unwrap_or(&self.chunks_dir))?;
        Ok(h.info())
    }

    /// Refuses new replicas while free space is below the reserve.
    pub(super) fn check_reserve(&self) -> Result<(), StoreError> {
        let reserve = self.cfg.reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let (_, free, _) = statvfs(&self.root)?;
        if free < reserve {
            return Err(StoreError::NoSpace(format!(
                "{free} bytes free, below the reserve of {reserve}"
            )));
        }
        Ok(())
    }

    fn check_own(&self, staged: &StagedWrite) -> Result<(), StoreError> {
        if Arc::ptr_eq(&staged.ctx, &self.staging) {
            Ok(())
        } else {
            Err(StoreError::InvalidArgument(
                "staged write belongs to another store".into(),
            ))
        }
    }
}

fn check_first_serial(chunk_id: u64, serial: u64) -> Result<(), StoreError> {
    if serial == 1 {
        Ok(())
    } else {
        Err(StoreError::OutOfOrder {
            chunk_id,
            have: 0,
            got: serial,
        })
    }
}

fn check_length(chunk_id: u64, length: u64, capacity: u64) -> Result<(), StoreError> {
    if length <= capacity {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "chunk {chunk_id:016x}: length {length} beyond capacity {capacity}"
        )))
    }
}
