//! Writing: one mutation of one chunk pushed down the replica chain, and the streaming
//! [`FileWriter`] built on it.
//!
//! A mutation is retried when a replica fails: the client tells the master which server
//! failed (from the chain's answer), asks for a new lease (the master moves the chunk to a
//! new version without that server), and sends the mutation again. The payload is therefore
//! kept restartable: bytes in memory, or a range of a local file read again per attempt.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cairn_proto::pb::write_request::Msg;
use cairn_proto::{DATA_PIECE_BYTES, ErrorKind, SMALL_WRITE_BYTES, pb};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{Error, Result};
use crate::{Attr, Inner};

/// Told how many more bytes are durable, as a transfer goes on.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Attempts at one mutation before giving up with `ReplicationFailed`.
const MAX_ATTEMPTS: usize = 8;

/// One change to one chunk.
#[derive(Clone)]
pub(crate) enum Mutation {
    /// Write the payload at an offset within the chunk.
    Write { offset: u64, payload: Payload },
    /// Set the replica length (zeros when it grows).
    Truncate { length: u64 },
}

/// The bytes of one mutation, readable again for a retry.
#[derive(Clone)]
pub(crate) enum Payload {
    Memory(Bytes),
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Memory(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    async fn piece(&self, at: u64, n: usize) -> Result<Bytes> {
        match self {
            Payload::Memory(b) => Ok(b.slice(at as usize..at as usize + n)),
            Payload::File { file, offset, .. } => {
                let file = file.clone();
                let pos = offset + at;
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, pos).map(|()| Bytes::from(buf))
                })
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("read task: {e}")))?
                .map_err(|e| {
                    Error::new(ErrorKind::Internal, format!("reading the local file: {e}"))
                })
            }
        }
    }
}

fn failure_kind(kind: ErrorKind) -> pb::FailureKind {
    match kind {
        ErrorKind::Corrupt => pb::FailureKind::Corrupt,
        ErrorKind::Unavailable | ErrorKind::Timeout => pb::FailureKind::Unreachable,
        ErrorKind::Stale | ErrorKind::NotFound => pb::FailureKind::Stale,
        ErrorKind::NoSpace => pb::FailureKind::NoSpace,
        _ => pb::FailureKind::Io,
    }
}

impl Inner {
    /// Writes `payload` at `offset` within chunk `index` of file `inode`, durably on every
    /// replica of the chunk's current set.
    pub(crate) async fn write_chunk(
        &self,
        inode: u64,
        index: u64,
        offset: u64,
        payload: &Payload,
    ) -> Result<()> {
        let m = Mutation::Write {
            offset,
            payload: payload.clone(),
        };
        self.mutate_chunk(inode, index, &m).await
    }

    /// Applies one mutation to chunk `index` of file `inode`, durably on every replica of
    /// the chunk's current set, retrying through replica failures.
    pub(crate) async fn mutate_chunk(
        &self,
        inode: u64,
        index: u64,
        mutation: &Mutation,
    ) -> Result<()> {
        let start = Instant::now();
        let mut last: Option<Error> = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                if start.elapsed() >= self.master.deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(5))).await;
            }
            // The first attempt uses the lease a create answered, if it holds one.
            let prepared = if attempt == 0 {
                self.prepared.lease_for(inode, index)
            } else {
                None
            };
            let from_create = prepared.is_some();
            let prep = match prepared {
                Some(p) => p,
                None => {
                    let req = self.master.request_id();
                    self.master
                        .call(
                            "prepare write",
                            rpc!(
                                prepare_write,
                                pb::PrepareWriteRequest {
                                    req: Some(req),
                                    inode,
                                    chunk_index: index,
                                    session_id: self.session_id(),
                                }
                            ),
                        )
                        .await?
                }
            };
            let status = match self.push_chain(&prep, mutation).await {
                Ok(()) => {
                    if from_create {
                        let chunk = prep.lease.as_ref().map_or(0, |l| l.chunk_id);
                        self.prepared.wrote(inode, index, chunk);
                    }
                    return Ok(());
                }
                Err(s) => s,
            };
            if from_create {
                self.prepared.failed(inode);
            }
            let err = Error::from_status(&status);
            let lease = prep.lease.clone().unwrap_or_default();
            match cairn_proto::failed_server(&status) {
                Some(server) => {
                    tracing::warn!(chunk = lease.chunk_id, version = lease.version, server, error = %err,
                        "replica failed during a write; asking the master to drop it");
                    let report = pb::ReportFailureRequest {
                        chunk_id: lease.chunk_id,
                        version: lease.version,
                        server_id: server,
                        kind: failure_kind(err.kind()) as i32,
                        detail: err.message().to_string(),
                    };
                    self.master
                        .call("report failure", rpc!(report_failure, report.clone()))
                        .await?;
                }
                None if matches!(
                    err.kind(),
                    ErrorKind::Stale | ErrorKind::Unavailable | ErrorKind::PermissionDenied
                ) =>
                {
                    tracing::debug!(chunk = lease.chunk_id, error = %err, "write needs a fresh lease; retrying");
                }
                None => return Err(err),
            }
            last = Some(err);
        }
        let last = last.map(|e| e.to_string()).unwrap_or_default();
        Err(Error::new(
            ErrorKind::ReplicationFailed,
            format!("chunk {index} of inode {inode}: could not write to enough replicas ({last})"),
        ))
    }

    /// Streams one mutation to the head of the chain and waits for the chain's answer.
    async fn push_chain(
        &self,
        prep: &pb::PrepareWriteResponse,
        mutation: &Mutation,
    ) -> Result<(), tonic::Status> {
        let (kind, offset, payload) = match mutation {
            Mutation::Write { offset, payload } => {
                (pb::MutationKind::Write, *offset, Some(payload))
            }
            Mutation::Truncate { length } => (pb::MutationKind::Truncate, *length, None),
        };
        let head = prep
            .chain
            .first()
            .ok_or_else(|| ErrorKind::Unavailable.status("the master returned an empty chain"))?;
        let header = pb::WriteHeader {
            lease: prep.lease.clone(),
            kind: kind as i32,
            offset,
            downstream: prep.chain[1..].to_vec(),
            target_id: head.server_id,
            req: None,
        };
        let mut client = self
            .chunk_client(&head.addr)
            .map_err(|e| cairn_proto::blame_server(e, head.server_id))?;
        let total = payload.map_or(0, Payload::len);
        if total <= SMALL_WRITE_BYTES as u64 {
            let data = match payload {
                Some(p) => p
                    .piece(0, total as usize)
                    .await
                    .map_err(|e| e.kind().status(e.message().to_string()))?,
                None => Bytes::new(),
            };
            let req = pb::SmallWriteRequest {
                header: Some(header.clone()),
                crc32c: crc32c::crc32c(&data),
                data,
                serial: 0,
            };
            match client.write_small(req).await {
                Ok(_) => return Ok(()),
                // A chunk server from before star writes: send it down the chain.
                Err(s) if s.code() == tonic::Code::Unimplemented => {}
                Err(s) => return Err(blame_head(s, head.server_id)),
            }
        }
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(pb::WriteRequest {
            msg: Some(Msg::Header(header)),
        })
        .map_err(|_| ErrorKind::Internal.status("write channel full"))?;
        let head_id = head.server_id;
        let call: JoinHandle<Result<_, tonic::Status>> = tokio::spawn(async move {
            client
                .write(ReceiverStream::new(rx))
                .await
                .map_err(|s| blame_head(s, head_id))
        });
        let mut sent = 0u64;
        let mut send_failed = false;
        while let Some(payload) = payload.filter(|_| sent < total) {
            let n = ((total - sent) as usize).min(DATA_PIECE_BYTES);
            let data = payload
                .piece(sent, n)
                .await
                .map_err(|e| e.kind().status(e.message().to_string()))?;
            let piece = pb::WriteData {
                crc32c: crc32c::crc32c(&data),
                data,
            };
            if tx
                .send(pb::WriteRequest {
                    msg: Some(Msg::Data(piece)),
                })
                .await
                .is_err()
            {
                send_failed = true;
                break;
            }
            sent += n as u64;
        }
        if !send_failed {
            let commit = pb::WriteCommit {
                length: total,
                serial: 0,
            };
            let _ = tx
                .send(pb::WriteRequest {
                    msg: Some(Msg::Commit(commit)),
                })
                .await;
        }
        drop(tx);
        match call.await {
            Ok(Ok(_)) if !send_failed => Ok(()),
            Ok(Ok(_)) => {
                Err(ErrorKind::Internal
                    .status("the chain answered before the whole mutation was sent"))
            }
            Ok(Err(s)) => Err(s),
            Err(e) => Err(ErrorKind::Internal.status(format!("write task: {e}"))),
        }
    }

    /// Writes `payload` at file offset `offset`, split at chunk boundaries, with up to
    /// `parallel` chunks in flight.
    pub(crate) async fn write_range(
        self: &Arc<Self>,
        inode: u64,
        chunk_size: u64,
        offset: u64,
        payload: Payload,
        parallel: usize,
    ) -> Result<()> {
        self.write_range_progress(inode, chunk_size, offset, payload, parallel, None)
            .await
    }

    /// [`Inner::write_range`], calling `progress` with the bytes of each chunk once it is
    /// durable.
    pub(crate) async fn write_range_progress(
        self: &Arc<Self>,
        inode: u64,
        chunk_size: u64,
        offset: u64,
        payload: Payload,
        parallel: usize,
        progress: Option<Progress>,
    ) -> Result<()> {
        let total = payload.len();
        let mut jobs = Vec::new();
        let mut done = 0u64;
        while done < total {
            let pos = offset + done;
            let index = pos / chunk_size;
            let within = pos % chunk_size;
            let n = (chunk_size - within).min(total - done);
            let part = match &payload {
                Payload::Memory(b) => Payload::Memory(b.slice(done as usize..(done + n) as usize)),
                Payload::File {
                    file, offset: base, ..
                } => Payload::File {
                    file: file.clone(),
                    offset: base + done,
                    len: n,
                },
            };
            jobs.push((index, within, part));
            done += n;
        }
        let mut running: Vec<JoinHandle<Result<()>>> = Vec::new();
        for (index, within, part) in jobs {
            if running.len() >= parallel.max(1) {
                running.remove(0).await.map_err(join_err)??;
            }
            let inner = self.clone();
            let progress = progress.clone();
            running.push(tokio::spawn(async move {
                inner.write_chunk(inode, index, within, &part).await?;
                if let Some(p) = progress {
                    p(part.len());
                }
                Ok(())
            }));
        }
        for h in running {
            h.await.map_err(join_err)??;
        }
        Ok(())
    }

    /// Extends the file to `end`; chunks written under a create's lease join it in the
    /// same command. `Stale` means the master would not take one of those: the data must be
    /// written again (the lease is dropped, so that goes the ordinary way).
    pub(crate) async fn commit_write(&self, inode: u64, end: u64) -> Result<Attr> {
        let new_chunks: Vec<pb::NewChunk> = self
            .prepared
            .take_written(inode)
            .into_iter()
            .map(|(index, chunk_id)| pb::NewChunk { index, chunk_id })
            .collect();
        let binds = !new_chunks.is_empty();
        let req = self.master.request_id();
        let r = self
            .master
            .call(
                "commit write",
                rpc!(
                    commit_write,
                    pb::CommitWriteRequest {
                        req: Some(req),
                        inode,
                        end,
                        session_id: self.session_id(),
                        new_chunks: new_chunks.clone(),
                    }
                ),
            )
            .await;
        match r {
            Ok(r) => Attr::from_pb(r.attr),
            Err(e) => {
                if binds && e.kind() == ErrorKind::Stale {
                    self.prepared.forget(inode);
                }
                Err(e)
            }
        }
    }

    /// Runs `write` (which writes bytes up to `end` of `inode` and can run again), then
    /// commits `end`; if the commit could not take chunks written under a create's lease,
    /// writes again the ordinary way and commits once more.
    pub(crate) async fn write_committed<F, Fut>(
        &self,
        inode: u64,
        end: u64,
        write: F,
    ) -> Result<Attr>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        write().await?;
        match self.commit_write(inode, end).await {
            Err(e) if e.kind() == ErrorKind::Stale => {
                tracing::info!(inode, error = %e, "a first chunk was not taken; writing again");
                write().await?;
                self.commit_write(inode, end).await
            }
            r => r,
        }
    }
}

/// A failed call to the head of the chain: a Cairn status names its culprit already; a
/// transport failure is the head's.
fn blame_head(s: tonic::Status, head_id: u64) -> tonic::Status {
    if s.metadata().get("x-cairn-error").is_some() {
        s
    } else {
        cairn_proto::blame_server(
            ErrorKind::Unavailable.status(format!("chunk server {head_id}: {}", s.message())),
            head_id,
        )
    }
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Internal, format!("write task: {e}"))
}

/// Streams bytes into a file: buffered into segments that never cross a chunk boundary,
/// each written as one mutation with one segment in flight while the next fills. The bytes
/// become part of the file (and the write is acknowledged) at [`FileWriter::close`].
pub struct FileWriter {
    inner: Arc<Inner>,
    inode: u64,
    chunk_size: u64,
    segment: usize,
    /// File offset of the first byte in `buf`.
    pos: u64,
    buf: BytesMut,
    inflight: Option<JoinHandle<Result<()>>>,
    /// The path of the file this writer created, removed if the upload fails.
    pub(crate) created: Option<String>,
}

impl FileWriter {
    pub(crate) fn new(
        inner: Arc<Inner>,
        inode: u64,
        chunk_size: u64,
        segment: usize,
        start: u64,
    ) -> FileWriter {
        FileWriter {
            inner,
            inode,
            chunk_size,
            segment,
            pos: start,
            buf: BytesMut::new(),
            inflight: None,
            created: None,
        }
    }

    /// Bytes accepted so far, counted from the start offset of the file.
    pub fn position(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    /// Appends bytes; flushes whole segments as they fill.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let limit = self.segment_limit();
            let room = limit - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == limit {
                self.flush_segment().await?;
            }
        }
        Ok(())
    }

    /// The segment ends at `segment` bytes or at the chunk boundary, whichever is first.
    fn segment_limit(&self) -> usize {
        let to_boundary = self.chunk_size - (self.pos % self.chunk_size);
        (self.segment as u64).min(to_boundary) as usize
    }

    async fn flush_segment(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(h) = self.inflight.take() {
            h.await.map_err(join_err)??;
        }
        let data = self.buf.split().freeze();
        let (index, within) = (self.pos / self.chunk_size, self.pos % self.chunk_size);
        self.pos += data.len() as u64;
        let inner = self.inner.clone();
        let inode = self.inode;
        self.inflight = Some(tokio::spawn(async move {
            inner
                .write_chunk(inode, index, within, &Payload::Memory(data))
                .await
        }));
        Ok(())
    }

    /// Writes what is buffered, waits until every byte is durable on every replica, and
    /// extends the file to cover it. Returns the file's attributes. When this fails, the
    /// file the writer created is removed (see [`FileWriter::abort`]).
    pub async fn close(mut self) -> Result<Attr> {
        let done = self.finish().await;
        if done.is_err() {
            self.discard().await;
        }
        done
    }

    async fn finish(&mut self) -> Result<Attr> {
        self.flush_segment().await?;
        if let Some(h) = self.inflight.take() {
            h.await.map_err(join_err)??;
        }
        self.inner.commit_write(self.inode, self.pos).await
    }

    /// Gives the upload up (a failed `write`, or a source that failed): stops the segment
    /// in flight and removes the file the writer created, if its path still names it.
    /// Nothing written through the writer was acknowledged, and an empty or partial file
    /// would read like the upload's result.
    pub async fn abort(mut self) {
        if let Some(h) = self.inflight.take() {
            h.abort();
            let _ = h.await;
        }
        self.discard().await;
    }

    async fn discard(&mut self) {
        if let Some(p) = self.created.take() {
            let client = crate::Client {
                inner: self.inner.clone(),
            };
            client.remove_if_still(&p, self.inode).await;
        }
    }
}
