//! The replica file format: the 512-byte header, the CRC table, where data starts, what a
//! block's CRC covers, and how replica files are named. `docs/formats.md` describes the same
//! bytes for humans; the two change together.
//!
//! Invariants:
//! - A header decodes only if its magic, format version and CRC32C match and its fields are
//!   self-consistent (`data_offset` is the one [`Layout`] computes, `length <= capacity`, ...);
//!   anything read from disk goes through [`ReplicaHeader::decode`] before it is trusted.
//! - The CRC of block `i` covers data bytes `[i * bs, min((i + 1) * bs, length))`; entries of
//!   blocks at or past `ceil(length / bs)` are meaningless and never checked.
//! - Data bytes at or past `length` read as zeros: the file is exactly `data_offset + length`
//!   bytes long, so the file system supplies the zeros when a replica grows again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ReplicaInfo;

/// Size of the header at offset 0 (one disk sector, so a header write is not torn).
pub(crate) const HEADER_LEN: u64 = 512;
/// First bytes of every replica file.
pub(crate) const MAGIC: [u8; 8] = *b"CAIRNCHK";
/// Version of the replica format this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Alignment of the data region.
pub(crate) const DATA_ALIGN: u64 = 4096;
/// Smallest block size accepted.
pub(crate) const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size accepted.
pub(crate) const MAX_BLOCK_SIZE: u32 = 16 << 20;
/// Largest chunk capacity accepted (1 TiB).
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;
/// Largest number of blocks (bounds the CRC table at 16 MiB).
pub(crate) const MAX_BLOCKS: u64 = 1 << 22;
/// Offset of the header CRC (covers bytes `0..HEADER_CRC_AT`).
const HEADER_CRC_AT: usize = 508;

/// Geometry of a replica: block size and capacity, and what follows from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    block_size: u32,
    capacity: u64,
}

impl Layout {
    /// Validates a geometry.
    pub(crate) fn new(block_size: u32, capacity: u64) -> Result<Layout, String> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(format!(
                "block size {block_size} is not a power of two in {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE}"
            ));
        }
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(format!("capacity {capacity} is not in 1..={MAX_CAPACITY}"));
        }
        let layout = Layout {
            block_size,
            capacity,
        };
        if layout.blocks() > MAX_BLOCKS {
            return Err(format!(
                "capacity {capacity} needs more than {MAX_BLOCKS} blocks of {block_size}"
            ));
        }
        Ok(layout)
    }

    /// Bytes per block.
    pub(crate) fn block_size(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// Maximum replica length.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Number of blocks (and CRC table entries) a full replica has.
    pub(crate) fn blocks(&self) -> u64 {
        self.blocks_for(self.capacity)
    }

    /// Number of blocks holding data when the replica is `len` bytes long.
    pub(crate) fn blocks_for(&self, len: u64) -> u64 {
        len.div_ceil(self.block_size())
    }

    /// File offset of the CRC table entry of `block`.
    pub(crate) fn crc_offset(&self, block: u64) -> u64 {
        HEADER_LEN + 4 * block
    }

    /// File offset of data byte 0.
    pub(crate) fn data_offset(&self) -> u64 {
        self.crc_offset(self.blocks()).next_multiple_of(DATA_ALIGN)
    }

    /// Data range `[start, end)` that block `block` covers when the replica is `len` long.
    pub(crate) fn block_range(&self, block: u64, len: u64) -> (u64, u64) {
        let start = block * self.block_size();
        (start, (start + self.block_size()).min(len))
    }
}

/// The decoded header of a replica file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaHeader {
    /// Chunk id (also in the file name).
    pub(crate) chunk_id: u64,
    /// Chunk version.
    pub(crate) version: u64,
    /// Data length in bytes.
    pub(crate) length: u64,
    /// Last mutation serial applied at `version`.
    pub(crate) serial: u64,
    /// Random id of this file's lifetime: journal records name it, so records of a deleted
    /// or replaced replica never touch its successor.
    pub(crate) incarnation: u64,
    /// Block size and capacity.
    pub(crate) layout: Layout,
}

impl ReplicaHeader {
    /// The public view of this header.
    pub(crate) fn info(&self) -> ReplicaInfo {
        ReplicaInfo {
            chunk_id: self.chunk_id,
            version: self.version,
            length: self.length,
            serial: self.serial,
        }
    }

    /// Encodes the header into its 512 on-disk bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.layout.block_size.to_le_bytes());
        put_u64(&mut b, 16, self.chunk_id);
        put_u64(&mut b, 24, self.version);
        put_u64(&mut b, 32, self.length);
        put_u64(&mut b, 40, self.serial);
        put_u64(&mut b, 48, self.layout.capacity);
        put_u64(&mut b, 56, self.layout.data_offset());
        put_u64(&mut b, 64, self.incarnation);
        let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates header bytes read from disk.
    pub(crate) fn decode(b: &[u8]) -> Result<ReplicaHeader, String> {
        if b.len() < HEADER_LEN as usize {
            return Err(format!("header is {} bytes, want {HEADER_LEN}", b.len()));
        }
        if b[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let crc = get_u32(b, HEADER_CRC_AT);
        let want = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        if crc != want {
            return Err(format!("header crc {crc:08x} != computed {want:08x}"));
        }
        let format = get_u32(b, 8);
        if format != FORMAT_VERSION {
            return Err(format!("unknown format version {format}"));
        }
        let layout = Layout::new(get_u32(b, 12), get_u64(b, 48))?;
        let data_offset = get_u64(b, 56);
        if data_offset != layout.data_offset() {
            return Err(format!(
                "data offset {data_offset} != expected {}",
                layout.data_offset()
            ));
        }
        let h = ReplicaHeader {
            chunk_id: get_u64(b, 16),
            version: get_u64(b, 24),
            length: get_u64(b, 32),
            serial: get_u64(b, 40),
            incarnation: get_u64(b, 64),
            layout,
        };
        if h.length > layout.capacity() {
            return Err(format!(
                "length {} beyond capacity {}",
                h.length,
                layout.capacity()
            ));
        }
        Ok(h)
    }
}

/// CRC32C of `len` zero bytes (the checksum of a hole).
pub(crate) fn crc_zeros(len: u64) -> u32 {
    crc_append_zeros(0, len)
}

/// Extends CRC32C `crc` by `len` zero bytes.
pub(crate) fn crc_append_zeros(mut crc: u32, len: u64) -> u32 {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        crc = crc32c::crc32c_append(crc, &ZEROS[..n]);
        left -= n as u64;
    }
    crc
}

/// Path of the replica file of `chunk_id` under the `chunks/` directory.
pub(crate) fn chunk_path(chunks_dir: &Path, chunk_id: u64) -> PathBuf {
    chunks_dir
        .join(format!("{:02x}", chunk_id & 0xff))
        .join(format!("{chunk_id:016x}.chunk"))
}

/// Parses a replica file name (`<16 lowercase hex digits>.chunk`) into a chunk id.
pub(crate) fn parse_chunk_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".chunk")?;
    if hex.len() != 16 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// A fresh incarnation id: unique in practice (time, process and a counter mixed).
pub(crate) fn new_incarnation() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    splitmix(nanos ^ splitmix(u64::from(std::process::id()) ^ (n << 32) ^ n))
}

/// The splitmix64 finalizer: a cheap bijective mixer.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reads a little-endian u32 at `at` (the caller checked the length).
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u64 at `at` (the caller checked the length).
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Writes a little-endian u64 at `at`.
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ReplicaHeader {
        ReplicaHeader {
            chunk_id: 0xabcd,
            version: 7,
            length: 100_000,
            serial: 3,
            incarnation: 42,
            layout: Layout::new(65536, 64 << 20).unwrap(),
        }
    }

    #[test]
    fn header_round_trips_and_rejects_any_flipped_byte() {
        let h = header();
        let b = h.encode();
        assert_eq!(ReplicaHeader::decode(&b).unwrap(), h);
        for i in 0..b.len() {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(ReplicaHeader::decode(&c).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn layout_of_default_chunk() {
        let l = Layout::new(65536, 64 << 20).unwrap();
        assert_eq!(l.blocks(), 1024);
        assert_eq!(l.data_offset(), 8192);
        let l = Layout::new(4096, 1).unwrap();
        assert_eq!((l.blocks(), l.data_offset()), (1, 4096));
        assert!(Layout::new(1000, 10).is_err());
        assert!(Layout::new(4096, 0).is_err());
    }

    #[test]
    fn zero_crc_matches_direct() {
        for n in [0u64, 1, 4095, 4096, 4097, 65536] {
            assert_eq!(crc_zeros(n), crc32c::crc32c(&vec![0u8; n as usize]));
        }
    }

    #[test]
    fn chunk_names() {
        let p = chunk_path(Path::new("c"), 0x1234);
        assert_eq!(p, Path::new("c/34/0000000000001234.chunk"));
        assert_eq!(parse_chunk_name("0000000000001234.chunk"), Some(0x1234));
        assert_eq!(parse_chunk_name("000000000000123G.chunk"), None);
        assert_eq!(parse_chunk_name("0000000000001234.chunk.tmp"), None);
        assert_ne!(new_incarnation(), new_incarnation());
    }
}
