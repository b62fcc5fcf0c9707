//! The master's control calls: a replica's state, and moving a replica to a new version
//! before a lease is granted.

use cairn_proto::{ErrorKind, pb};
use tokio::task::spawn_blocking;
use tonic::Status;

use crate::error::{join_status, store_status};
use crate::server::ChunkServer;

impl ChunkServer {
    pub fn replica_state(&self, chunk_id: u64) -> Result<pb::ReplicaStateResponse, Status> {
        let info = self
            .store
            .info(chunk_id)
            .ok_or_else(|| ErrorKind::NotFound.status(format!("no replica of chunk {chunk_id}")))?;
        Ok(pb::ReplicaStateResponse {
            version: info.version,
            length: info.length,
            serial: info.serial,
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
