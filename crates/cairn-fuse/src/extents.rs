//! The write-back buffer of one file: bytes written through the mount and not yet sent to
//! the chunk servers, as non-overlapping extents keyed by file offset.
//!
//! Invariants: extents never overlap and are never empty; `bytes` is the sum of their
//! lengths. A later write always wins over the bytes it overlaps. Sequential writes extend
//! the last extent in place, so a stream of small writes becomes one large, contiguous
//! buffer that is flushed as chunk-aligned mutations.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

/// Unflushed writes of one file.
#[derive(Debug, Default)]
pub struct Extents {
    map: BTreeMap<u64, BytesMut>,
    bytes: u64,
}

impl Extents {
    /// Total buffered bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// End of the last extent (0 when empty).
    #[cfg(test)]
    pub fn end(&self) -> u64 {
        self.map
            .iter()
            .next_back()
            .map_or(0, |(&s, b)| s + b.len() as u64)
    }

    /// Records `data` written at `off`. `reserve` is the capacity a new extent starts with
    /// (so a sequential stream appends without reallocating).
    pub fn insert(&mut self, off: u64, data: &[u8], reserve: usize) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        // Fast path: appending right after an extent with nothing beyond it in the way, or
        // overwriting bytes inside one extent.
        let prev = self
            .map
            .range(..=off)
            .next_back()
            .map(|(&s, b)| (s, s + b.len() as u64));
        if let Some((s, e)) = prev {
            let append = e == off && self.map_range_is_empty(off + 1, end);
            let inside = end <= e;
            if append || inside {
                let buf = self.map.get_mut(&s).expect("just found");
                if append {
                    buf.extend_from_slice(data);
                    self.bytes += data.len() as u64;
                } else {
                    let at = (off - s) as usize;
                    buf[at..at + data.len()].copy_from_slice(data);
                }
                return;
            }
        }
        // General path: cut every overlapping extent, then insert.
        let overlapping: Vec<u64> = self
            .map
            .range(..end)
            .filter(|&(&s, b)| s + b.len() as u64 > off)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            let mut buf = self.map.remove(&s).expect("listed above");
            let e = s + buf.len() as u64;
            self.bytes -= buf.len() as u64;
            if e > end {
                let right = buf.split_off((end - s) as usize);
                self.bytes += right.len() as u64;
                self.map.insert(end, right);
            }
            if s < off {
                buf.truncate((off - s) as usize);
                self.bytes += buf.len() as u64;
                self.map.insert(s, buf);
            }
        }
        let mut buf = BytesMut::with_capacity(reserve.max(data.len()));
        buf.extend_from_slice(data);
        self.bytes += data.len() as u64;
        self.map.insert(off, buf);
    }

    fn map_range_is_empty(&self, from: u64, to: u64) -> bool {
        from >= to || self.map.range(from..to).next().is_none()
    }

    /// Copies the buffered bytes that fall in `[off, off + out.len())` over `out`.
    pub fn overlay(&self, off: u64, out: &mut [u8]) {
        let end = off + out.len() as u64;
        let first = self.map.range(..=off).next_back().map_or(off, |(&s, _)| s);
        for (&s, buf) in self.map.range(first..end) {
            let e = s + buf.len() as u64;
            let (from, to) = (s.max(off), e.min(end));
            if from < to {
                out[(from - off) as usize..(to - off) as usize]
                    .copy_from_slice(&buf[(from - s) as usize..(to - s) as usize]);
            }
        }
    }

    /// Sets to 1 every byte of `mask` (which stands for `[off, off + mask.len())`) that a
    /// buffered write covers.
    pub fn overlay_mask(&self, off: u64, mask: &mut [u8]) {
        let end = off + mask.len() as u64;
        let first = self.map.range(..=off).next_back().map_or(off, |(&s, _)| s);
        for (&s, buf) in self.map.range(first..end) {
            let e = s + buf.len() as u64;
            let (from, to) = (s.max(off), e.min(end));
            if from < to {
                mask[(from - off) as usize..(to - off) as usize].fill(1);
            }
        }
    }

    /// Drops every buffered byte at or past `size` (the file was truncated).
    pub fn truncate(&mut self, size: u64) {
        let past: Vec<u64> = self.map.range(size..).map(|(&s, _)| s).collect();
        for s in past {
            if let Some(b) = self.map.remove(&s) {
                self.bytes -= b.len() as u64;
            }
        }
        if let Some((&s, buf)) = self.map.range_mut(..size).next_back() {
            let keep = (size - s) as usize;
            if buf.len() > keep {
                self.bytes -= (buf.len() - keep) as u64;
                buf.truncate(keep);
            }
        }
    }

    /// Takes every extent out, frozen, in offset order.
    pub fn take(&mut self) -> Vec<(u64, Bytes)> {
        self.bytes = 0;
        std::mem::take(&mut self.map)
            .into_iter()
            .map(|(s, b)| (s, b.freeze()))
            .collect()
    }
}

/// Frozen extents being flushed; reads still see them until the flush is committed.
#[derive(Debug, Default, Clone)]
pub struct Frozen(pub Vec<(u64, Bytes)>);

impl Frozen {
    pub fn overlay(&self, off: u64, out: &mut [u8]) {
        let end = off + out.len() as u64;
        for (s, buf) in &self.0 {
            let e = s + buf.len() as u64;
            let (from, to) = ((*s).max(off), e.min(end));
            if from < to {
                out[(from - off) as usize..(to - off) as usize]
                    .copy_from_slice(&buf[(from - s) as usize..(to - s) as usize]);
            }
        }
    }

    #[cfg(test)]
    pub fn end(&self) -> u64 {
        self.0
            .iter()
            .map(|(s, b)| s + b.len() as u64)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain byte vector as the model of what reads must see.
    fn check(ext: &Extents, model: &[Option<u8>]) {
        let mut out = vec![0xEEu8; model.len()];
        ext.overlay(0, &mut out);
        for (i, m) in model.iter().enumerate() {
            if let Some(b) = m {
                assert_eq!(out[i], *b, "byte {i}");
            } else {
                assert_eq!(out[i], 0xEE, "byte {i} should not be buffered");
            }
        }
        assert_eq!(
            ext.bytes(),
            model.iter().filter(|m| m.is_some()).count() as u64
        );
    }

    #[test]
    fn later_writes_win_and_bytes_are_counted() {
        let mut ext = Extents::default();
        let mut model = vec![None; 64];
        let writes: [(u64, u8, usize); 8] = [
            (0, 1, 8),
            (8, 2, 8),
            (4, 3, 8),
            (30, 4, 10),
            (28, 5, 4),
            (35, 6, 2),
            (0, 7, 40),
            (50, 8, 3),
        ];
        for (off, val, len) in writes {
            ext.insert(off, &vec![val; len], 0);
            for m in model.iter_mut().skip(off as usize).take(len) {
                *m = Some(val);
            }
            check(&ext, &model);
        }
        assert_eq!(ext.end(), 53);
        ext.truncate(45);
        for m in model.iter_mut().skip(45) {
            *m = None;
        }
        check(&ext, &model);
        ext.truncate(20);
        for m in model.iter_mut().skip(20) {
            *m = None;
        }
        check(&ext, &model);
        let taken = ext.take();
        assert_eq!(taken.len(), 1);
        assert!(ext.is_empty() && ext.bytes() == 0);
    }

    #[test]
    fn sequential_writes_become_one_extent() {
        let mut ext = Extents::default();
        for i in 0..100u64 {
            ext.insert(i * 10, &[i as u8; 10], 1000);
        }
        let taken = ext.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.len(), 1000);
        let frozen = Frozen(taken);
        let mut out = vec![0u8; 20];
        frozen.overlay(995, &mut out);
        assert_eq!(&out[..5], &[99; 5]);
        assert_eq!(&out[5..], &[0; 15]);
        assert_eq!(frozen.end(), 1000);
    }
}
