//! File operations beyond whole-file put/get: writing at any offset, appending, and
//! truncating. Each is acknowledged only when the bytes are durable on every replica of
//! every chunk touched and the master has recorded the new length.

use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::{ErrorKind, pb};

use crate::error::{Error, Result};
use crate::write::{Mutation, Payload};
use crate::{Attr, Client, Inner};

impl Inner {
    /// Inode and chunk size of a file, for data operations.
    pub(crate) async fn open_file(&self, path: &str) -> Result<(Attr, u64)> {
        let r = self
            .master
            .call(
                "get chunks",
                rpc!(
                    get_chunks,
                    pb::GetChunksRequest {
                        path: path.to_string(),
                        inode: 0,
                        first_index: 0,
                        count: 1
                    }
                ),
            )
            .await?;
        let attr = Attr::from_pb(r.attr)?;
        if r.chunk_size == 0 {
            return Err(Error::new(
                ErrorKind::Internal,
                "the master reported a chunk size of 0",
            ));
        }
        Ok((attr, r.chunk_size))
    }

    /// Whether chunk `index` of `inode` holds data (is not a hole).
    async fn chunk_exists(&self, inode: u64, index: u64) -> Result<bool> {
        let (_, _, chunks) = self.chunk_locations(inode, index, 1).await?;
        Ok(chunks.first().is_some_and(|c| c.chunk_id != 0))
    }

    /// Cuts the replicas of the chunk holding file offset `at` back to `at`, so bytes past
    /// it read as zeros if the file later grows over them.
    async fn cut_chunk_at(&self, inode: u64, chunk_size: u64, at: u64) -> Result<()> {
        let (index, within) = (at / chunk_size, at % chunk_size);
        if within == 0 || !self.chunk_exists(inode, index).await? {
            return Ok(());
        }
        self.mutate_chunk(inode, index, &Mutation::Truncate { length: within })
            .await
    }

    pub(crate) async fn truncate_inode(
        &self,
        inode: u64,
        chunk_size: u64,
        old: u64,
        size: u64,
    ) -> Result<Attr> {
        // Shrinking: the chunk the new end falls in loses its tail. Growing: the old last
        // chunk loses anything past the old end (bytes of writes never acknowledged), so the
        // grown range reads as zeros.
        self.cut_chunk_at(inode, chunk_size, size.min(old)).await?;
        let req = self.master.request_id();
        let session_id = self.session_id();
        let r = self
            .master
            .call(
                "truncate",
                rpc!(
                    truncate,
                    pb::TruncateRequest {
                        req: Some(req),
                        inode,
                        size,
                        session_id
                    }
                ),
            )
            .await?;
        Attr::from_pb(r.attr)
    }
}

impl Client {
    /// Writes `data` at `offset` of an existing file (creating it if missing), extending it
    /// if needed; a gap past the old end reads as zeros.
    pub async fn write_at(&self, path: &str, offset: u64, data: Bytes) -> Result<Attr> {
        let path = crate::path(path)?.to_string();
        let (attr, chunk_size) = match self.inner.open_file(&path).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.create(&path, false).await?;
                self.inner.open_file(&path).await?
            }
            Err(e) => return Err(e),
        };
        self.write_inode(attr.inode, chunk_size, offset, data).await
    }

    async fn write_inode(
        &self,
        inode: u64,
        chunk_size: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<Attr> {
        let end = offset.checked_add(data.len() as u64).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "write past the largest file size",
            )
        })?;
        let parallel = self.inner.config.write_parallelism;
        Arc::clone(&self.inner)
            .write_range(inode, chunk_size, offset, Payload::Memory(data), parallel)
            .await?;
        self.inner.commit_write(inode, end).await
    }

    /// Appends `data` at the end of a file (creating it if missing). Concurrent appends
    /// from any number of clients never overwrite each other: the master hands each one
    /// its own range. Returns the offset the data landed at.
    pub async fn append(&self, path: &str, data: Bytes) -> Result<(u64, Attr)> {
        self.append_payload(path, Payload::Memory(data)).await
    }

    /// Appends a local file's bytes as one record (see [`Client::append`]).
    pub async fn append_file(&self, path: &str, file: std::fs::File) -> Result<(u64, Attr)> {
        let len = file
            .metadata()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("reading the local file: {e}")))?
            .len();
        self.append_payload(
            path,
            Payload::File {
                file: Arc::new(file),
                offset: 0,
                len,
            },
        )
        .await
    }

    async fn append_payload(&self, path: &str, data: Payload) -> Result<(u64, Attr)> {
        let path = crate::path(path)?.to_string();
        let (attr, chunk_size) = match self.inner.open_file(&path).await {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Err(e) = self.create(&path, false).await
                    && e.kind() != ErrorKind::AlreadyExists
                {
                    return Err(e);
                }
                self.inner.open_file(&path).await?
            }
            Err(e) => return Err(e),
        };
        let req = self.inner.master.request_id();
        let (inode, length, session_id) = (attr.inode, data.len(), self.inner.session_id());
        let r = self
            .inner
            .master
            .call(
                "reserve append",
                rpc!(
                    reserve_append,
                    pb::ReserveAppendRequest {
                        req: Some(req),
                        inode,
                        length,
                        session_id
                    }
                ),
            )
            .await?;
        let end = r.offset + length;
        let parallel = self.inner.config.write_parallelism;
        Arc::clone(&self.inner)
            .write_range(inode, chunk_size, r.offset, data, parallel)
            .await?;
        Ok((r.offset, self.inner.commit_write(inode, end).await?))
    }

    /// Sets a file's length: shrinking drops the tail, growing adds zeros.
    pub async fn truncate(&self, path: &str, size: u64) -> Result<Attr> {
        let path = crate::path(path)?.to_string();
        let (attr, chunk_size) = self.inner.open_file(&path).await?;
        self.inner
            .truncate_inode(attr.inode, chunk_size, attr.size, size)
            .await
    }
}
