//! The Cairn client library: namespace calls to the master, and data moved straight to and
//! from chunk servers (chain writes, verified reads with replica failover).
//!
//! ```no_run
//! # async fn demo() -> cairn_client::Result<()> {
//! let client = cairn_client::Client::connect(cairn_client::ClientConfig::new("127.0.0.1:5011")).await?;
//! client.mkdir("/logs", true).await?;
//! client.write_all("/logs/a.txt", bytes::Bytes::from_static(b"hello"), false).await?;
//! let data = client.read_all("/logs/a.txt").await?;
//! assert_eq!(&data[..], b"hello");
//! # Ok(()) }
//! ```
//!
//! Every call is bounded in time: the master is retried while unavailable until the
//! configured deadline, then the call fails with `Timeout`.

mod error;
#[macro_use]
mod master;
mod admin;
mod cache;
mod ops;
mod posix;
mod posix_io;
mod prepared;
mod read;
mod session;
mod stat_batch;
mod transfer;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::pb::chunk_service_client::ChunkServiceClient;
use cairn_proto::{CairnPath, ErrorKind, pb};
use tonic::transport::Channel;

pub use admin::{ChunkReplicas, ReplicaCheck};
pub use cairn_proto::ErrorKind as Kind;
pub use error::{Error, Result};
pub use posix::{
    DirPage, NewNode, Node, Posix, RenameFlags, SetAttr, SpecialKind, StatFs, TimeSet, XattrFlag,
};
pub use posix_io::{Layout, LockHolder};
pub use read::FileReader;
pub use session::{ExclusiveFile, LockKind, LockOptions};
pub use write::{FileWriter, Progress};

use master::MasterConn;

/// How a client reaches and waits for the cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The master's address, `host:port`.
    pub master_addr: String,
    /// Longest a call waits for an unavailable master, retries included.
    pub deadline: Duration,
    /// Longest one attempt at a master call may take.
    pub attempt_timeout: Duration,
    /// Size of the mutations a streaming writer sends (it buffers one and sends one).
    pub write_segment: usize,
    /// Chunks written concurrently by `put_file` and `write_all`.
    pub write_parallelism: usize,
}

impl ClientConfig {
    pub fn new(master_addr: impl Into<String>) -> ClientConfig {
        ClientConfig {
            master_addr: master_addr.into(),
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            write_segment: 8 << 20,
            write_parallelism: 2,
        }
    }
}

/// Kind of a namespace entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Directory,
    Symlink,
}

/// Attributes of a file or directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Attr {
    pub inode: u64,
    pub file_type: FileType,
    /// Bytes of a file; entries of a directory.
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub nlink: u32,
    pub goal: u32,
    pub chunk_count: u64,
}

impl Attr {
    pub(crate) fn from_pb(a: Option<pb::Attr>) -> Result<Attr> {
        let a =
            a.ok_or_else(|| Error::new(ErrorKind::Internal, "the master sent no attributes"))?;
        let file_type = match pb::FileType::try_from(a.file_type) {
            Ok(pb::FileType::File) => FileType::File,
            Ok(pb::FileType::Directory) => FileType::Directory,
            Ok(pb::FileType::Symlink) => FileType::Symlink,
            _ => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "unknown file type from the master",
                ));
            }
        };
        Ok(Attr {
            inode: a.inode,
            file_type,
            size: a.size,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            atime_ns: a.atime_ns,
            mtime_ns: a.mtime_ns,
            ctime_ns: a.ctime_ns,
            nlink: a.nlink,
            goal: a.goal,
            chunk_count: a.chunk_count,
        })
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }
}

/// One directory entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DirEntry {
    pub name: String,
    pub attr: Attr,
}

/// Where one chunk of a file lives.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChunkInfo {
    pub index: u64,
    /// 0 for a hole.
    pub chunk_id: u64,
    pub version: u64,
    /// Bytes of the file inside this chunk.
    pub length: u64,
    pub replicas: Vec<String>,
}

pub(crate) struct Inner {
    pub master: MasterConn,
    config: ClientConfig,
    chunk_clients: Mutex<HashMap<String, ChunkServiceClient<Channel>>>,
    /// The client's session with the master, once one is open (0: none).
    session: std::sync::atomic::AtomicU64,
    /// Serializes opening the session.
    session_open: tokio::sync::Mutex<()>,
    /// Chunk locations of files read before, for reads while the master is unreachable.
    locations: cache::LocationCache,
    /// Leases for new files' first chunks, and chunks written under them (`prepared.rs`).
    pub(crate) prepared: prepared::PreparedLeases,
    /// The cluster's chunk size, fixed when it was formatted (0: not known yet).
    chunk_size: std::sync::atomic::AtomicU64,
    /// Stats waiting to be sent together (`stat_batch.rs`).
    stats: stat_batch::StatBatcher,
}

impl Inner {
    /// The open session's id, or 0.
    pub(crate) fn session_id(&self) -> u64 {
        self.session.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers the cluster's chunk size (fixed at format time) from any answer that
    /// carries it, sparing later writes a `GetChunks` to learn it.
    pub(crate) fn learn_chunk_size(&self, chunk_size: u64) {
        if chunk_size != 0 {
            self.chunk_size
                .store(chunk_size, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(crate) fn chunk_client(
        &self,
        addr: &str,
    ) -> Result<ChunkServiceClient<Channel>, tonic::Status> {
        let mut clients = self.chunk_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let ch = cairn_common::grpc::lazy_channel(addr, Duration::from_secs(2))
            .map_err(|e| ErrorKind::Unavailable.status(format!("chunk server {addr}: {e}")))?;
        let c = ChunkServiceClient::new(ch)
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Attributes, chunk size and locations of chunks `[first, first+count)` (count 0: all).
    pub(crate) async fn chunk_locations(
        &self,
        inode: u64,
        first: u64,
        count: u64,
    ) -> Result<(Attr, u64, Vec<pb::ChunkLocation>)> {
        let r = self
            .master
            .call(
                "get chunks",
                rpc!(
                    get_chunks,
                    pb::GetChunksRequest {
                        path: String::new(),
                        inode,
                        first_index: first,
                        count
                    }
                ),
            )
            .await?;
        Ok((Attr::from_pb(r.attr)?, r.chunk_size, r.chunks))
    }

    pub(crate) async fn report_replica(
        &self,
        chunk_id: u64,
        version: u64,
        server_id: u64,
        kind: ErrorKind,
        detail: &str,
    ) {
        let kind = match kind {
            ErrorKind::Corrupt => pb::FailureKind::Corrupt,
            _ => pb::FailureKind::Stale,
        } as i32;
        let req = pb::ReportFailureRequest {
            chunk_id,
            version,
            server_id,
            kind,
            detail: detail.to_string(),
        };
        if let Err(e) = self
            .master
            .call("report failure", rpc!(report_failure, req.clone()))
            .await
        {
            tracing::warn!(chunk_id, error = %e, "could not report a failed replica");
        }
    }
}

/// A connection to a Cairn cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) fn path(p: &str) -> Result<CairnPath> {
    CairnPath::parse_lenient(p).map_err(|e| Error::invalid_path(p, e))
}

impl Client {
    /// Connects lazily: nothing is sent until the first call.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let master = MasterConn::new(&config.master_addr, config.deadline, config.attempt_timeout)?;
        Ok(Client {
            inner: Arc::new(Inner {
                master,
                config,
                chunk_clients: Mutex::new(HashMap::new()),
                session: std::sync::atomic::AtomicU64::new(0),
                session_open: tokio::sync::Mutex::new(()),
                locations: Default::default(),
                prepared: Default::default(),
                stats: Default::default(),
                chunk_size: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Creates a directory; with `parents`, missing parents too, and an existing directory
    /// is not an error.
    pub async fn mkdir(&self, p: &str, parents: bool) -> Result<Attr> {
        let path = path(p)?.to_string();
        let req = self.inner.master.request_id();
        let r = self
            .inner
            .master
            .call(
                "mkdir",
                rpc!(
                    mkdir,
                    pb::MkdirRequest {
                        req: Some(req),
                        path: path.clone(),
                        parents,
                        mode: 0
                    }
                ),
            )
            .await?;
        Attr::from_pb(r.attr)
    }

    /// Creates an empty file; with `overwrite`, an existing file is emptied instead of an
    /// `AlreadyExists` error.
    pub async fn create(&self, p: &str, overwrite: bool) -> Result<Attr> {
        self.create_as(p, overwrite, false).await
    }

    /// [`Client::create`]; with `prepare_write`, keeps the lease the master answers for the
    /// new file's first chunk (`prepared.rs`): only for callers that can write their data
    /// again if the commit is `Stale`.
    pub(crate) async fn create_as(
        &self,
        p: &str,
        overwrite: bool,
        prepare_write: bool,
    ) -> Result<Attr> {
        let path = path(p)?.to_string();
        let req = self.inner.master.request_id();
        let r = self
            .inner
            .master
            .call(
                "create",
                rpc!(
                    create,
                    pb::CreateRequest {
                        req: Some(req),
                        path: path.clone(),
                        overwrite,
                        mode: 0,
                        goal: 0,
                        session_id: self.inner.session_id(),
                        prepare_write
                    }
                ),
            )
            .await?;
        let attr = Attr::from_pb(r.attr)?;
        if let Some(first) = r.first_write {
            self.inner.learn_chunk_size(first.chunk_size);
            self.inner.prepared.offer(attr.inode, first);
        }
        Ok(attr)
    }

    /// The attributes of `p`. Concurrent stats on one client are sent together
    /// (`stat_batch.rs`): each is still answered by the master after it was asked.
    pub async fn stat(&self, p: &str) -> Result<Attr> {
        let path = path(p)?.to_string();
        stat_batch::stat(&self.inner, path).await
    }

    /// The attributes of every path, in order, each its own result (a missing path is a
    /// `NotFound` in its place). Up to `MAX_STAT_MANY` paths go in one round trip.
    pub async fn stat_many(&self, paths: &[&str]) -> Result<Vec<Result<Attr>>> {
        let mut out = Vec::with_capacity(paths.len());
        for group in paths.chunks(cairn_proto::MAX_STAT_MANY) {
            let mut valid = Vec::with_capacity(group.len());
            let mut parsed = Vec::with_capacity(group.len());
            for p in group {
                let r = path(p).map(|c| c.to_string());
                if let Ok(c) = &r {
                    valid.push(c.clone());
                }
                parsed.push(r);
            }
            let mut answers = if valid.is_empty() {
                Vec::new()
            } else {
                stat_batch::stat_many_call(&self.inner, valid).await?
            }
            .into_iter();
            for r in parsed {
                out.push(match r {
                    Ok(_) => answers.next().unwrap_or_else(|| {
                        Err(Error::new(ErrorKind::Internal, "a stat answer is missing"))
                    }),
                    Err(e) => Err(e),
                });
            }
        }
        Ok(out)
    }

    /// Every entry of a directory, sorted by name.
    pub async fn list(&self, p: &str) -> Result<Vec<DirEntry>> {
        let path = path(p)?.to_string();
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let start_after = after.clone();
            let r = self
                .inner
                .master
                .call(
                    "list",
                    rpc!(
                        list,
                        pb::ListRequest {
                            path: path.clone(),
                            start_after: start_after.clone(),
                            limit: 5000
                        }
                    ),
                )
                .await?;
            for e in r.entries {
                after = e.name.clone();
                out.push(DirEntry {
                    name: e.name,
                    attr: Attr::from_pb(e.attr)?,
                });
            }
            if !r.truncated {
                return Ok(out);
            }
        }
    }

    /// Renames atomically, replacing an existing file target (POSIX `rename`).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (path(from)?.to_string(), path(to)?.to_string());
        let req = self.inner.master.request_id();
        self.inner
            .master
            .call(
                "rename",
                rpc!(
                    rename,
                    pb::RenameRequest {
                        req: Some(req),
                        from: from.clone(),
                        to: to.clone(),
                        no_replace: false,
                        session_id: self.inner.session_id()
                    }
                ),
            )
            .await?;
        Ok(())
    }

    /// Deletes a file or an empty directory; with `recursive`, a whole tree.
    pub async fn delete(&self, p: &str, recursive: bool) -> Result<()> {
        let path = path(p)?.to_string();
        let req = self.inner.master.request_id();
        self.inner
            .master
            .call(
                "delete",
                rpc!(
                    delete,
                    pb::DeleteRequest {
                        req: Some(req),
                        path: path.clone(),
                        recursive,
                        session_id: self.inner.session_id()
                    }
                ),
            )
            .await?;
        Ok(())
    }

    /// A reader over `[offset, offset+len)` of a file (clipped to its length).
    pub async fn reader_range(&self, p: &str, offset: u64, len: u64) -> Result<FileReader> {
        let path = path(p)?.to_string();
        let r = self.inner.locate_file(&path).await?;
        let attr = Attr::from_pb(r.attr)?;
        if attr.is_dir() {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{p}: is a directory"),
            ));
        }
        Ok(FileReader::start(
            self.inner.clone(),
            attr,
            r.chunk_size,
            r.chunks,
            None,
            offset,
            len,
        ))
    }

    /// A reader over the whole file.
    pub async fn reader(&self, p: &str) -> Result<FileReader> {
        self.reader_range(p, 0, u64::MAX).await
    }

    /// Reads a byte range into memory.
    pub async fn read(&self, p: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.reader_range(p, offset, len).await?.read_to_end().await
    }

    /// Reads a whole file into memory (use [`Client::reader`] for large files).
    pub async fn read_all(&self, p: &str) -> Result<Bytes> {
        self.reader(p).await?.read_to_end().await
    }

    /// Where each chunk of a file lives.
    pub async fn chunks(&self, p: &str) -> Result<(Attr, Vec<ChunkInfo>)> {
        let path = path(p)?.to_string();
        let r = self.inner.locate_file(&path).await?;
        let attr = Attr::from_pb(r.attr)?;
        let cs = r.chunk_size.max(1);
        let chunks = r
            .chunks
            .into_iter()
            .map(|c| ChunkInfo {
                index: c.index,
                chunk_id: c.chunk_id,
                version: c.version,
                length: attr.size.saturating_sub(c.index * cs).min(cs),
                replicas: c.replicas.into_iter().map(|r| r.addr).collect(),
            })
            .collect();
        Ok((attr, chunks))
    }

    /// The cluster's state as the master sees it.
    pub async fn status(&self) -> Result<pb::ClusterStatusResponse> {
        self.inner
            .master
            .call("status", rpc!(cluster_status, pb::ClusterStatusRequest {}))
            .await
    }
}
