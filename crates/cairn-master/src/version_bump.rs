//! Moving a chunk's replicas to a new version: the step before a new write lease, and
//! before a re-replication copies the chunk.
//!
//! The master asks the chunk's live replicas for their `(version, serial)`, keeps those at
//! the current version with the highest serial, and moves exactly those to `version + 1`
//! with a `SetVersion` that carries the expected serial. A replica that applied a mutation
//! in between refuses and drops out; one that missed a mutation is left behind, stale. The
//! new version is logged only after replicas hold it (a crash in between leaves replicas
//! ahead of the log, which the master adopts when they report).
//!
//! Invariants:
//! - After a successful move no lease at the old version is in the master's map, and every
//!   replica the old lease's primary could still reach either holds the new version (and
//!   refuses old-version commits) or is stale. So a move makes the chunk immutable until the
//!   master grants a lease at the new version, without waiting for an old lease to expire.
//! - Replicas below the new version leave the location map and are told to delete
//!   themselves.

use std::time::Duration;

use cairn_meta::MetaCommand;
use cairn_proto::{ErrorKind, pb};
use futures::future::join_all;

use crate::cluster::{ChunkId, ServerId};
use crate::error::MasterError;
use crate::master::Master;

/// Deadline for each control call to a chunk server during a move.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);

/// What became of a version move.
pub(crate) enum Bump {
    /// These servers now hold the chunk at `version`, which is logged.
    Moved {
        version: u64,
        servers: Vec<ServerId>,
    },
    /// Every replica the master believed in answered that it holds nothing: the chunk's
    /// first write never landed anywhere.
    NoReplica,
}

/// Marks a chunk as moving for as long as it lives (every way out of `advance_version`).
struct Moving<'a> {
    master: &'a Master,
    chunk_id: ChunkId,
}

impl<'a> Moving<'a> {
    fn start(master: &'a Master, chunk_id: ChunkId) -> Self {
        master.cluster().moving.insert(chunk_id);
        Moving { master, chunk_id }
    }
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        self.master.cluster().moving.remove(&self.chunk_id);
    }
}

impl Master {
    /// Moves the up-to-date replicas among `current` (live holders of `version`) to
    /// `version + 1`. Fails with `Unavailable` when fewer than `min` could move.
    pub(crate) async fn advance_version(
        &self,
        chunk_id: ChunkId,
        version: u64,
        current: &[ServerId],
        min: usize,
    ) -> Result<Bump, MasterError> {
        let _moving = Moving::start(self, chunk_id);
        let targets: Vec<(ServerId, String)> = {
            let cluster = self.cluster();
            current
                .iter()
                .filter_map(|s| cluster.addr(*s).map(|a| (*s, a.to_string())))
                .collect()
        };
        let states = join_all(targets.iter().map(|(id, addr)| async move {
            let mut peer = self.peer(addr).ok()?;
            let req = pb::ReplicaStateRequest {
                chunk_id,
                with_checksum: false,
            };
            match tokio::time::timeout(CONTROL_TIMEOUT, peer.replica_state(req)).await {
                Ok(Ok(r)) => Some(Ok((*id, addr.clone(), r.into_inner()))),
                Ok(Err(e)) => {
                    tracing::warn!(chunk_id, server = id, error = %e, "replica state query failed");
                    Some(Err(ErrorKind::of_status(&e)))
                }
                Err(_) => None,
            }
        }))
        .await;
        let none_anywhere = !states.is_empty()
            && states
                .iter()
                .all(|s| matches!(s, Some(Err(ErrorKind::NotFound))));
        if none_anywhere {
            return Ok(Bump::NoReplica);
        }
        let at_version: Vec<_> = states
            .into_iter()
            .flatten()
            .flatten()
            .filter(|(_, _, s)| s.version == version)
            .collect();
        let max_serial = at_version
            .iter()
            .map(|(_, _, s)| s.serial)
            .max()
            .unwrap_or(0);
        let good: Vec<_> = at_version
            .into_iter()
            .filter(|(_, _, s)| s.serial == max_serial)
            .collect();
        if good.is_empty() {
            return Err(MasterError::Unavailable(format!(
                "no replica of chunk {chunk_id} answered at version {version}; retry"
            )));
        }
        let next = version + 1;
        let bumped = join_all(good.iter().map(|(id, addr, _)| async move {
            let mut peer = self.peer(addr).ok()?;
            let req = pb::SetVersionRequest {
                chunk_id,
                from: version,
                to: next,
                serial: max_serial,
            };
            match tokio::time::timeout(CONTROL_TIMEOUT, peer.set_version(req)).await {
                Ok(Ok(_)) => Some(*id),
                Ok(Err(e)) => {
                    tracing::warn!(chunk_id, server = id, error = %e, "version bump refused");
                    None
                }
                Err(_) => None,
            }
        }))
        .await;
        let bumped: Vec<ServerId> = bumped.into_iter().flatten().collect();
        if bumped.len() < min.max(1) {
            return Err(MasterError::Unavailable(format!(
                "only {} replica(s) of chunk {chunk_id} could move to version {next}; retry",
                bumped.len()
            )));
        }
        self.meta
            .propose(
                None,
                MetaCommand::SetChunkVersion {
                    chunk_id,
                    version: next,
                },
            )
            .await?;
        {
            let mut cluster = self.cluster();
            cluster.leases.remove(&chunk_id);
            for s in &bumped {
                cluster.add_replica(chunk_id, *s, next);
            }
        }
        self.drop_replicas_below(chunk_id, next);
        Ok(Bump::Moved {
            version: next,
            servers: bumped,
        })
    }

    /// Starts a chunk that holds no acknowledged byte over under a new version, so that any
    /// replica the master has not heard of yet is stale. Returns the new version.
    pub(crate) async fn start_over(
        &self,
        chunk_id: ChunkId,
        version: u64,
    ) -> Result<u64, MasterError> {
        let next = version + 1;
        self.meta
            .propose(
                None,
                MetaCommand::SetChunkVersion {
                    chunk_id,
                    version: next,
                },
            )
            .await?;
        self.drop_replicas_below(chunk_id, next);
        Ok(next)
    }

    /// Forgets and deletes replicas below `version`: once the version moves on they are
    /// stale.
    pub(crate) fn drop_replicas_below(&self, chunk_id: ChunkId, version: u64) {
        let mut cluster = self.cluster();
        let stale: Vec<_> = cluster
            .replicas(chunk_id)
            .iter()
            .filter(|r| r.version < version)
            .copied()
            .collect();
        for r in stale {
            cluster.remove_replica(chunk_id, r.server);
            cluster.send_delete(r.server, chunk_id, r.version);
        }
    }
}
