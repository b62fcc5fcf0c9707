//! Cutting classic requests from a byte stream, by the rules in the parent module's docs.
//!
//! Invariants: every byte received belongs to exactly one returned frame or is still
//! pending; no frame holds more than the limit; a pending `WRITE_FILE` (or anything that may
//! still become one) is never cut before its burst ends.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The one verb whose requests run to the end of their burst.
const WRITE_PREFIX: &[u8] = b"WRITE_FILE:";

/// How a request ended, and so how its answer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// With a line end: the answer ends with `\n`.
    Line,
    /// With the end of a burst: the answer has no terminator.
    Bare,
}

/// One request cut from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A request, terminator removed.
    Request { bytes: Vec<u8>, ending: Ending },
    /// A request over the size limit, already skipped: how many bytes it had, and its
    /// first bytes (for the log).
    TooLarge {
        len: u64,
        ending: Ending,
        head: Vec<u8>,
    },
}

/// Cuts requests from a byte stream by the rules in the module docs.
pub struct FrameReader<R> {
    io: R,
    /// Bytes received and not yet part of a returned frame: the start of the next request.
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no `\n`, so that a long request is scanned once.
    scanned: usize,
    eof: bool,
    max: usize,
    quiet: Duration,
    idle: Duration,
}

enum Cut {
    Frame(Frame),
    /// The pending request is over the limit and not complete: skip the rest.
    Skip,
    More,
}

/// Whether `buf` starts a `WRITE_FILE` request (or may still turn out to).
fn is_write(buf: &[u8]) -> bool {
    buf.starts_with(WRITE_PREFIX)
        || (buf.len() < WRITE_PREFIX.len() && WRITE_PREFIX.starts_with(buf))
}

/// Drops one trailing line end; says whether there was one.
fn strip_line_end(bytes: &mut Vec<u8>) -> Ending {
    if bytes.last() != Some(&b'\n') {
        return Ending::Bare;
    }
    bytes.pop();
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    Ending::Line
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader cutting requests of at most `max` bytes, with `quiet` as the end of a burst
    /// and `idle` as the longest wait for a request to start.
    pub fn new(io: R, max: usize, quiet: Duration, idle: Duration) -> FrameReader<R> {
        FrameReader {
            io,
            buf: Vec::new(),
            scanned: 0,
            eof: false,
            max,
            quiet,
            idle,
        }
    }

    /// The stream, to write answers on.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// The stream.
    pub fn get_ref(&self) -> &R {
        &self.io
    }

    /// Changes the quiet period for the next requests.
    pub fn set_quiet(&mut self, quiet: Duration) {
        self.quiet = quiet;
    }

    /// The next request; `None` once the client closed (or stayed idle too long) with no
    /// request pending.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match self.cut() {
                Cut::Frame(f) => return Ok(Some(f)),
                Cut::Skip => return self.skip().await.map(Some),
                Cut::More => {}
            }
            if self.eof {
                return Ok(self.cut_burst());
            }
            let wait = if self.buf.is_empty() {
                self.idle
            } else {
                self.quiet
            };
            match tokio::time::timeout(wait, self.read_more()).await {
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(_) => return Ok(self.cut_burst()),
                Ok(n) => self.eof = n? == 0,
            }
        }
    }

    /// Reads what is available into `buf` (cancel safe); 0 at the end of the stream.
    async fn read_more(&mut self) -> io::Result<usize> {
        self.buf.reserve(64 << 10);
        self.io.read_buf(&mut self.buf).await
    }

    /// Cuts a request that is complete without waiting for the end of the burst.
    fn cut(&mut self) -> Cut {
        if self.buf.is_empty() {
            return Cut::More;
        }
        // A request of `max` bytes with "\r\n" takes `max + 2`.
        let window = self.buf.len().min(self.max.saturating_add(2));
        if is_write(&self.buf) {
            return if self.buf.len() > window {
                Cut::Skip
            } else {
                Cut::More
            };
        }
        let from = self.scanned.min(window);
        let newline = self.buf[from..window].iter().position(|&b| b == b'\n');
        self.scanned = window;
        match newline.map(|p| from + p) {
            Some(p) => {
                self.scanned = 0;
                let rest = self.buf.split_off(p + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                let ending = strip_line_end(&mut line);
                Cut::Frame(self.checked(line, ending))
            }
            None if self.buf.len() >= self.max.saturating_add(2) => Cut::Skip,
            None => Cut::More,
        }
    }

    /// Everything pending is one request: its burst ended.
    fn cut_burst(&mut self) -> Option<Frame> {
        if self.buf.is_empty() {
            return None;
        }
        self.scanned = 0;
        let mut bytes = std::mem::take(&mut self.buf);
        let ending = strip_line_end(&mut bytes);
        Some(self.checked(bytes, ending))
    }

    fn checked(&self, bytes: Vec<u8>, ending: Ending) -> Frame {
        if bytes.len() > self.max {
            Frame::TooLarge {
                len: bytes.len() as u64,
                ending,
                head: head(&bytes),
            }
        } else {
            Frame::Request { bytes, ending }
        }
    }

    /// Drops the pending oversized request up to its end (a line end, or the end of the
    /// burst for `WRITE_FILE` and unterminated requests), keeping what follows it.
    async fn skip(&mut self) -> io::Result<Frame> {
        let write = is_write(&self.buf);
        let head = head(&self.buf);
        self.scanned = 0;
        // Bytes dropped so far, and the last two of them (to leave out a terminator).
        let mut len = 0u64;
        let mut tail = [0u8; 2];
        let mut note = |bytes: &[u8], len: &mut u64| {
            for &b in bytes.iter().rev().take(2).rev() {
                tail = [tail[1], b];
            }
            *len += bytes.len() as u64;
        };
        loop {
            if !write && let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                note(&self.buf[..=p], &mut len);
                self.buf.drain(..=p);
                let cr = u64::from(tail[0] == b'\r');
                let (len, ending) = (len - 1 - cr, Ending::Line);
                return Ok(Frame::TooLarge { len, ending, head });
            }
            note(&self.buf, &mut len);
            self.buf.clear();
            let burst_over = self.eof
                || match tokio::time::timeout(self.quiet, self.read_more()).await {
                    Err(_) => true,
                    Ok(n) => {
                        self.eof = n? == 0;
                        self.eof
                    }
                };
            if burst_over {
                return Ok(if tail[1] == b'\n' {
                    let cr = u64::from(tail[0] == b'\r');
                    let (len, ending) = (len - 1 - cr, Ending::Line);
                    Frame::TooLarge { len, ending, head }
                } else {
                    let ending = Ending::Bare;
                    Frame::TooLarge { len, ending, head }
                });
            }
        }
    }
}

/// The first bytes of a request, enough for its verb and name in a log line.
fn head(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len().min(320)].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, DuplexStream};

    const QUIET: Duration = Duration::from_millis(30);
    /// Long enough after a write for any reader to see the burst as over.
    const PAUSE: Duration = Duration::from_millis(200);

    fn reader(max: usize) -> (DuplexStream, FrameReader<DuplexStream>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let r = FrameReader::new(server, max, QUIET, Duration::from_secs(30));
        (client, r)
    }

    fn req(bytes: &[u8], ending: Ending) -> Option<Frame> {
        Some(Frame::Request {
            bytes: bytes.to_vec(),
            ending,
        })
    }

    async fn next(r: &mut FrameReader<DuplexStream>) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(10), r.next())
            .await
            .expect("a frame in time")
            .expect("no I/O error")
    }

    #[tokio::test]
    async fn lines_are_cut_at_once_and_bursts_when_quiet() {
        // A quiet period far longer than the test's bound: lines must not wait for it.
        let (mut c, server) = tokio::io::duplex(1 << 20);
        let mut r = FrameReader::new(
            server,
            1024,
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        c.write_all(b"READ_FILE:a\r\nCREATE_FILE:b\nDELETE_FILE:c")
            .await
            .unwrap();
        assert_eq!(next(&mut r).await, req(b"READ_FILE:a", Ending::Line));
        assert_eq!(next(&mut r).await, req(b"CREATE_FILE:b", Ending::Line));
        // The unterminated rest ends with the stream here.
        drop(c);
        assert_eq!(next(&mut r).await, req(b"DELETE_FILE:c", Ending::Bare));
        assert_eq!(next(&mut r).await, None);
    }

    #[tokio::test]
    async fn write_runs_to_the_end_of_its_burst() {
        let (mut c, mut r) = reader(1024);
        c.write_all(b"WRITE_FILE:a:x:y\nz").await.unwrap();
        assert_eq!(
            next(&mut r).await,
            req(b"WRITE_FILE:a:x:y\nz", Ending::Bare)
        );
        c.write_all(b"WRITE_FILE:a:one\ntwo\n").await.unwrap();
        assert_eq!(
            next(&mut r).await,
            req(b"WRITE_FILE:a:one\ntwo", Ending::Line)
        );
        c.write_all(b"WRITE_FILE:a:keep\n\n").await.unwrap();
        assert_eq!(
            next(&mut r).await,
            req(b"WRITE_FILE:a:keep\n", Ending::Line)
        );
        // A burst in pieces is still one request.
        c.write_all(b"WRITE_FILE:a:par").await.unwrap();
        c.write_all(b"t1\n").await.unwrap();
        c.write_all(b"part2").await.unwrap();
        assert_eq!(
            next(&mut r).await,
            req(b"WRITE_FILE:a:part1\npart2", Ending::Bare)
        );
    }

    #[tokio::test]
    async fn separate_bursts_are_separate_requests() {
        let (mut c, mut r) = reader(1024);
        let client = tokio::spawn(async move {
            c.write_all(b"CREATE_FILE:a").await.unwrap();
            tokio::time::sleep(PAUSE).await;
            c.write_all(b"WRI").await.unwrap();
            tokio::time::sleep(PAUSE).await;
            c.write_all(b"WRI\n").await.unwrap();
            c
        });
        assert_eq!(next(&mut r).await, req(b"CREATE_FILE:a", Ending::Bare));
        // A prefix of WRITE_FILE waits for its burst to end, then stands alone.
        assert_eq!(next(&mut r).await, req(b"WRI", Ending::Bare));
        assert_eq!(next(&mut r).await, req(b"WRI", Ending::Line));
        drop(client.await.unwrap());
        assert_eq!(next(&mut r).await, None);
    }

    #[tokio::test]
    async fn end_of_stream_ends_the_last_request() {
        let (mut c, mut r) = reader(1024);
        c.write_all(b"READ_FILE:a\nWRITE_FILE:b:1\n2")
            .await
            .unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(next(&mut r).await, req(b"READ_FILE:a", Ending::Line));
        assert_eq!(next(&mut r).await, req(b"WRITE_FILE:b:1\n2", Ending::Bare));
        assert_eq!(next(&mut r).await, None);
    }

    #[tokio::test]
    async fn oversized_requests_are_skipped_and_the_stream_goes_on() {
        let (mut c, mut r) = reader(16);
        // Exactly the limit is fine, with or without "\r\n".
        c.write_all(b"READ_FILE:abcdef\r\n").await.unwrap();
        assert_eq!(next(&mut r).await, req(b"READ_FILE:abcdef", Ending::Line));
        // A long line is skipped up to its newline; what follows is kept.
        let mut long = b"READ_FILE:".to_vec();
        long.extend(std::iter::repeat_n(b'x', 1000));
        long.extend_from_slice(b"\nREAD_FILE:b\n");
        c.write_all(&long).await.unwrap();
        match next(&mut r).await {
            Some(Frame::TooLarge { len, ending, head }) => {
                assert_eq!((len, ending), (1010, Ending::Line));
                assert!(head.starts_with(b"READ_FILE:xx"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(next(&mut r).await, req(b"READ_FILE:b", Ending::Line));
        // A long write is skipped to the end of its burst, newlines and all.
        let mut big = b"WRITE_FILE:a:".to_vec();
        big.extend(std::iter::repeat_n(b'y', 500));
        big.extend_from_slice(b"\nmore");
        c.write_all(&big).await.unwrap();
        match next(&mut r).await {
            Some(Frame::TooLarge { ending, .. }) => assert_eq!(ending, Ending::Bare),
            other => panic!("{other:?}"),
        }
        c.write_all(b"READ_FILE:c").await.unwrap();
        assert_eq!(next(&mut r).await, req(b"READ_FILE:c", Ending::Bare));
        // Just over the limit, complete in one burst.
        c.write_all(b"WRITE_FILE:a:123456\n").await.unwrap();
        match next(&mut r).await {
            Some(Frame::TooLarge { len, ending, .. }) => {
                assert_eq!((len, ending), (19, Ending::Line))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn idle_connections_end() {
        let (client, server) = tokio::io::duplex(1024);
        let mut r = FrameReader::new(server, 64, QUIET, Duration::from_millis(50));
        assert_eq!(next(&mut r).await, None);
        drop(client);
    }
}
