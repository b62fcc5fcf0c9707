//! Reading: a [`FileReader`] streams a byte range of a file as verified pieces.
//!
//! A background task fetches pieces into a bounded channel (so the next pieces arrive
//! while the caller handles the current one, and memory stays bounded). Each chunk is read
//! from its replicas in the master's order; a replica that fails (corrupt, stale, gone,
//! unreachable) is skipped from the exact byte where it stopped, and a corrupt one is
//! reported to the master. Holes and bytes past a replica's end read as zeros. Every piece
//! is checked against the CRC32C the server sent, so bytes damaged in transit never reach
//! the caller either.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use cairn_proto::{DATA_PIECE_BYTES, ErrorKind, SMALL_READ_BYTES, pb};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::{Attr, Inner};

/// Pieces (of ~1 MiB) fetched ahead of the consumer.
const READ_AHEAD: usize = 8;
/// Times the chunk locations are fetched again after every replica failed.
const LOCATION_REFRESHES: u32 = 5;
/// Pause before the second refresh, doubling for each one after it (20 ms to 160 ms, about
/// 0.3 s in all). The first refresh is immediate: the usual cause is a layout the caller
/// held since before a write or a repair. A second failure in a row usually means the
/// master is in the middle of moving the chunk to a new version (its replicas already
/// answer `Stale` to the old one, the new one is not logged yet), which takes a disk sync.
const REFRESH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a finished read waits for its stream's closing status.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Chunk locations a caller keeps between reads (a mount's open file). A reader that had
/// to ask the master again writes what it got back, so that the caller's next read does
/// not start from the replicas that just answered `Stale` (after a repair or another
/// client's write moved the chunk to a new version).
#[derive(Clone, Debug)]
pub(crate) struct SharedLocations(Arc<Mutex<Vec<pb::ChunkLocation>>>);

impl SharedLocations {
    pub(crate) fn new(chunks: Vec<pb::ChunkLocation>) -> Self {
        SharedLocations(Arc::new(Mutex::new(chunks)))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<pb::ChunkLocation>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The known chunks with index in `first..=last`.
    pub(crate) fn range(&self, first: u64, last: u64) -> Vec<pb::ChunkLocation> {
        self.lock()
            .iter()
            .filter(|c| c.index >= first && c.index <= last)
            .cloned()
            .collect()
    }

    /// Whether chunk slot `index` is known to hold data.
    pub(crate) fn has_chunk(&self, index: u64) -> bool {
        self.lock()
            .iter()
            .any(|c| c.index == index && c.chunk_id != 0)
    }

    /// Takes the master's fresh answer for slot `index`, unless a newer one is already
    /// there (another reader's).
    fn update(&self, index: u64, fresh: &[pb::ChunkLocation]) {
        let mut chunks = self.lock();
        let newer_here = chunks.iter().any(|c| {
            c.index == index
                && fresh
                    .iter()
                    .any(|f| f.chunk_id == c.chunk_id && f.version < c.version)
        });
        if !newer_here {
            chunks.retain(|c| c.index != index);
            chunks.extend(fresh.iter().filter(|f| f.index == index).cloned());
        }
    }
}

/// A stream of a file's bytes, in order.
pub struct FileReader {
    attr: Attr,
    rx: mpsc::Receiver<Result<Bytes>>,
}

impl FileReader {
    pub(crate) fn start(
        inner: Arc<Inner>,
        attr: Attr,
        chunk_size: u64,
        chunks: Vec<pb::ChunkLocation>,
        shared: Option<SharedLocations>,
        offset: u64,
        len: u64,
    ) -> FileReader {
        let (produce, rx) = pipe(inner, &attr, chunk_size, chunks, shared, offset, len);
        tokio::spawn(produce);
        FileReader { attr, rx }
    }

    /// The file's attributes when the reader was opened.
    pub fn attr(&self) -> &Attr {
        &self.attr
    }

    /// The next piece, or `None` at the end of the range.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        match self.rx.recv().await {
            Some(Ok(b)) => Ok(Some(b)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Reads the rest of the range into memory.
    pub async fn read_to_end(mut self) -> Result<Bytes> {
        let mut out = bytes::BytesMut::new();
        while let Some(b) = self.next().await? {
            out.extend_from_slice(&b);
        }
        Ok(out.freeze())
    }
}

/// Reads `[offset, offset + len)` (clipped to the file's size) in the caller's task: the
/// same replica order, failover and checks as a [`FileReader`], without a background task
/// and the hand-offs to and from it, which cost more than a small random read itself.
pub(crate) async fn read_in_place(
    inner: Arc<Inner>,
    attr: &Attr,
    chunk_size: u64,
    chunks: Vec<pb::ChunkLocation>,
    shared: Option<SharedLocations>,
    offset: u64,
    len: u64,
) -> Result<Bytes> {
    let (produce, mut rx) = pipe(inner, attr, chunk_size, chunks, shared, offset, len);
    // Polled together in this task: the producer never waits on a consumer that is not
    // running, whatever the number of pieces.
    let collect = async move {
        let mut parts: Vec<Bytes> = Vec::new();
        while let Some(piece) = rx.recv().await {
            parts.push(piece?);
        }
        Ok::<_, Error>(parts)
    };
    let ((), parts) = tokio::join!(produce, collect);
    let mut parts = parts?;
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    let mut out = bytes::BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        out.extend_from_slice(&p);
    }
    Ok(out.freeze())
}

/// The work that fetches `[offset, offset + len)` (clipped to the file's size) piece by
/// piece, and the channel its pieces arrive on (bounded: the work waits for a reader).
/// `chunks` are the locations to start from; fresh ones are written back to `shared`.
fn pipe(
    inner: Arc<Inner>,
    attr: &Attr,
    chunk_size: u64,
    chunks: Vec<pb::ChunkLocation>,
    shared: Option<SharedLocations>,
    offset: u64,
    len: u64,
) -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    mpsc::Receiver<Result<Bytes>>,
) {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let end = offset.saturating_add(len).min(attr.size);
    let producer = Producer {
        inner,
        inode: attr.inode,
        chunk_size,
        chunks,
        shared,
        tx,
    };
    (producer.run(offset, end), rx)
}

struct Producer {
    inner: Arc<Inner>,
    inode: u64,
    chunk_size: u64,
    chunks: Vec<pb::ChunkLocation>,
    shared: Option<SharedLocations>,
    tx: mpsc::Sender<Result<Bytes>>,
}

/// Why a read from one replica stopped.
enum Stop {
    /// The consumer went away; stop everything.
    Closed,
    /// This replica failed; `kind` says how.
    Replica(Error),
}

impl Producer {
    async fn run(mut self, mut pos: u64, end: u64) {
        while pos < end {
            let index = pos / self.chunk_size;
            let chunk_end = ((index + 1) * self.chunk_size).min(end);
            match self.read_chunk(index, pos, chunk_end).await {
                Ok(()) => pos = chunk_end,
                Err(None) => return,
                Err(Some(e)) => {
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    fn location(&self, index: u64) -> Option<pb::ChunkLocation> {
        self.chunks.iter().find(|c| c.index == index).cloned()
    }

    /// Sends the bytes `[pos, end)` of chunk `index`. `Err(None)` means the consumer left.
    async fn read_chunk(
        &mut self,
        index: u64,
        mut pos: u64,
        end: u64,
    ) -> Result<(), Option<Error>> {
        let mut refreshes = 0;
        loop {
            let loc = self.location(index).unwrap_or(pb::ChunkLocation {
                index,
                ..Default::default()
            });
            if loc.chunk_id == 0 {
                return self.zeros(pos, end).await;
            }
            let mut last_err = None;
            for replica in &loc.replicas {
                match self.read_replica(&loc, replica, &mut pos, end).await {
                    Ok(()) => return Ok(()),
                    Err(Stop::Closed) => return Err(None),
                    Err(Stop::Replica(e)) => {
                        tracing::warn!(chunk = loc.chunk_id, server = replica.server_id, error = %e, "replica read failed; trying the next");
                        if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Stale) {
                            self.inner
                                .report_replica(
                                    loc.chunk_id,
                                    loc.version,
                                    replica.server_id,
                                    e.kind(),
                                    e.message(),
                                )
                                .await;
                        }
                        last_err = Some(e);
                    }
                }
            }
            if refreshes >= LOCATION_REFRESHES {
                let why = last_err
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no live replica".into());
                return Err(Some(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "chunk {index} (id {}) could not be read from any replica: {why}",
                        loc.chunk_id
                    ),
                )));
            }
            refreshes += 1;
            if refreshes > 1 {
                tokio::time::sleep(REFRESH_PAUSE * (1 << (refreshes - 1))).await;
            }
            match self.inner.chunk_locations(self.inode, index, 1).await {
                Ok((_, _, fresh)) => {
                    if let Some(shared) = &self.shared {
                        shared.update(index, &fresh);
                    }
                    self.chunks.retain(|c| c.index != index);
                    self.chunks.extend(fresh);
                }
                Err(e) => return Err(Some(e)),
            }
        }
    }

    async fn zeros(&self, mut pos: u64, end: u64) -> Result<(), Option<Error>> {
        while pos < end {
            let n = ((end - pos) as usize).min(DATA_PIECE_BYTES);
            self.tx
                .send(Ok(Bytes::from(vec![0u8; n])))
                .await
                .map_err(|_| None)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Streams `[pos, end)` from one replica, advancing `pos` past every byte sent.
    async fn read_replica(
        &self,
        loc: &pb::ChunkLocation,
        replica: &pb::ServerRef,
        pos: &mut u64,
        end: u64,
    ) -> Result<(), Stop> {
        let base = loc.index * self.chunk_size;
        let mut client = self
            .inner
            .chunk_client(&replica.addr)
            .map_err(|s| Stop::Replica(Error::from_status(&s)))?;
        let req = pb::ReadRequest {
            chunk_id: loc.chunk_id,
            version: loc.version,
            offset: *pos - base,
            length: end - *pos,
        };
        if req.length <= SMALL_READ_BYTES as u64 {
            // A small range: one answer, without a stream's set-up.
            match client.read_small(req).await {
                Ok(r) => return self.deliver(r.into_inner(), pos, end).await,
                // A chunk server from before ReadSmall: stream instead.
                Err(s) if s.code() == tonic::Code::Unimplemented => {}
                Err(s) => return Err(Stop::Replica(Error::from_status(&s))),
            }
        }
        let mut stream = client
            .read(req)
            .await
            .map_err(|s| Stop::Replica(Error::from_status(&s)))?
            .into_inner();
        loop {
            let piece = match stream.message().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(s) => return Err(Stop::Replica(Error::from_status(&s))),
            };
            if crc32c::crc32c(&piece.data) != piece.crc32c {
                return Err(Stop::Replica(Error::new(
                    ErrorKind::Corrupt,
                    "a piece failed its checksum in transit",
                )));
            }
            if piece.data.is_empty() {
                continue;
            }
            let n = (piece.data.len() as u64).min(end - *pos);
            self.tx
                .send(Ok(piece.data.slice(..n as usize)))
                .await
                .map_err(|_| Stop::Closed)?;
            *pos += n;
            if *pos >= end {
                // The server has sent the whole range; take its closing status too, since
                // a stream dropped open is reset, and h2 ends a connection (every call on
                // it) after its 1,024th reset.
                let _ = tokio::time::timeout(DRAIN_WAIT, stream.message()).await;
                return Ok(());
            }
        }
        // The replica ended early: the rest of the range lies past its end and reads as zeros.
        self.zeros(*pos, end).await.map_err(|_| Stop::Closed)?;
        *pos = end;
        Ok(())
    }

    /// Hands on the answer of a one-piece read of `[pos, end)`, checked against its CRC;
    /// bytes it lacks lie past the replica's end and read as zeros.
    async fn deliver(&self, piece: pb::ReadResponse, pos: &mut u64, end: u64) -> Result<(), Stop> {
        if crc32c::crc32c(&piece.data) != piece.crc32c {
            return Err(Stop::Replica(Error::new(
                ErrorKind::Corrupt,
                "a piece failed its checksum in transit",
            )));
        }
        let n = (piece.data.len() as u64).min(end - *pos);
        if n > 0 {
            self.tx
                .send(Ok(piece.data.slice(..n as usize)))
                .await
                .map_err(|_| Stop::Closed)?;
            *pos += n;
        }
        self.zeros(*pos, end).await.map_err(|_| Stop::Closed)?;
        *pos = end;
        Ok(())
    }
}
