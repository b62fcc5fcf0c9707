//! The journal's on-disk format: a 64-byte file header, then records of an 88-byte header
//! followed by the payload (a write's data). Encoding, and a reader that yields the valid
//! prefix of a journal file.
//!
//! Invariants:
//! - A record is accepted only if its magic and header CRC match, its LSN is exactly one more
//!   than the previous record's (the first one equals the file's `first_lsn`), it lies wholly
//!   inside the file, and its payload CRC matches. The reader stops at the first record that
//!   fails any of these (a torn tail) and never looks past it.
//! - Payloads are checked in bounded pieces: memory stays bounded for any record size.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::format::{Layout, get_u32, get_u64, put_u64};
use crate::fsutil::read_at_or_zero;

/// Size of a journal file header.
pub(crate) const FILE_HEADER_LEN: u64 = 64;
/// Size of a record header.
pub(crate) const RECORD_HEADER_LEN: u64 = 88;
/// Journal file magic.
const FILE_MAGIC: [u8; 8] = *b"CAIRNJNL";
/// Record magic.
const RECORD_MAGIC: [u8; 4] = *b"CJRC";
/// Journal format version.
const FORMAT_VERSION: u32 = 1;
/// Piece size for streaming payloads.
pub(crate) const COPY_BUF: usize = 1 << 20;

/// What a record does to its replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// Writes the payload at `offset`; the length becomes `new_length`.
    Write = 1,
    /// Sets the length to `new_length` (zeros when growing).
    Truncate = 2,
    /// Moves the replica to `version`, serial 0.
    SetVersion = 3,
    /// Creates the replica (incarnation, version, serial as given; replacing an older
    /// replica of the chunk) holding the payload at `offset`. `prev_length` carries the new
    /// replica's layout instead of a length (see [`encode_layout`]). Used for small first
    /// writes, so that they share the journal's group-committed sync instead of paying a
    /// file and a directory sync of their own.
    Create = 4,
    /// Deletes the replica if it is still the named incarnation. Journaled so that replay
    /// never brings back a replica whose `Create` record is still in the journal.
    Delete = 5,
}

impl RecordKind {
    fn from_u32(v: u32) -> Option<RecordKind> {
        match v {
            1 => Some(RecordKind::Write),
            2 => Some(RecordKind::Truncate),
            3 => Some(RecordKind::SetVersion),
            4 => Some(RecordKind::Create),
            5 => Some(RecordKind::Delete),
            _ => None,
        }
    }
}

/// One journal record, without its payload. Version, serial and length are the replica's
/// state *after* the record; `prev_length` the length before, so replay needs no other input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// What the record does.
    pub(crate) kind: RecordKind,
    /// Log sequence number, consecutive within a file.
    pub(crate) lsn: u64,
    /// The chunk.
    pub(crate) chunk_id: u64,
    /// The replica file incarnation the record applies to.
    pub(crate) incarnation: u64,
    /// Version after the record.
    pub(crate) version: u64,
    /// Serial after the record.
    pub(crate) serial: u64,
    /// Length before the record.
    pub(crate) prev_length: u64,
    /// Length after the record.
    pub(crate) new_length: u64,
    /// Data offset of a write (0 otherwise).
    pub(crate) offset: u64,
    /// Payload bytes following the header (a write's data length; 0 otherwise).
    pub(crate) payload_len: u64,
}

impl Record {
    /// Encodes the record header, given the CRC32C of its payload.
    pub(crate) fn encode(&self, payload_crc: u32) -> [u8; RECORD_HEADER_LEN as usize] {
        let mut b = [0u8; RECORD_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&RECORD_MAGIC);
        b[4..8].copy_from_slice(&(self.kind as u32).to_le_bytes());
        put_u64(&mut b, 8, self.lsn);
        put_u64(&mut b, 16, self.chunk_id);
        put_u64(&mut b, 24, self.incarnation);
        put_u64(&mut b, 32, self.version);
        put_u64(&mut b, 40, self.serial);
        put_u64(&mut b, 48, self.prev_length);
        put_u64(&mut b, 56, self.new_length);
        put_u64(&mut b, 64, self.offset);
        put_u64(&mut b, 72, self.payload_len);
        b[80..84].copy_from_slice(&payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..84]);
        b[84..88].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record header; `None` if it is not a valid one. Returns the payload CRC too.
    fn decode(b: &[u8; RECORD_HEADER_LEN as usize]) -> Option<(Record, u32)> {
        if b[0..4] != RECORD_MAGIC || get_u32(b, 84) != crc32c::crc32c(&b[..84]) {
            return None;
        }
        let kind = RecordKind::from_u32(get_u32(b, 4))?;
        let rec = Record {
            kind,
            lsn: get_u64(b, 8),
            chunk_id: get_u64(b, 16),
            incarnation: get_u64(b, 24),
            version: get_u64(b, 32),
            serial: get_u64(b, 40),
            prev_length: get_u64(b, 48),
            new_length: get_u64(b, 56),
            offset: get_u64(b, 64),
            payload_len: get_u64(b, 72),
        };
        Some((rec, get_u32(b, 80)))
    }
}

/// Packs a layout into a `Create` record's `prev_length`: log2(block size) in the top 16
/// bits, capacity (at most 2^40) below.
pub(crate) fn encode_layout(l: &Layout) -> u64 {
    (u64::from(l.block_size().trailing_zeros()) << 48) | l.capacity()
}

/// Unpacks [`encode_layout`]; `None` if the value names no valid layout.
pub(crate) fn decode_layout(v: u64) -> Option<Layout> {
    let shift = v >> 48;
    if shift >= 32 {
        return None;
    }
    Layout::new(1u32 << shift, v & ((1 << 48) - 1)).ok()
}

/// Where a record's payload (a write's data) comes from: memory, or a range of a file.
#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    /// Bytes in memory.
    Mem(&'a [u8]),
    /// `len` bytes of `file` starting at `at`.
    File {
        /// The file holding the bytes.
        file: &'a File,
        /// Offset of payload byte 0 in the file.
        at: u64,
        /// Payload length.
        len: u64,
    },
}

impl Payload<'_> {
    /// Payload length in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Payload::Mem(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    /// Fills `buf` with payload bytes starting at payload offset `rel`.
    pub(crate) fn read(&self, rel: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = rel + buf.len() as u64;
        if end > self.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of a payload",
            ));
        }
        match self {
            Payload::Mem(b) => {
                buf.copy_from_slice(&b[rel as usize..end as usize]);
                Ok(())
            }
            Payload::File { file, at, .. } => file.read_exact_at(buf, at + rel),
        }
    }
}

/// Encodes a journal file header.
pub(crate) fn encode_file_header(seq: u64, first_lsn: u64) -> [u8; FILE_HEADER_LEN as usize] {
    let mut b = [0u8; FILE_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&FILE_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    put_u64(&mut b, 16, seq);
    put_u64(&mut b, 24, first_lsn);
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a journal file header into `(seq, first_lsn)`.
fn decode_file_header(b: &[u8; FILE_HEADER_LEN as usize]) -> Option<(u64, u64)> {
    if b[0..8] != FILE_MAGIC
        || get_u32(b, 8) != FORMAT_VERSION
        || get_u32(b, 60) != crc32c::crc32c(&b[..60])
    {
        return None;
    }
    Some((get_u64(b, 16), get_u64(b, 24)))
}

/// Reads the valid records of one journal file, in order.
pub(crate) struct JournalReader {
    file: File,
    len: u64,
    pos: u64,
    next_lsn: u64,
    ended: bool,
    /// The valid records end at zeros written ahead (a clean end, not a tear).
    zero_end: bool,
    buf: Vec<u8>,
}

impl JournalReader {
    /// Opens a journal file. A file whose header is missing or invalid yields no records.
    pub(crate) fn open(path: &Path) -> io::Result<JournalReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut hdr = [0u8; FILE_HEADER_LEN as usize];
        read_at_or_zero(&file, &mut hdr, 0)?;
        let (ended, next_lsn) = match decode_file_header(&hdr) {
            Some((_seq, first_lsn)) if len >= FILE_HEADER_LEN => (false, first_lsn),
            _ => (true, 0),
        };
        Ok(JournalReader {
            file,
            len,
            pos: if ended { 0 } else { FILE_HEADER_LEN },
            next_lsn,
            ended,
            zero_end: false,
            buf: Vec::new(),
        })
    }

    /// The file, for reading payloads at the offsets [`JournalReader::next`] returns.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Whether bytes remain past the last valid record (a torn or garbage tail).
    pub(crate) fn torn(&self) -> bool {
        self.ended && self.pos < self.len && !self.zero_end
    }

    /// The LSN the next record would carry.
    pub(crate) fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// The next valid record and the file offset of its payload, or `None` at the end of
    /// the valid prefix.
    pub(crate) fn next(&mut self) -> io::Result<Option<(Record, u64)>> {
        if self.ended {
            return Ok(None);
        }
        match self.try_next()? {
            Some(r) => Ok(Some(r)),
            None => {
                self.ended = true;
                Ok(None)
            }
        }
    }

    fn try_next(&mut self) -> io::Result<Option<(Record, u64)>> {
        if self.len.saturating_sub(self.pos) < RECORD_HEADER_LEN {
            return Ok(None);
        }
        let mut hdr = [0u8; RECORD_HEADER_LEN as usize];
        read_at_or_zero(&self.file, &mut hdr, self.pos)?;
        let Some((rec, payload_crc)) = Record::decode(&hdr) else {
            self.zero_end = hdr.iter().all(|&b| b == 0);
            return Ok(None);
        };
        let payload_at = self.pos + RECORD_HEADER_LEN;
        if rec.lsn != self.next_lsn || rec.payload_len > self.len - payload_at {
            return Ok(None);
        }
        if self.payload_crc(payload_at, rec.payload_len)? != payload_crc {
            return Ok(None);
        }
        self.pos = payload_at + rec.payload_len;
        self.next_lsn += 1;
        Ok(Some((rec, payload_at)))
    }

    fn payload_crc(&mut self, at: u64, len: u64) -> io::Result<u32> {
        let piece = len.min(COPY_BUF as u64) as usize;
        if self.buf.len() < piece {
            self.buf.resize(piece, 0);
        }
        let mut crc = 0;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(COPY_BUF as u64) as usize;
            self.file.read_exact_at(&mut self.buf[..n], at + done)?;
            crc = crc32c::crc32c_append(crc, &self.buf[..n]);
            done += n as u64;
        }
        Ok(crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_header_round_trips_and_detects_flips() {
        let r = Record {
            kind: RecordKind::Write,
            lsn: 5,
            chunk_id: 9,
            incarnation: 77,
            version: 3,
            serial: 4,
            prev_length: 10,
            new_length: 20,
            offset: 10,
            payload_len: 10,
        };
        let b = r.encode(0xdead_beef);
        assert_eq!(Record::decode(&b), Some((r, 0xdead_beef)));
        for i in 0..b.len() {
            let mut c = b;
            c[i] ^= 1;
            assert_eq!(Record::decode(&c), None, "flip at {i} accepted");
        }
        let f = encode_file_header(3, 100);
        assert_eq!(decode_file_header(&f), Some((3, 100)));
    }
}
