//! Verified reads. Every block a read touches is checked against its CRC32C by the store;
//! a replica that fails is deleted, reported to the master, and answered with `Corrupt`, so
//! the client reads another replica. Nothing unverified ever leaves this server.

use std::sync::Arc;

use cairn_chunk_store::StoreError;
use cairn_proto::{DATA_PIECE_BYTES, ErrorKind, pb};
use tokio::sync::mpsc;
use tokio::task::spawn_blocking;
use tonic::Status;

use crate::error::{join_status, store_status};
use crate::server::ChunkServer;

/// Pieces buffered ahead of a slow reader (bounds memory per read).
const READ_AHEAD: usize = 2;

impl ChunkServer {
    /// Starts streaming a byte range of one replica.
    pub fn read(
        self: Arc<Self>,
        req: pb::ReadRequest,
    ) -> Result<mpsc::Receiver<Result<pb::ReadResponse, Status>>, Status> {
        let info = self.store.info(req.chunk_id).ok_or_else(|| {
            ErrorKind::NotFound.status(format!("no replica of chunk {}", req.chunk_id))
        })?;
        if info.version != req.version {
            return Err(ErrorKind::Stale.status(format!(
                "replica of chunk {} is at version {}, not {}",
                req.chunk_id, info.version, req.version
            )));
        }
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            let _active = self.track();
            let end = req.offset.saturating_add(req.length);
            let mut offset = req.offset;
            let mut first = true;
            if req.length > DATA_PIECE_BYTES as u64 {
                // The disk reads the whole range in large requests of its own while the
                // pieces are read and sent, instead of one piece at a time.
                let store = self.store.clone();
                let (chunk, offset, len) = (req.chunk_id, req.offset, req.length);
                let _ = spawn_blocking(move || store.prefetch(chunk, offset, len)).await;
            }
            while offset < end {
                let n = ((end - offset) as usize).min(DATA_PIECE_BYTES);
                let store = self.store.clone();
                let (chunk, version) = (req.chunk_id, req.version);
                let read = spawn_blocking(move || {
                    let mut buf = vec![0u8; n];
                    store.read(chunk, version, offset, &mut buf).map(|got| {
                        buf.truncate(got);
                        buf
                    })
                })
                .await;
                let buf = match read {
                    Ok(Ok(buf)) => buf,
                    Ok(Err(e)) => {
                        self.read_failed(req.chunk_id, &e).await;
                        let _ = tx.send(Err(store_status(&e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(join_status(e))).await;
                        return;
                    }
                };
                let got = buf.len();
                self.metrics.read_bytes.inc_by(got as u64);
                let piece = pb::ReadResponse {
                    crc32c: crc32c::crc32c(&buf),
                    data: buf.into(),
                    replica_length: if first { info.length } else { 0 },
                };
                first = false;
                if tx.send(Ok(piece)).await.is_err() {
                    return; // the reader went away
                }
                if got < n {
                    return; // past the replica's end: the caller fills zeros
                }
                offset += got as u64;
            }
            if first {
                let _ = tx
                    .send(Ok(pb::ReadResponse {
                        data: Default::default(),
                        crc32c: crc32c::crc32c(&[]),
                        replica_length: info.length,
                    }))
                    .await;
            }
        });
        Ok(rx)
    }

    /// Reads at most one piece in one answer. A warm replica is read on the request's own
    /// task (page cache only, never waiting for the disk); anything else on the blocking
    /// pool, as a streaming read would.
    pub async fn read_small(&self, req: pb::ReadRequest) -> Result<pb::ReadResponse, Status> {
        let _active = self.track();
        if req.length > DATA_PIECE_BYTES as u64 {
            return Err(ErrorKind::InvalidArgument.status(format!(
                "a small read is at most {DATA_PIECE_BYTES} bytes, not {}",
                req.length
            )));
        }
        let info = self.store.info(req.chunk_id).ok_or_else(|| {
            ErrorKind::NotFound.status(format!("no replica of chunk {}", req.chunk_id))
        })?;
        let (chunk, version, offset) = (req.chunk_id, req.version, req.offset);
        let mut buf = vec![0u8; req.length as usize];
        let read = match self.store.read_cached(chunk, version, offset, &mut buf) {
            Ok(Some(got)) => Ok((buf, got)),
            Ok(None) => {
                let store = self.store.clone();
                spawn_blocking(move || {
                    store
                        .read(chunk, version, offset, &mut buf)
                        .map(|got| (buf, got))
                })
                .await
                .map_err(join_status)?
            }
            Err(e) => Err(e),
        };
        let buf = match read {
            Ok((mut buf, got)) => {
                buf.truncate(got);
                buf
            }
            Err(e) => {
                self.read_failed(chunk, &e).await;
                return Err(store_status(&e));
            }
        };
        self.metrics.read_bytes.inc_by(buf.len() as u64);
        Ok(pb::ReadResponse {
            crc32c: crc32c::crc32c(&buf),
            data: buf.into(),
            replica_length: info.length,
        })
    }

    /// A replica that failed its checksum is removed and reported; it is never read again.
    async fn read_failed(&self, chunk: u64, e: &StoreError) {
        if let StoreError::Corrupt { .. } = e {
            tracing::error!(chunk, error = %e, "replica failed its checksum; removing it");
            let store = self.store.clone();
            let _ = spawn_blocking(move || store.delete(chunk)).await;
            self.metrics.corrupt_replicas.inc();
            self.report_corrupt(chunk);
        }
    }
}
