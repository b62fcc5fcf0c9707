//! The star write: one small mutation in one message, sent by the primary to every other
//! replica at once.
//!
//! A chain moves each byte across each link once, which is what large writes need; but a
//! mutation of a few KiB is all latency, and a chain pays a round trip per hop in each
//! direction plus a stream set-up per hop. Here the client sends header, bytes and CRC in
//! one unary call to the primary; the primary checks them, takes the chunk's mutation lock,
//! assigns the serial, and sends the same message (with the serial, addressed to each) to
//! every secondary concurrently while it applies the mutation itself. It answers only when
//! every replica has applied it durably, still holding the lock, so mutations of one chunk
//! reach every replica in serial order whichever protocol carried them.
//!
//! The rules are the chain's (`write.rs`): the same header checks, the same blame for a
//! failed server, and a primary that saw a failure orders nothing more at that version.
//! A secondary never forwards.

use std::sync::Arc;

use cairn_proto::{ErrorKind, blame_server, pb};
use futures::future::join_all;
use tokio::task::spawn_blocking;
use tonic::Status;

use crate::error::{join_status, store_status};
use crate::server::ChunkServer;
use crate::write::{Checked, downstream_status};

/// Largest data payload a star write may carry (one data piece).
const SMALL_WRITE_MAX: usize = cairn_proto::DATA_PIECE_BYTES;

impl ChunkServer {
    /// Serves one star write, as primary (serial 0 from the client) or as a secondary.
    pub async fn write_small(
        self: Arc<Self>,
        req: pb::SmallWriteRequest,
    ) -> Result<pb::WriteResponse, Status> {
        let _active = self.track();
        let header = req
            .header
            .ok_or_else(|| ErrorKind::InvalidArgument.status("a small write without a header"))?;
        let Checked {
            lease,
            kind,
            is_primary,
            capacity,
        } = self.check_header(&header)?;
        if req.data.len() > SMALL_WRITE_MAX {
            return Err(ErrorKind::InvalidArgument.status(format!(
                "a small write carries at most {SMALL_WRITE_MAX} bytes, not {}",
                req.data.len()
            )));
        }
        if crc32c::crc32c(&req.data) != req.crc32c {
            return Err(ErrorKind::Corrupt.status("the data failed its checksum in transit"));
        }
        if !is_primary && req.serial == 0 {
            return Err(ErrorKind::InvalidArgument
                .status("a secondary needs the serial the primary assigned"));
        }
        let chunk = lease.chunk_id;
        let staged = match kind {
            pb::MutationKind::Write => {
                let mut s = self
                    .store
                    .stage(chunk, header.offset, capacity)
                    .map_err(|e| blame_server(store_status(&e), self.id))?;
                // Bytes that stay in memory are a copy, cheaper than a thread hand-off.
                let s = if s.stays_in_memory(req.data.len()) {
                    s.write(&req.data).map(|()| s)
                } else {
                    let data = req.data.clone();
                    spawn_blocking(move || s.write(&data).map(|()| s))
                        .await
                        .map_err(|e| blame_server(join_status(e), self.id))?
                }
                .map_err(|e| blame_server(store_status(&e), self.id))?;
                self.metrics.written_bytes.inc_by(req.data.len() as u64);
                Some(s)
            }
            _ if !req.data.is_empty() => {
                return Err(ErrorKind::InvalidArgument.status("data in a truncate"));
            }
            _ => None,
        };

        let lock = self.chunk_lock(chunk);
        let _order = lock.lock().await;
        let serial = if is_primary {
            self.next_serial(&lease)?
        } else {
            req.serial
        };
        let local = self.apply_local(staged, &lease, serial, header.offset, capacity);
        let result = if is_primary {
            let forwards = header.downstream.iter().map(|next| {
                let mut fwd_header = header.clone();
                fwd_header.downstream = Vec::new();
                fwd_header.target_id = next.server_id;
                let fwd = pb::SmallWriteRequest {
                    header: Some(fwd_header),
                    data: req.data.clone(),
                    crc32c: req.crc32c,
                    serial,
                };
                self.forward_small(next, fwd)
            });
            let (local, forwarded) = tokio::join!(local, join_all(forwards));
            match forwarded.into_iter().find_map(Result::err) {
                Some(e) => local.and(Err(e)),
                None => local,
            }
        } else {
            local.await
        };
        self.finish_mutation(result, &lease, serial, is_primary)
    }

    /// Sends a star write on to one secondary; a failure names its culprit.
    async fn forward_small(
        &self,
        next: &pb::ServerRef,
        req: pb::SmallWriteRequest,
    ) -> Result<(), Status> {
        let mut client = self
            .peer(&next.addr)
            .map_err(|s| blame_server(s, next.server_id))?;
        match client.write_small(req).await {
            Ok(_) => Ok(()),
            Err(s) => Err(downstream_status(s, next.server_id)),
        }
    }
}
