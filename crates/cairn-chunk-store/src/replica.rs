//! In-place operations on a replica file: applying a journal record (create, write,
//! truncate, version change) with its checksums and header, and verified reads.
//!
//! Applying is *redo-safe*: it sets every byte, file size, CRC entry and header field it
//! touches to a value that depends only on the record (and on bytes that earlier records or
//! the last checkpoint fixed), never on what a crash may have left in the file. So replaying
//! all records since the last checkpoint, in order, over any mix of old and new pages rebuilds
//! exactly the state after the last record:
//! - a write that extends the replica first cuts the file back to the record's
//!   `prev_length` (stray bytes of later records go, the gap reads as zeros);
//! - a growing truncate cuts to `prev_length` before extending, for the same reason;
//! - the CRC of every block whose covered bytes changed is recomputed from the file after the
//!   data is in place, so the last record touching a block leaves its correct CRC;
//! - a create truncates the file to nothing and writes it whole from the record.
//!
//! Reads check the CRC of every block they return bytes from; on a mismatch they return
//! nothing (the caller's buffer is zeroed).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::faults::{CrashPoint, Faults};
use crate::format::{Layout, ReplicaHeader, crc_append_zeros, crc_zeros, get_u32};
use crate::fsutil::{Wait, read_at_or_zero, read_at_or_zero_mode};
use crate::record::{Payload, Record, RecordKind, decode_layout};

/// Why a verified read failed.
#[derive(Debug)]
pub(crate) enum ReadFail {
    /// The file could not be read.
    Io(io::Error),
    /// A block's bytes do not match its CRC.
    Corrupt(String),
}

impl From<io::Error> for ReadFail {
    fn from(e: io::Error) -> Self {
        ReadFail::Io(e)
    }
}

/// Checks that a record makes sense for a replica of `layout` (a replayed record is CRC-valid,
/// but the replica it names must still be able to hold it).
pub(crate) fn check_record(layout: &Layout, rec: &Record) -> Result<(), String> {
    let cap = layout.capacity();
    if rec.prev_length > cap || rec.new_length > cap {
        return Err("length beyond capacity".into());
    }
    match rec.kind {
        RecordKind::Write => {
            let end = rec
                .offset
                .checked_add(rec.payload_len)
                .filter(|&e| e <= cap)
                .ok_or("write beyond capacity")?;
            let want = if rec.payload_len == 0 {
                rec.prev_length
            } else {
                rec.prev_length.max(end)
            };
            if rec.new_length != want {
                return Err("write length inconsistent".into());
            }
        }
        RecordKind::Truncate if rec.payload_len != 0 => return Err("truncate with payload".into()),
        RecordKind::SetVersion if rec.payload_len != 0 || rec.new_length != rec.prev_length => {
            return Err("version change with payload or new length".into());
        }
        RecordKind::Truncate | RecordKind::SetVersion => {}
        RecordKind::Create | RecordKind::Delete => {
            return Err("create or delete record applied in place".into());
        }
    }
    Ok(())
}

/// Checks a `Create` record on its own; answers the new replica's layout.
pub(crate) fn check_create(rec: &Record) -> Result<Layout, String> {
    let layout = decode_layout(rec.prev_length).ok_or("create record with a bad layout")?;
    let end = rec
        .offset
        .checked_add(rec.payload_len)
        .filter(|&e| e <= layout.capacity())
        .ok_or("create beyond capacity")?;
    let want = if rec.payload_len == 0 { 0 } else { end };
    if rec.new_length != want {
        return Err("create length inconsistent".into());
    }
    Ok(layout)
}

/// Writes the replica file at `path` from a `Create` record: header, a CRC table of full
/// size (later in-place updates never need new space for it), and the payload at
/// `rec.offset` (zeros before it). Nothing is synced: the journal holds the record.
pub(crate) fn create(
    path: &Path,
    rec: &Record,
    layout: Layout,
    payload: Option<Payload<'_>>,
    faults: &Faults,
) -> io::Result<(File, ReplicaHeader)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let base = ReplicaHeader {
        chunk_id: rec.chunk_id,
        version: rec.version,
        length: 0,
        serial: rec.serial,
        incarnation: rec.incarnation,
        layout,
    };
    faults.before_write()?;
    file.write_all_at(
        &vec![0u8; (layout.blocks() * 4) as usize],
        layout.crc_offset(0),
    )?;
    file.set_len(layout.data_offset())?;
    file.write_all_at(&base.encode(), 0)?;
    let write = Record {
        kind: RecordKind::Write,
        prev_length: 0,
        ..*rec
    };
    let h = apply(&file, &base, &write, payload, faults)?;
    Ok((file, h))
}

/// Applies `rec` to the replica file whose identity and geometry `base` gives, writing data,
/// CRCs and header (no sync). Returns the header after the record.
pub(crate) fn apply(
    file: &File,
    base: &ReplicaHeader,
    rec: &Record,
    payload: Option<Payload<'_>>,
    faults: &Faults,
) -> io::Result<ReplicaHeader> {
    let layout = base.layout;
    match rec.kind {
        RecordKind::Write => {
            let data = payload.ok_or_else(|| io::Error::other("write record without payload"))?;
            apply_write(file, &layout, rec.prev_length, rec.offset, data, faults)?;
        }
        RecordKind::Truncate => apply_truncate(file, &layout, rec.prev_length, rec.new_length)?,
        RecordKind::SetVersion => {}
        RecordKind::Create | RecordKind::Delete => {
            return Err(io::Error::other("create or delete record applied in place"));
        }
    }
    let h = ReplicaHeader {
        version: rec.version,
        serial: rec.serial,
        length: rec.new_length,
        ..*base
    };
    file.write_all_at(&h.encode(), 0)?;
    Ok(h)
}

/// Writes `data` at `off` and recomputes the CRCs of the blocks whose bytes changed: those
/// overlapping the write, and those of the gap `[prev_len, off)` if the write starts past
/// the end.
fn apply_write(
    file: &File,
    layout: &Layout,
    prev_len: u64,
    off: u64,
    data: Payload<'_>,
    faults: &Faults,
) -> io::Result<()> {
    let len = data.len();
    if len == 0 {
        return Ok(());
    }
    let end = off + len;
    let new_len = prev_len.max(end);
    let d0 = layout.data_offset();
    let bs = layout.block_size();
    if end > prev_len {
        cut_stray_tail(file, d0 + prev_len)?;
    }
    let lo = off.min(prev_len) / bs;
    let hi = layout.blocks_for(end);
    let zero_block = crc_zeros(bs);
    let mut crcs = Vec::with_capacity(((hi - lo) * 4) as usize);
    let mut block = Vec::new();
    for b in lo..hi {
        let (s, e) = layout.block_range(b, new_len);
        let crc = if s >= prev_len && e <= off {
            if e - s == bs {
                zero_block
            } else {
                crc_zeros(e - s)
            }
        } else {
            block.resize((e - s) as usize, 0);
            let buf = &mut block[..];
            let at = |x: u64| (x - s) as usize;
            // Bytes before the write: from the file below prev_len, zeros in the gap.
            let before_end = e.min(off).max(s);
            let file_end = before_end.min(prev_len).max(s);
            read_at_or_zero(file, &mut buf[..at(file_end)], d0 + s)?;
            buf[at(file_end)..at(before_end)].fill(0);
            // The written bytes.
            let (w0, w1) = (s.max(off), e.min(end));
            if w0 < w1 {
                data.read(w0 - off, &mut buf[at(w0)..at(w1)])?;
                file.write_all_at(&buf[at(w0)..at(w1)], d0 + w0)?;
            }
            // Bytes after the write (only when it ends inside the old length).
            let after = end.max(s);
            if after < e {
                read_at_or_zero(file, &mut buf[at(after)..], d0 + after)?;
            }
            crc32c::crc32c(buf)
        };
        crcs.extend_from_slice(&crc.to_le_bytes());
    }
    faults.crash_point(CrashPoint::MidApply)?;
    file.write_all_at(&crcs, layout.crc_offset(lo))
}

/// Cuts the file to `size` if it is longer, the way replay drops stray bytes that a crash
/// left past the length a record starts from. In normal operation the file already has that
/// size and nothing is done (a same-size truncate would also drop space preallocated past
/// the end).
fn cut_stray_tail(file: &File, size: u64) -> io::Result<()> {
    if file.metadata()?.len() > size {
        file.set_len(size)?;
    }
    Ok(())
}

/// Sets the length to `new_len`: the file is cut or extended (the file system supplies
/// zeros), and the CRCs of the blocks whose covered range changed are recomputed.
fn apply_truncate(file: &File, layout: &Layout, prev_len: u64, new_len: u64) -> io::Result<()> {
    let d0 = layout.data_offset();
    let bs = layout.block_size();
    let (lo, hi) = if new_len < prev_len {
        file.set_len(d0 + new_len)?;
        if new_len.is_multiple_of(bs) {
            return Ok(());
        }
        (new_len / bs, new_len / bs + 1)
    } else if new_len > prev_len {
        cut_stray_tail(file, d0 + prev_len)?;
        file.set_len(d0 + new_len)?;
        (prev_len / bs, layout.blocks_for(new_len))
    } else {
        return Ok(());
    };
    let zero_block = crc_zeros(bs);
    let mut crcs = Vec::with_capacity(((hi - lo) * 4) as usize);
    let mut block = Vec::new();
    for b in lo..hi {
        let (s, e) = layout.block_range(b, new_len);
        let old_end = prev_len.min(e);
        let crc = if s >= old_end {
            if e - s == bs {
                zero_block
            } else {
                crc_zeros(e - s)
            }
        } else {
            block.resize((old_end - s) as usize, 0);
            read_at_or_zero(file, &mut block, d0 + s)?;
            crc_append_zeros(crc32c::crc32c(&block), e - old_end)
        };
        crcs.extend_from_slice(&crc.to_le_bytes());
    }
    file.write_all_at(&crcs, layout.crc_offset(lo))
}

/// Reads up to `buf.len()` bytes at `offset`, verifying every block touched. Returns the
/// count, short only at the end of the replica.
pub(crate) fn read_verified(
    file: &File,
    h: &ReplicaHeader,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, ReadFail> {
    read_verified_mode(file, h, offset, buf, Wait::Yes)
}

/// [`read_verified`], from the page cache only with [`Wait::No`] (an `Io` failure of kind
/// `WouldBlock` when the disk would be needed).
pub(crate) fn read_verified_mode(
    file: &File,
    h: &ReplicaHeader,
    offset: u64,
    buf: &mut [u8],
    wait: Wait,
) -> Result<usize, ReadFail> {
    if offset >= h.length || buf.is_empty() {
        return Ok(0);
    }
    let n = (buf.len() as u64).min(h.length - offset);
    let end = offset + n;
    let buf = &mut buf[..n as usize];
    let res = read_blocks(file, h, offset, end, buf, wait);
    if res.is_err() {
        buf.fill(0);
    }
    res.map(|()| n as usize)
}

fn read_blocks(
    file: &File,
    h: &ReplicaHeader,
    offset: u64,
    end: u64,
    buf: &mut [u8],
    wait: Wait,
) -> Result<(), ReadFail> {
    let read_at_or_zero =
        |file: &File, buf: &mut [u8], at: u64| read_at_or_zero_mode(file, buf, at, wait);
    let layout = &h.layout;
    let d0 = layout.data_offset();
    let (b0, b1) = (offset / layout.block_size(), layout.blocks_for(end));
    let mut table = vec![0u8; ((b1 - b0) * 4) as usize];
    read_at_or_zero(file, &mut table, layout.crc_offset(b0))?;
    let want = |b: u64| get_u32(&table, ((b - b0) * 4) as usize);
    let inside = |b: u64| {
        let (s, e) = layout.block_range(b, h.length);
        s >= offset && e <= end
    };
    let mut scratch = Vec::new();
    let mut b = b0;
    while b < b1 {
        if inside(b) {
            // A run of whole blocks goes straight into the caller's buffer.
            let mut r = b;
            while r < b1 && inside(r) {
                r += 1;
            }
            let s = layout.block_range(b, h.length).0;
            let e = layout.block_range(r - 1, h.length).1;
            let dst = &mut buf[(s - offset) as usize..(e - offset) as usize];
            read_at_or_zero(file, dst, d0 + s)?;
            for k in b..r {
                let (ks, ke) = layout.block_range(k, h.length);
                check(k, &dst[(ks - s) as usize..(ke - s) as usize], want(k))?;
            }
            b = r;
        } else {
            let (s, e) = layout.block_range(b, h.length);
            scratch.resize((e - s) as usize, 0);
            read_at_or_zero(file, &mut scratch, d0 + s)?;
            check(b, &scratch, want(b))?;
            let (c0, c1) = (s.max(offset), e.min(end));
            buf[(c0 - offset) as usize..(c1 - offset) as usize]
                .copy_from_slice(&scratch[(c0 - s) as usize..(c1 - s) as usize]);
            b += 1;
        }
    }
    Ok(())
}

fn check(block: u64, bytes: &[u8], want: u32) -> Result<(), ReadFail> {
    let got = crc32c::crc32c(bytes);
    if got == want {
        Ok(())
    } else {
        Err(ReadFail::Corrupt(format!(
            "block {block} ({} bytes): stored crc {want:08x}, computed {got:08x}",
            bytes.len()
        )))
    }
}
