//! Calls for checking tools (`cairn fsck`): a file's whole chunk map with server ids, and a
//! chunk server's own account of one replica, with a checksum of its verified bytes.

use std::time::Duration;

use cairn_proto::{ErrorKind, pb};

use crate::error::{Error, Result};
use crate::{Attr, Client, path};

/// A chunk of a file and where the master says it lives.
#[derive(Clone, Debug)]
pub struct ChunkReplicas {
    /// Position of the chunk in the file.
    pub index: u64,
    /// 0 for a hole.
    pub chunk_id: u64,
    /// The chunk's current version.
    pub version: u64,
    /// Bytes of the file inside this chunk.
    pub length: u64,
    /// Live replicas at the current version: `(server id, address)`.
    pub replicas: Vec<(u64, String)>,
}

/// One replica as its chunk server describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaCheck {
    pub version: u64,
    pub length: u64,
    /// Last mutation applied at `version`.
    pub serial: u64,
    /// CRC32C of the replica's bytes, every block verified on the way (when asked for).
    pub checksum: u32,
}

impl Client {
    /// Every chunk of the file at `p`, with its live replicas, as the master sees it.
    pub async fn chunk_map(&self, p: &str) -> Result<(Attr, Vec<ChunkReplicas>)> {
        let path = path(p)?.to_string();
        let mut out: Vec<ChunkReplicas> = Vec::new();
        let mut first = 0u64;
        loop {
            let req = pb::GetChunksRequest {
                path: path.clone(),
                inode: 0,
                first_index: first,
                count: 0,
            };
            let r = self
                .inner
                .master
                .call("get chunks", rpc!(get_chunks, req))
                .await?;
            let attr = Attr::from_pb(r.attr)?;
            if attr.is_dir() {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{p}: is a directory"),
                ));
            }
            let cs = r.chunk_size.max(1);
            let got = r.chunks.len();
            for c in r.chunks {
                first = c.index + 1;
                out.push(ChunkReplicas {
                    index: c.index,
                    chunk_id: c.chunk_id,
                    version: c.version,
                    length: attr.size.saturating_sub(c.index * cs).min(cs),
                    replicas: c
                        .replicas
                        .into_iter()
                        .map(|s| (s.server_id, s.addr))
                        .collect(),
                });
            }
            if got == 0 || first >= attr.chunk_count {
                return Ok((attr, out));
            }
        }
    }

    /// Asks the chunk server at `addr` about its replica of `chunk_id`; with `verify`, it
    /// reads the whole replica (verifying every block) and returns a CRC32C of its bytes. A
    /// replica that fails verification is removed by its server, which answers `Corrupt`.
    /// One attempt, bounded by `timeout`; no answer in time is `Timeout`.
    pub async fn replica_state(
        &self,
        addr: &str,
        chunk_id: u64,
        verify: bool,
        timeout: Duration,
    ) -> Result<ReplicaCheck> {
        let mut client = self.inner.chunk_client(addr)?;
        let req = pb::ReplicaStateRequest {
            chunk_id,
            with_checksum: verify,
        };
        match tokio::time::timeout(timeout, client.replica_state(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                Ok(ReplicaCheck {
                    version: r.version,
                    length: r.length,
                    serial: r.serial,
                    checksum: r.checksum,
                })
            }
            Ok(Err(s)) => Err(Error::from_status(&s)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("chunk server {addr} did not answer within {timeout:?}"),
            )),
        }
    }
}
