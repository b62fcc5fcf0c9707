//! The master's control calls: a replica's state, and moving a replica to a new version
//! before a lease is granted.

use cairn_chunk_store::StoreError;
use cairn_proto::{ErrorKind, pb};
use tokio::task::spawn_blocking;
use tonic::Status;

use crate::error::{join_status, store_status};
use crate::server::ChunkServer;

impl ChunkServer {
    /// A replica's version, length and serial; with `with_checksum`, also the CRC32C of
    /// its bytes (every block verified on the way), so replicas can be compared. A replica
    /// that fails verification is deleted and reported, like one a read found.
    pub async fn replica_state(
        &self,
        req: pb::ReplicaStateRequest,
    ) -> Result<pb::ReplicaStateResponse, Status> {
        let chunk_id = req.chunk_id;
        let missing = || ErrorKind::NotFound.status(format!("no replica of chunk {chunk_id}"));
        if !req.with_checksum {
            let info = self.store.info(chunk_id).ok_or_else(missing)?;
            return Ok(pb::ReplicaStateResponse {
                version: info.version,
                length: info.length,
                serial: info.serial,
                checksum: 0,
            });
        }
        // Mutations wait while the replica is read, so the checksum matches the state.
        let lock = self.chunk_lock(chunk_id);
        let _order = lock.lock().await;
        let info = self.store.info(chunk_id).ok_or_else(missing)?;
        let store = self.store.clone();
        let checksum = spawn_blocking(move || {
            store.check_header(chunk_id)?;
            let mut buf = vec![0u8; cairn_proto::DATA_PIECE_BYTES];
            let mut crc = 0u32;
            let mut at = 0u64;
            while at < info.length {
                let n = ((info.length - at) as usize).min(buf.len());
                let got = store.read(chunk_id, info.version, at, &mut buf[..n])?;
                crc = crc32c::crc32c_append(crc, &buf[..got]);
                if got < n {
                    break;
                }
                at += got as u64;
            }
            Ok::<u32, StoreError>(crc)
        })
        .await
        .map_err(join_status)?;
        drop(_order);
        let checksum = match checksum {
            Ok(c) => c,
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(chunk = chunk_id, error = %e, "replica failed its checksum; removing it");
                self.discard_corrupt(info).await;
                return Err(store_status(&e));
            }
            Err(e) => return Err(store_status(&e)),
        };
        Ok(pb::ReplicaStateResponse {
            version: info.version,
            length: info.length,
            serial: info.serial,
            checksum,
        })
    }

    /// Moves a replica from `from` to `to`, but only if it has applied exactly `serial`
    /// mutations at `from`: the master chose the new replica set on that basis.
    pub async fn set_version(&self, req: pb::SetVersionRequest) -> Result<(), Status> {
        if req.to <= req.from {
            return Err(ErrorKind::InvalidArgument.status("a new version must be higher"));
        }
        let lock = self.chunk_lock(req.chunk_id);
        let _order = lock.lock().await;
        let info = self.store.info(req.chunk_id).ok_or_else(|| {
            ErrorKind::NotFound.status(format!("no replica of chunk {}", req.chunk_id))
        })?;
        if info.version == req.to {
            return Ok(());
        }
        if info.version != req.from || info.serial != req.serial {
            return Err(ErrorKind::Stale.status(format!(
                "replica of chunk {} is at version {} serial {}, the master expected version {} serial {}",
                req.chunk_id, info.version, info.serial, req.from, req.serial
            )));
        }
        let store = self.store.clone();
        let (chunk, from, to) = (req.chunk_id, req.from, req.to);
        let info = spawn_blocking(move || store.set_version(chunk, from, to))
            .await
            .map_err(join_status)?
            .map_err(|e| store_status(&e))?;
        self.report_added(info);
        Ok(())
    }
}
