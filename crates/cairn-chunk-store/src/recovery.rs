//! Opening a store: directory setup, the exclusive lock, removal of leftover staging files,
//! header validation of every replica, journal replay, and the checkpoint that ends recovery.
//!
//! Invariants on return:
//! - Every replica in the result has a valid header, its file is exactly
//!   `data_offset + length` bytes, and everything replay changed is durable.
//! - Every journal file found was replayed up to its first invalid record and then deleted;
//!   a fresh, empty journal file (numbered after all of them) is the current one.
//! - Recovery is itself crash-safe: old journal files are deleted only after the replicas
//!   they touched are synced, so a crash during recovery just replays again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::faults::Faults;
use crate::format::{HEADER_LEN, Layout, ReplicaHeader, chunk_path, parse_chunk_name};
use crate::fsutil::{fsync_dir, lock_exclusive, read_at_or_zero};
use crate::journal::{Journal, journal_path, parse_journal_name, remove_older};
use crate::record::{JournalReader, Payload, Record, RecordKind};
use crate::replica::{apply, check_create, check_record, create};
use crate::{RecoveryReport, StoreConfig, StoreError};

/// Directory names under the store root.
pub(crate) const CHUNKS_DIR: &str = "chunks";
pub(crate) const STAGING_DIR: &str = "staging";
pub(crate) const JOURNAL_DIR: &str = "journal";
const LOCK_FILE: &str = "LOCK";

/// What recovery hands to the store.
pub(crate) struct Recovered {
    pub(crate) lock_file: File,
    pub(crate) headers: HashMap<u64, ReplicaHeader>,
    pub(crate) journal: Journal,
    pub(crate) report: RecoveryReport,
}

/// Recovers the store at `root` (creating it if needed).
pub(crate) fn recover(
    root: &Path,
    cfg: &StoreConfig,
    faults: &Arc<Faults>,
) -> Result<Recovered, StoreError> {
    Layout::new(cfg.block_size, 1).map_err(StoreError::InvalidArgument)?;
    let chunks = root.join(CHUNKS_DIR);
    let staging = root.join(STAGING_DIR);
    let journal_dir = root.join(JOURNAL_DIR);
    let fresh = !root.join(LOCK_FILE).exists();
    for d in [&chunks, &staging, &journal_dir] {
        fs::create_dir_all(d)?;
    }
    if fresh {
        fsync_dir(root)?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join(LOCK_FILE))?;
    lock_exclusive(&lock_file).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(
                e.kind(),
                format!("store {} is in use by another process", root.display()),
            )
        } else {
            e
        }
    })?;

    let mut report = RecoveryReport {
        temp_files_removed: clear_staging(&staging)?,
        ..RecoveryReport::default()
    };
    let mut headers = scan_replicas(&chunks, &mut report)?;

    let mut journals = Vec::new();
    for entry in fs::read_dir(&journal_dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_journal_name) {
            journals.push(seq);
        }
    }
    journals.sort_unstable();
    let mut touched = HashSet::new();
    let mut created = HashSet::new();
    let mut next_lsn = 1;
    for &seq in &journals {
        let mut reader = JournalReader::open(&journal_path(&journal_dir, seq))?;
        let mut replay = Replay {
            chunks: &chunks,
            headers: &mut headers,
            touched: &mut touched,
            created: &mut created,
            open: None,
            faults,
        };
        while let Some((rec, at)) = reader.next()? {
            if replay.apply(&rec, at, reader.file())? {
                report.journal_records_replayed += 1;
            }
        }
        report.torn_tail_cut |= reader.torn();
        next_lsn = next_lsn.max(reader.next_lsn());
    }

    // Checkpoint: make replay's effects and exact file sizes durable, then retire journals.
    for (&id, h) in &headers {
        let path = chunk_path(&chunks, id);
        let want = h.layout.data_offset() + h.length;
        if touched.contains(&id) || fs::metadata(&path)?.len() != want {
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(want)?;
            faults.sync_data(&f)?;
        }
    }
    let mut dirs: Vec<PathBuf> = created
        .iter()
        .filter_map(|&id| chunk_path(&chunks, id).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        fsync_dir(&d)?;
    }
    // A replica a Create record restored is not lost after all.
    report
        .bad_replicas_removed
        .retain(|id| !created.contains(id));
    let seq = journals.last().map_or(1, |s| s + 1);
    let journal = Journal::create(&journal_dir, seq, next_lsn, faults.clone())?;
    remove_older(&journal_dir, seq)?;
    report.replicas = headers.len();
    Ok(Recovered {
        lock_file,
        headers,
        journal,
        report,
    })
}

/// Removes everything in `staging/`; returns how many entries went.
fn clear_staging(staging: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
        removed += 1;
    }
    if removed > 0 {
        fsync_dir(staging)?;
    }
    Ok(removed)
}

/// Creates the 256 fan-out directories and reads every replica header; replicas with an
/// invalid header (or one naming another chunk) are removed and reported.
fn scan_replicas(
    chunks: &Path,
    report: &mut RecoveryReport,
) -> io::Result<HashMap<u64, ReplicaHeader>> {
    let mut created = false;
    let mut headers = HashMap::new();
    for low in 0..=255u64 {
        let dir = chunks.join(format!("{low:02x}"));
        if !dir.exists() {
            fs::create_dir(&dir)?;
            created = true;
            continue;
        }
        let mut removed = false;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(parse_chunk_name) else {
                continue;
            };
            let path: PathBuf = entry.path();
            match read_header(&path) {
                Ok(h) if h.chunk_id == id && id & 0xff == low => {
                    headers.insert(id, h);
                }
                Ok(_) | Err(_) => {
                    fs::remove_file(&path)?;
                    report.bad_replicas_removed.push(id);
                    removed = true;
                }
            }
        }
        if removed {
            fsync_dir(&dir)?;
        }
    }
    if created {
        fsync_dir(chunks)?;
    }
    report.bad_replicas_removed.sort_unstable();
    Ok(headers)
}

/// Reads and validates the header of the replica file at `path`.
fn read_header(path: &Path) -> Result<ReplicaHeader, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let mut b = [0u8; HEADER_LEN as usize];
    let n = read_at_or_zero(&f, &mut b, 0).map_err(|e| e.to_string())?;
    if n < b.len() {
        return Err("short header".into());
    }
    ReplicaHeader::decode(&b)
}

/// Replay state while reading one journal file.
struct Replay<'a> {
    chunks: &'a Path,
    headers: &'a mut HashMap<u64, ReplicaHeader>,
    touched: &'a mut HashSet<u64>,
    /// Replicas that `Create` or `Delete` records (re)made or removed: their directories
    /// need a sync.
    created: &'a mut HashSet<u64>,
    /// The replica file opened last (records of one chunk tend to come in runs).
    open: Option<(u64, File)>,
    faults: &'a Faults,
}

impl Replay<'_> {
    /// Re-applies `rec` (payload at `at` of `journal`) if its replica file still exists with
    /// the incarnation the record names. Returns whether it was applied.
    fn apply(&mut self, rec: &Record, at: u64, journal: &File) -> io::Result<bool> {
        if rec.kind == RecordKind::Create {
            return self.create(rec, at, journal);
        }
        if rec.kind == RecordKind::Delete {
            return self.delete(rec);
        }
        let Some(base) = self.headers.get(&rec.chunk_id).copied() else {
            return Ok(false);
        };
        if base.incarnation != rec.incarnation || check_record(&base.layout, rec).is_err() {
            return Ok(false);
        }
        if self.open.as_ref().map(|(id, _)| *id) != Some(rec.chunk_id) {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(chunk_path(self.chunks, rec.chunk_id))?;
            self.open = Some((rec.chunk_id, f));
        }
        let Some((_, file)) = &self.open else {
            return Ok(false);
        };
        let payload = (rec.kind == RecordKind::Write).then_some(Payload::File {
            file: journal,
            at,
            len: rec.payload_len,
        });
        let h = apply(file, &base, rec, payload, self.faults)?;
        self.headers.insert(rec.chunk_id, h);
        self.touched.insert(rec.chunk_id);
        Ok(true)
    }

    /// Deletes the replica again if it is still the incarnation the record names.
    fn delete(&mut self, rec: &Record) -> io::Result<bool> {
        if self.headers.get(&rec.chunk_id).map(|h| h.incarnation) != Some(rec.incarnation) {
            return Ok(false);
        }
        if self
            .open
            .as_ref()
            .is_some_and(|(id, _)| *id == rec.chunk_id)
        {
            self.open = None;
        }
        match fs::remove_file(chunk_path(self.chunks, rec.chunk_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.headers.remove(&rec.chunk_id);
        self.touched.remove(&rec.chunk_id);
        self.created.insert(rec.chunk_id);
        Ok(true)
    }

    /// Re-creates the replica of a `Create` record, unless a replica of a newer version
    /// (or the same version but another incarnation, e.g. a copy installed since) replaced
    /// it. A file of this incarnation is rewritten whole; later records re-apply on top.
    fn create(&mut self, rec: &Record, at: u64, journal: &File) -> io::Result<bool> {
        let Ok(layout) = check_create(rec) else {
            return Ok(false);
        };
        if let Some(h) = self.headers.get(&rec.chunk_id)
            && h.incarnation != rec.incarnation
            && h.version >= rec.version
        {
            return Ok(false);
        }
        let payload = Payload::File {
            file: journal,
            at,
            len: rec.payload_len,
        };
        let path = chunk_path(self.chunks, rec.chunk_id);
        let (file, h) = create(&path, rec, layout, Some(payload), self.faults)?;
        self.open = Some((rec.chunk_id, file));
        self.headers.insert(rec.chunk_id, h);
        self.touched.insert(rec.chunk_id);
        self.created.insert(rec.chunk_id);
        Ok(true)
    }
}
