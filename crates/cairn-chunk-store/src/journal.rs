//! The mutation journal: appends records to the current journal file and makes them durable
//! with group commit (committers that arrive while an `fdatasync` is running share the next
//! one), and starts a fresh file at a checkpoint.
//!
//! Invariants:
//! - `synced_upto <= write_pos`, and every byte below `synced_upto` belongs to whole, valid
//!   records that are durable. A committer is told "durable" only once `synced_upto` covers
//!   its record.
//! - A failed append leaves the file cut back to where the record began (nothing partial is
//!   followed by a later record). A failed `fdatasync` cuts the file back to `synced_upto`:
//!   every record not yet known durable is discarded, its committer gets the error, and LSNs
//!   continue from the cut. If even the cut fails, the journal is broken and refuses appends
//!   until the store is reopened.
//! - Records are written under the state mutex, so file order is LSN order; the sync itself
//!   runs without the mutex, so others keep appending meanwhile.
//! - Bytes from `write_pos` to `alloc_end` are zeros written ahead (not holes): appending
//!   into them changes neither the file size nor its extents, so the `fdatasync` of an
//!   append flushes data only instead of also committing the file system's journal, which
//!   other work on the disk (new replica files) keeps busy. Cuts zero bytes rather than
//!   shrinking the file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::faults::{Faults, lock};
use crate::fsutil::fsync_dir;
use crate::record::{
    COPY_BUF, FILE_HEADER_LEN, Payload, RECORD_HEADER_LEN, Record, encode_file_header,
};

/// Zeros written ahead of the append position, in steps of this size.
const PREALLOC_STEP: u64 = 2 << 20;

/// Writes zeros over `from..to`.
fn zero_fill(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; to.saturating_sub(from).min(COPY_BUF as u64) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Writes zeros from `from` towards `want` as far as the disk allows (a nearly full disk
/// must still take journal records, just without zeros ahead); answers where they end.
fn zeros_ahead(file: &File, from: u64, want: u64) -> u64 {
    match zero_fill(file, from, want) {
        Ok(()) => want,
        Err(_) => file.metadata().map_or(from, |m| m.len().max(from)),
    }
}

/// A record's place in the journal, to wait for its durability.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    epoch: u64,
    end: u64,
}

/// The append side of the journal.
pub(crate) struct Journal {
    dir: PathBuf,
    faults: Arc<Faults>,
    state: Mutex<State>,
    synced: Condvar,
    records: AtomicU64,
    syncs: AtomicU64,
}

struct State {
    file: Arc<File>,
    seq: u64,
    next_lsn: u64,
    write_pos: u64,
    /// End of the zeros written ahead of `write_pos` (the file length).
    alloc_end: u64,
    /// End of the durable prefix, and the LSN that follows it.
    synced_upto: u64,
    synced_next_lsn: u64,
    /// Whether a leader is running an `fdatasync` now.
    syncing: bool,
    /// Bumped by every cut after a failed sync; `cuts[e]` is where epoch `e` was cut.
    epoch: u64,
    cuts: Vec<u64>,
    last_error: String,
    broken: Option<String>,
}

/// Path of journal file number `seq`.
pub(crate) fn journal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.jnl"))
}

/// Parses a journal file name (`<16 hex digits>.jnl`) into its sequence number.
pub(crate) fn parse_journal_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".jnl")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Creates journal file `seq` holding only its header, durably (file and directory entry).
fn create_file(dir: &Path, seq: u64, first_lsn: u64, faults: &Faults) -> io::Result<(File, u64)> {
    let path = journal_path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all_at(&encode_file_header(seq, first_lsn), 0)?;
    let alloc_end = zeros_ahead(&file, FILE_HEADER_LEN, PREALLOC_STEP);
    faults.sync_data(&file)?;
    fsync_dir(dir)?;
    Ok((file, alloc_end))
}

impl Journal {
    /// Starts a new, empty journal file `seq` whose first record will carry `first_lsn`.
    pub(crate) fn create(
        dir: &Path,
        seq: u64,
        first_lsn: u64,
        faults: Arc<Faults>,
    ) -> io::Result<Journal> {
        let (file, alloc_end) = create_file(dir, seq, first_lsn, &faults)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            faults,
            state: Mutex::new(State {
                file: Arc::new(file),
                seq,
                next_lsn: first_lsn,
                write_pos: FILE_HEADER_LEN,
                alloc_end,
                synced_upto: FILE_HEADER_LEN,
                synced_next_lsn: first_lsn,
                syncing: false,
                epoch: 0,
                cuts: Vec::new(),
                last_error: String::new(),
                broken: None,
            }),
            synced: Condvar::new(),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        })
    }

    /// Bytes in the current journal file.
    pub(crate) fn len(&self) -> u64 {
        lock(&self.state).write_pos
    }

    /// Records appended and syncs issued since open.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed),
        )
    }

    /// Appends `rec` (its LSN is assigned here) with `payload`, not yet durable.
    pub(crate) fn append(
        &self,
        rec: &mut Record,
        payload: Option<Payload<'_>>,
    ) -> io::Result<Ticket> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.broken {
            return Err(io::Error::other(format!("journal broken: {why}")));
        }
        self.faults.before_write()?;
        rec.lsn = st.next_lsn;
        let start = st.write_pos;
        let need = start + RECORD_HEADER_LEN + payload.map_or(0, |p| p.len());
        match write_record(&st.file, start, rec, payload) {
            Ok(end) => {
                if end > st.alloc_end {
                    // Zeros go after the record, never under it (a large record would
                    // be written twice); this append's sync makes them durable too.
                    st.alloc_end = zeros_ahead(&st.file, end, end + PREALLOC_STEP);
                }
                st.write_pos = end;
                st.next_lsn += 1;
                self.records.fetch_add(1, Ordering::Relaxed);
                Ok(Ticket {
                    epoch: st.epoch,
                    end,
                })
            }
            Err(e) => {
                // Zeros where the record began, within the space written ahead, and no
                // byte past that space (a full disk may have left part of the record there).
                let keep = st.alloc_end.max(start);
                let cut =
                    zero_fill(&st.file, start, need.min(keep)).and_then(|()| st.file.set_len(keep));
                if let Err(cut) = cut {
                    st.broken = Some(format!("cannot cut a failed append: {cut}"));
                }
                Err(e)
            }
        }
    }

    /// Waits until the record of `t` is durable, running the `fdatasync` itself if no one
    /// else is (group commit). Fails if the sync covering the record failed.
    pub(crate) fn wait_durable(&self, t: Ticket) -> io::Result<()> {
        let mut st = lock(&self.state);
        loop {
            if t.epoch != st.epoch {
                let cut = st.cuts.get(t.epoch as usize).copied().unwrap_or(0);
                return if t.end <= cut {
                    Ok(())
                } else {
                    Err(io::Error::other(format!(
                        "journal sync failed, record discarded: {}",
                        st.last_error
                    )))
                };
            }
            if st.synced_upto >= t.end {
                return Ok(());
            }
            if let Some(why) = &st.broken {
                return Err(io::Error::other(format!("journal broken: {why}")));
            }
            if st.syncing {
                st = self.synced.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.syncing = true;
            let (target, target_lsn, file) = (st.write_pos, st.next_lsn, st.file.clone());
            drop(st);
            let res = self.faults.sync_data(&file);
            self.syncs.fetch_add(1, Ordering::Relaxed);
            st = lock(&self.state);
            st.syncing = false;
            match res {
                Ok(()) => {
                    if target > st.synced_upto {
                        st.synced_upto = target;
                        st.synced_next_lsn = target_lsn;
                    }
                }
                Err(e) => cut_after_failed_sync(&mut st, &e),
            }
            self.synced.notify_all();
        }
    }

    /// Starts journal file `seq + 1` and deletes the current one. The caller guarantees that
    /// no record is in flight and that every replica the old file touched is durable.
    pub(crate) fn rotate(&self) -> io::Result<()> {
        let mut st = lock(&self.state);
        if st.syncing || st.synced_upto != st.write_pos {
            return Err(io::Error::other("journal rotation with records in flight"));
        }
        let seq = st.seq + 1;
        let (file, alloc_end) = create_file(&self.dir, seq, st.next_lsn, &self.faults)?;
        st.file = Arc::new(file);
        st.seq = seq;
        st.write_pos = FILE_HEADER_LEN;
        st.alloc_end = alloc_end;
        st.synced_upto = FILE_HEADER_LEN;
        st.synced_next_lsn = st.next_lsn;
        drop(st);
        remove_older(&self.dir, seq)
    }
}

/// Deletes the journal files numbered below `seq`, oldest first, each durably, stopping at
/// the first failure. So the files left always form a contiguous run ending at the newest:
/// an old file is never replayed without every file that followed it.
pub(crate) fn remove_older(dir: &Path, seq: u64) -> io::Result<()> {
    let mut old = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(s) = entry?.file_name().to_str().and_then(parse_journal_name)
            && s < seq
        {
            old.push(s);
        }
    }
    old.sort_unstable();
    for s in old {
        fs::remove_file(journal_path(dir, s))?;
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Discards everything past the durable prefix after a failed `fdatasync`.
fn cut_after_failed_sync(st: &mut State, e: &io::Error) {
    let cut = st.synced_upto;
    st.last_error = e.to_string();
    st.cuts.push(cut);
    st.epoch += 1;
    let end = st.write_pos;
    st.write_pos = cut;
    st.next_lsn = st.synced_next_lsn;
    if let Err(e2) = zero_fill(&st.file, cut, end).and_then(|()| st.file.sync_data()) {
        st.broken = Some(format!("sync failed ({e}), then cutting failed ({e2})"));
    }
}

/// Writes one record at `start`: payload first, header last (so a record whose header made
/// it is whole unless the crash tore it, which the CRCs catch). Returns the record's end.
fn write_record(
    file: &File,
    start: u64,
    rec: &Record,
    payload: Option<Payload<'_>>,
) -> io::Result<u64> {
    let at = start + RECORD_HEADER_LEN;
    let mut crc = 0;
    match payload {
        None => {}
        Some(Payload::Mem(b)) => {
            file.write_all_at(b, at)?;
            crc = crc32c::crc32c(b);
        }
        Some(p @ Payload::File { len, .. }) => {
            let mut buf = vec![0u8; (len.min(COPY_BUF as u64)) as usize];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(COPY_BUF as u64) as usize;
                p.read(done, &mut buf[..n])?;
                file.write_all_at(&buf[..n], at + done)?;
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                done += n as u64;
            }
        }
    }
    let len = payload.map_or(0, |p| p.len());
    debug_assert_eq!(len, rec.payload_len);
    file.write_all_at(&rec.encode(crc), start)?;
    Ok(at + len)
}
