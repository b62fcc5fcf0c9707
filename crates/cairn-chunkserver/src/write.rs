//! The chain write: one mutation pushed down the replica chain.
//!
//! The client streams a header, data pieces and a commit to the first server (the primary).
//! Every server forwards each message to the next server as it arrives and stages the data
//! locally, so each byte crosses each link once and the links work in parallel. On the
//! commit, the primary takes the chunk's mutation lock, assigns the next serial, and sends
//! the commit on; every server applies the mutation (durably) while its downstream does the
//! same, and answers only when it and everything after it succeeded. So an answer at the
//! client means every replica in the chain holds the mutation durably.
//!
//! A failure names the faulty server in the status (`x-cairn-failed-server`), so the client
//! can have the master drop it. A primary that saw any failure orders nothing more at that
//! version: the replicas may now differ, and only a new version (a new lease) resolves it.

use std::sync::Arc;

use cairn_chunk_store::{ReplicaInfo, StagedWrite, StoreError};
use cairn_common::time::unix_ms;
use cairn_proto::pb::write_request::Msg;
use cairn_proto::{ErrorKind, blame_server, pb};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, spawn_blocking};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::error::{join_status, store_status};
use crate::server::ChunkServer;

/// A primary stops ordering this long before its lease ends, to allow for clock skew.
const LEASE_MARGIN_MS: u64 = 2_000;

/// What [`ChunkServer::check_header`] found a mutation's header to be.
pub(crate) struct Checked {
    pub lease: pb::Lease,
    pub kind: pb::MutationKind,
    pub is_primary: bool,
    /// The cluster's chunk size.
    pub capacity: u64,
}

/// The status to pass up for a failed call to the next server: a status from a Cairn
/// server already names its culprit; a transport failure (no Cairn error header) is the
/// next server's fault.
pub(crate) fn downstream_status(s: Status, server_id: u64) -> Status {
    if cairn_proto::failed_server(&s).is_some() || s.metadata().get("x-cairn-error").is_some() {
        s
    } else {
        blame_server(
            ErrorKind::Unavailable.status(format!(
                "chunk server {server_id} unreachable: {}",
                s.message()
            )),
            server_id,
        )
    }
}

/// The rest of the chain, reached through one client stream.
struct Downstream {
    server_id: u64,
    tx: mpsc::Sender<pb::WriteRequest>,
    call: JoinHandle<Result<tonic::Response<pb::WriteResponse>, Status>>,
}

impl Downstream {
    fn open(server: &ChunkServer, header: &pb::WriteHeader) -> Result<Option<Downstream>, Status> {
        let Some(next) = header.downstream.first() else {
            return Ok(None);
        };
        let mut client = server
            .peer(&next.addr)
            .map_err(|s| blame_server(s, next.server_id))?;
        let (tx, rx) = mpsc::channel(4);
        let mut fwd = header.clone();
        fwd.downstream = header.downstream[1..].to_vec();
        fwd.target_id = next.server_id;
        // The channel has room: this first send cannot block.
        tx.try_send(pb::WriteRequest {
            msg: Some(Msg::Header(fwd)),
        })
        .map_err(|_| ErrorKind::Internal.status("downstream channel full"))?;
        let call = tokio::spawn(async move { client.write(ReceiverStream::new(rx)).await });
        Ok(Some(Downstream {
            server_id: next.server_id,
            tx,
            call,
        }))
    }

    async fn send(&self, msg: pb::WriteRequest) -> Result<(), Status> {
        if self.tx.send(msg).await.is_err() {
            return Err(self.unreachable("closed the stream early"));
        }
        Ok(())
    }

    /// Ends the stream and waits for the downstream answer.
    async fn finish(self) -> Result<pb::WriteResponse, Status> {
        drop(self.tx);
        match self.call.await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(downstream_status(s, self.server_id)),
            Err(e) => Err(blame_server(join_status(e), self.server_id)),
        }
    }

    fn unreachable(&self, what: &str) -> Status {
        blame_server(
            ErrorKind::Unavailable.status(format!("chunk server {} {what}", self.server_id)),
            self.server_id,
        )
    }
}

impl ChunkServer {
    /// Waits for a piece's disk write running on the blocking pool; gives the staged write
    /// back.
    async fn finish_piece(
        &self,
        h: JoinHandle<Result<StagedWrite, StoreError>>,
    ) -> Result<StagedWrite, Status> {
        h.await
            .map_err(|e| blame_server(join_status(e), self.id))?
            .map_err(|e| blame_server(store_status(&e), self.id))
    }

    /// Serves one chain write.
    pub async fn write(
        self: Arc<Self>,
        mut incoming: Streaming<pb::WriteRequest>,
    ) -> Result<pb::WriteResponse, Status> {
        let _active = self.track();
        let header = match incoming.message().await? {
            Some(pb::WriteRequest {
                msg: Some(Msg::Header(h)),
            }) => h,
            _ => {
                return Err(
                    ErrorKind::InvalidArgument.status("a write stream must start with a header")
                );
            }
        };
        let Checked {
            lease,
            kind,
            is_primary,
            capacity,
        } = self.check_header(&header)?;
        let chunk = lease.chunk_id;
        let downstream = Downstream::open(&self, &header)?;

        // Data phase: forward and stage every piece.
        let mut staged: Option<StagedWrite> = None;
        if kind == pb::MutationKind::Write {
            // Staging starts in memory: no I/O beyond a `statvfs`, so no thread hand-off.
            let s = self
                .store
                .stage(chunk, header.offset, capacity)
                .map_err(|e| blame_server(store_status(&e), self.id))?;
            staged = Some(s);
        }
        // The piece being written to disk while the next one arrives: with direct writes a
        // piece waits for the device, and receiving meanwhile keeps the stream moving.
        let mut pending: Option<JoinHandle<Result<StagedWrite, StoreError>>> = None;
        let mut received: u64 = 0;
        let commit =
            loop {
                let msg = match incoming.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        return Err(ErrorKind::InvalidArgument
                            .status("write stream ended without a commit"));
                    }
                    Err(s) => return Err(s),
                };
                match msg.msg {
                    Some(Msg::Data(d)) => {
                        if staged.is_none() && pending.is_none() {
                            return Err(ErrorKind::InvalidArgument.status("data in a truncate"));
                        }
                        if crc32c::crc32c(&d.data) != d.crc32c {
                            return Err(ErrorKind::Corrupt
                                .status("a data piece failed its checksum in transit"));
                        }
                        received += d.data.len() as u64;
                        self.metrics.written_bytes.inc_by(d.data.len() as u64);
                        let data = d.data.clone();
                        if let Some(ds) = &downstream {
                            ds.send(pb::WriteRequest {
                                msg: Some(Msg::Data(d)),
                            })
                            .await?;
                        }
                        let mut s = match (staged.take(), pending.take()) {
                            (Some(s), _) => s,
                            (None, Some(h)) => self.finish_piece(h).await?,
                            (None, None) => {
                                return Err(ErrorKind::InvalidArgument.status("data in a truncate"));
                            }
                        };
                        // A piece that stays in memory is a copy: a hand-off to the
                        // blocking pool would cost more than the copy (on a VM, several
                        // hundred microseconds per wake-up).
                        if s.stays_in_memory(data.len()) {
                            s.write(&data)
                                .map_err(|e| blame_server(store_status(&e), self.id))?;
                            staged = Some(s);
                        } else {
                            pending = Some(spawn_blocking(move || s.write(&data).map(|()| s)));
                        }
                    }
                    Some(Msg::Commit(c)) => break c,
                    _ => {
                        return Err(ErrorKind::InvalidArgument
                            .status("unexpected message in a write stream"));
                    }
                }
            };
        if let Some(h) = pending.take() {
            staged = Some(self.finish_piece(h).await?);
        }
        if commit.length != received {
            return Err(ErrorKind::InvalidArgument.status(format!(
                "commit says {} bytes, {received} arrived",
                commit.length
            )));
        }

        // Commit phase, in the chunk's mutation order.
        let lock = self.chunk_lock(chunk);
        let _order = lock.lock().await;
        let serial = if is_primary {
            self.next_serial(&lease)?
        } else {
            commit.serial
        };
        if let Some(ds) = &downstream {
            ds.send(pb::WriteRequest {
                msg: Some(Msg::Commit(pb::WriteCommit {
                    length: received,
                    serial,
                })),
            })
            .await?;
        }
        let local = self.apply_local(staged, &lease, serial, header.offset, capacity);
        let down = async {
            match downstream {
                Some(ds) => ds.finish().await.map(Some),
                None => Ok(None),
            }
        };
        let (local, down) = tokio::join!(local, down);
        let result = match (local, down) {
            (Ok(info), Ok(_)) => Ok(info),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        };
        self.finish_mutation(result, &lease, serial, is_primary)
    }

    /// The checks every mutation's header must pass on every server: a lease signed with
    /// the cluster key, addressed to this server, not about to expire at the primary, and a
    /// known mutation kind.
    pub(crate) fn check_header(&self, header: &pb::WriteHeader) -> Result<Checked, Status> {
        let lease = header
            .lease
            .clone()
            .ok_or_else(|| ErrorKind::InvalidArgument.status("write without a lease"))?;
        cairn_common::telemetry::record_subject(format_args!(
            "chunk {} v{} @{}",
            lease.chunk_id, lease.version, header.offset
        ));
        let reg = self.registration().ok_or_else(|| {
            ErrorKind::Unavailable
                .status("this chunk server has not registered with the master yet")
        })?;
        if !cairn_common::lease::verify(&reg.lease_key, &lease) {
            return Err(ErrorKind::PermissionDenied
                .status("the lease does not verify against the cluster key"));
        }
        if header.target_id != self.id {
            return Err(ErrorKind::InvalidArgument.status(format!(
                "header addressed to server {}, this is {}",
                header.target_id, self.id
            )));
        }
        let is_primary = lease.primary_id == self.id;
        if is_primary && unix_ms() + LEASE_MARGIN_MS >= lease.expiry_unix_ms {
            return Err(
                ErrorKind::Stale.status("the lease has expired; ask the master for a new one")
            );
        }
        let kind = pb::MutationKind::try_from(header.kind).unwrap_or(pb::MutationKind::Unspecified);
        if kind == pb::MutationKind::Unspecified {
            return Err(ErrorKind::InvalidArgument.status("unknown mutation kind"));
        }
        Ok(Checked {
            lease,
            kind,
            is_primary,
            capacity: reg.chunk_size,
        })
    }

    /// Applies a mutation to this server's replica durably (a staged write, or without
    /// one a truncate to `offset`), blaming this server for a failure.
    pub(crate) async fn apply_local(
        &self,
        staged: Option<StagedWrite>,
        lease: &pb::Lease,
        serial: u64,
        offset: u64,
        capacity: u64,
    ) -> Result<ReplicaInfo, Status> {
        let store = self.store.clone();
        let (chunk, version, create) = (lease.chunk_id, lease.version, lease.create);
        let local = spawn_blocking(move || match staged {
            Some(s) => store.commit_write(s, version, serial, create),
            None => store.truncate(chunk, version, serial, create, offset, capacity),
        })
        .await;
        match local {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(blame_server(store_status(&e), self.id)),
            Err(e) => Err(blame_server(join_status(e), self.id)),
        }
    }

    /// The end of a mutation on this server: a first mutation is reported to the master;
    /// a primary that saw a failure orders nothing more at this version.
    pub(crate) fn finish_mutation(
        &self,
        result: Result<ReplicaInfo, Status>,
        lease: &pb::Lease,
        serial: u64,
        is_primary: bool,
    ) -> Result<pb::WriteResponse, Status> {
        match result {
            Ok(info) => {
                if serial == 1 {
                    self.report_added(info);
                }
                Ok(pb::WriteResponse {
                    version: info.version,
                    length: info.length,
                    serial,
                })
            }
            Err(e) => {
                if is_primary {
                    self.mark_broken(lease.chunk_id, lease.version);
                }
                tracing::warn!(chunk = lease.chunk_id, version = lease.version, serial, error = %e.message(), "mutation failed");
                Err(e)
            }
        }
    }

    /// The serial the primary gives the next mutation, after checking that it may order.
    pub(crate) fn next_serial(&self, lease: &pb::Lease) -> Result<u64, Status> {
        if self.is_broken(lease.chunk_id, lease.version) {
            return Err(ErrorKind::Stale.status(
                "an earlier mutation at this version failed; the master must grant a new lease",
            ));
        }
        match self.store.info(lease.chunk_id) {
            Some(info) if info.version == lease.version => Ok(info.serial + 1),
            Some(info) => Err(blame_server(
                ErrorKind::Stale.status(format!(
                    "primary holds version {} of chunk {}, the lease says {}",
                    info.version, lease.chunk_id, lease.version
                )),
                self.id,
            )),
            None if lease.create => Ok(1),
            None => Err(blame_server(
                ErrorKind::NotFound.status(format!(
                    "primary has no replica of chunk {}",
                    lease.chunk_id
                )),
                self.id,
            )),
        }
    }
}
