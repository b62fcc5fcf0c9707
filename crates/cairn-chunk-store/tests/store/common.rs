//! Helpers shared by the store tests: configs, write/read shortcuts, on-disk paths.

use std::path::{Path, PathBuf};

use cairn_chunk_store::{ChunkStore, RecoveryReport, ReplicaInfo, StoreConfig, StoreError};

/// Chunk capacity used by the tests (1 MiB).
pub const CAP: u64 = 1 << 20;

/// A small-block config so tests cross many blocks with little data.
pub fn cfg() -> StoreConfig {
    StoreConfig {
        block_size: 4096,
        journal_rotate_bytes: 64 << 20,
        reserve_bytes: 0,
        memory_stage_limit: 8192,
    }
}

/// A temporary directory (on tmpfs when `fast` and available, where fsync is free).
pub fn tmpdir(fast: bool) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if fast
        && shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("create temp dir")
}

pub fn open(dir: &Path) -> (ChunkStore, RecoveryReport) {
    open_with(dir, cfg())
}

pub fn open_with(dir: &Path, cfg: StoreConfig) -> (ChunkStore, RecoveryReport) {
    ChunkStore::open(dir, cfg).expect("open store")
}

/// Stages `data` at `offset` in pieces of at most 5000 bytes and commits it.
pub fn write(
    s: &ChunkStore,
    id: u64,
    offset: u64,
    data: &[u8],
    version: u64,
    serial: u64,
    create: bool,
) -> Result<ReplicaInfo, StoreError> {
    let mut st = s.stage(id, offset, CAP)?;
    for piece in data.chunks(5000) {
        st.write(piece)?;
    }
    s.commit_write(st, version, serial, create)
}

/// Reads a whole replica at `version`, in odd-sized pieces.
pub fn read_all(s: &ChunkStore, id: u64, version: u64) -> Vec<u8> {
    let len = s.info(id).expect("replica exists").length;
    let mut out = vec![0u8; len as usize];
    let mut pos = 0;
    while pos < len {
        let end = (pos + 70_001).min(len);
        let n = s
            .read(id, version, pos, &mut out[pos as usize..end as usize])
            .expect("read");
        assert_eq!(n as u64, end - pos);
        pos = end;
    }
    out
}

/// Deterministic non-zero test bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

/// Path of a replica file (the documented layout).
pub fn chunk_file(dir: &Path, id: u64) -> PathBuf {
    dir.join("chunks")
        .join(format!("{:02x}", id & 0xff))
        .join(format!("{id:016x}.chunk"))
}

/// Data offset of a replica of capacity `cap` with block size `bs` (the documented layout).
pub fn data_offset(cap: u64, bs: u64) -> u64 {
    (512 + 4 * cap.div_ceil(bs)).next_multiple_of(4096)
}

/// The journal files, sorted.
pub fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// Number of entries in `staging/`.
pub fn staging_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("staging"))
        .expect("staging dir")
        .count()
}

/// Applies a write to a byte model, zero-filling a gap.
pub fn model_write(m: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let end = offset as usize + data.len();
    if m.len() < end {
        m.resize(end, 0);
    }
    m[offset as usize..end].copy_from_slice(data);
}
