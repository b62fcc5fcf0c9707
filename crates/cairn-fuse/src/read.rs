//! Reading the chunk servers' bytes of one open file, with sequential read-ahead.
//!
//! A handle that reads sequentially gets a stream: one `FileReader` over a window ahead of
//! the reader (growing from 1 MiB to 64 MiB while the access stays sequential), whose
//! background task keeps up to 8 pieces of ~1 MiB in flight. Before a window runs out, the
//! next one starts as a successor stream, so the pipeline does not drain at the boundary.
//! Kernel reads (128 KiB to 1 MiB each) are then served from memory. A random read fetches
//! exactly its range, in the calling task (no stream, no background task to hand off to
//! and back).
//!
//! Invariants: pieces in `buf` are contiguous and in order, ending at `next`; a stream is
//! used only with the layout generation it was started on; at most `KEEP_BEHIND` bytes
//! behind the last read are kept, so slightly reordered kernel reads still hit.

use std::collections::VecDeque;

use bytes::Bytes;
use cairn_client::{FileReader, Layout, Posix, Result};

/// First read-ahead window of a sequential stream.
const FIRST_WINDOW: u64 = 1 << 20;
/// Largest read-ahead window.
const MAX_WINDOW: u64 = 64 << 20;
/// Bytes kept behind the position of the last read.
const KEEP_BEHIND: u64 = 4 << 20;
/// A sequential stream's successor starts when fewer than this many of its bytes are left
/// to receive: about what its background task keeps in flight, so the next window's first
/// pieces are on their way before the last ones of this window arrive.
const SUCCESSOR_LEAD: u64 = 8 << 20;

struct Stream {
    reader: FileReader,
    generation: u64,
    /// File offset of the next byte the reader yields.
    next: u64,
    /// End of the stream's range.
    end: u64,
    /// Pieces received: `(offset, bytes)`, contiguous, ending at `next`.
    buf: VecDeque<(u64, Bytes)>,
}

/// Read-ahead state of one handle.
#[derive(Default)]
pub struct ReadAhead {
    stream: Option<Stream>,
    /// The next window of a sequential stream, started before `stream` runs out.
    successor: Option<Stream>,
    /// End of the previous read, to detect sequential access.
    last_end: u64,
    window: u64,
}

impl ReadAhead {
    /// The `len` bytes at `off` as `layout` (generation `generation`) describes them; the
    /// caller has clipped the range to the file's committed length. When one piece of the
    /// stream holds the whole range (sequential kernel reads nearly always fall inside
    /// one piece) the answer is a slice of it, not a copy.
    pub async fn read(
        &mut self,
        posix: &Posix,
        layout: &Layout,
        generation: u64,
        off: u64,
        len: usize,
    ) -> Result<Bytes> {
        let end = off + len as u64;
        let sequential = off == self.last_end;
        self.last_end = end;
        if self
            .stream
            .as_ref()
            .is_some_and(|s| s.generation != generation)
        {
            self.stream = None;
            self.successor = None;
        }
        if !sequential && !self.stream_covers(off) {
            // A random read: fetched in this task, exactly its range, no stream.
            self.window = 0;
            let got = posix.read_range(layout, off, len as u64).await?;
            if got.len() == len {
                return Ok(got);
            }
            // The committed length ended first: the rest reads as zeros.
            let mut out = vec![0u8; len];
            out[..got.len()].copy_from_slice(&got);
            return Ok(Bytes::from(out));
        }
        let mut out = Vec::new();
        let mut pos = off;
        while pos < end {
            let Some((o, piece)) = self
                .piece_at(posix, layout, generation, pos, end, sequential)
                .await?
            else {
                // The committed length ended before the window: the rest reads as zeros.
                break;
            };
            let from = (pos - o) as usize;
            let n = (piece.len() - from).min((end - pos) as usize);
            if pos == off && n == len {
                return Ok(piece.slice(from..from + n));
            }
            if out.is_empty() {
                out = vec![0u8; len];
            }
            let at = (pos - off) as usize;
            out[at..at + n].copy_from_slice(&piece[from..from + n]);
            pos += n as u64;
        }
        if out.is_empty() {
            out = vec![0u8; len];
        }
        Ok(Bytes::from(out))
    }

    /// Whether the current stream holds byte `pos` or will reach it within its window.
    fn stream_covers(&self, pos: u64) -> bool {
        self.stream.as_ref().is_some_and(|s| {
            s.buf
                .iter()
                .any(|(o, b)| *o <= pos && pos < o + b.len() as u64)
                || s.reaches(pos)
        }) || self.successor.as_ref().is_some_and(|s| s.reaches(pos))
    }

    /// The buffered piece holding byte `pos` (with its offset), fetching or starting a
    /// stream as needed; `None` when the file's committed length ends before `pos`.
    async fn piece_at(
        &mut self,
        posix: &Posix,
        layout: &Layout,
        generation: u64,
        pos: u64,
        end: u64,
        sequential: bool,
    ) -> Result<Option<(u64, Bytes)>> {
        loop {
            if let Some(s) = &mut self.stream {
                while s
                    .buf
                    .front()
                    .is_some_and(|(o, b)| o + b.len() as u64 + KEEP_BEHIND <= pos)
                {
                    s.buf.pop_front();
                }
                if let Some((o, b)) = s
                    .buf
                    .iter()
                    .find(|(o, b)| *o <= pos && pos < o + b.len() as u64)
                {
                    return Ok(Some((*o, b.clone())));
                }
                if s.reaches(pos) {
                    match s.reader.next().await? {
                        Some(piece) => {
                            let len = piece.len() as u64;
                            s.buf.push_back((s.next, piece));
                            s.next += len;
                            let running_out = s.end - s.next.min(s.end) <= SUCCESSOR_LEAD;
                            if sequential
                                && running_out
                                && self.successor.is_none()
                                && s.end < layout.attr.size
                            {
                                let from = s.end;
                                self.window = (self.window * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
                                self.successor = Some(Stream::start(
                                    posix,
                                    layout,
                                    generation,
                                    from,
                                    self.window,
                                ));
                            }
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
            }
            // The stream cannot reach `pos`: its successor may, else a new stream starts.
            if let Some(next) = self.successor.take()
                && next.generation == generation
                && next.reaches(pos)
            {
                self.stream = Some(next);
                continue;
            }
            let len = if sequential {
                self.window = (self.window * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
                self.window.max(end - pos)
            } else {
                self.window = 0;
                end - pos
            };
            self.stream = Some(Stream::start(posix, layout, generation, pos, len));
        }
    }
}

impl Stream {
    fn start(posix: &Posix, layout: &Layout, generation: u64, from: u64, len: u64) -> Stream {
        Stream {
            reader: posix.reader(layout, from, len),
            generation,
            next: from,
            end: from + len,
            buf: VecDeque::new(),
        }
    }

    /// Whether reading on from `next` reaches byte `pos` within a window.
    fn reaches(&self, pos: u64) -> bool {
        self.next <= pos && pos < self.end && pos - self.next < MAX_WINDOW
    }
}
