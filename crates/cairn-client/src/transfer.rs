//! Whole-file transfers: `write_all` and `put_file` (which create the file with a lease for
//! its first chunk when it is small, see `prepared.rs`, and write it again if the commit
//! cannot take that chunk), and the streaming writer.
//!
//! A transfer that fails removes the file it created, so no empty or partial file is
//! left looking like its result.
//!
//! Must never: acknowledge a transfer before every byte is durable on every replica and the
//! file's length covers it.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::ErrorKind;

use crate::error::{Error, Result};
use crate::write::{FileWriter, Payload, Progress};
use crate::{Attr, Client};

/// Whether a file of `len` bytes is created with a lease for its first chunk: only small
/// ones, which are written and committed at once, so the commit that binds the chunk comes
/// long before the lease lapses, and writing again after a `Stale` commit costs little.
fn prepare_for(len: u64) -> bool {
    len > 0 && len <= 8 << 20
}

impl Client {
    /// Creates (or, with `overwrite`, empties) a file and writes `data` into it. Returns once
    /// every byte is durable on every replica.
    pub async fn write_all(&self, p: &str, data: Bytes, overwrite: bool) -> Result<Attr> {
        let attr = self
            .create_as(p, overwrite, prepare_for(data.len() as u64))
            .await?;
        let chunk_size = self.chunk_size(attr.inode).await?;
        let len = data.len() as u64;
        let written = self
            .inner
            .write_committed(attr.inode, len, || {
                self.inner.write_range(
                    attr.inode,
                    chunk_size,
                    0,
                    Payload::Memory(data.clone()),
                    self.inner.config.write_parallelism,
                )
            })
            .await;
        self.discard_on_failure(p, attr.inode, written).await
    }

    /// Passes `written` on; when it failed, first removes the file the transfer created
    /// at `p` (if `p` still names `inode`), so that a failed upload (a full cluster, say)
    /// leaves no empty or partial file that looks like its result. Nothing in it was
    /// acknowledged.
    async fn discard_on_failure(&self, p: &str, inode: u64, written: Result<Attr>) -> Result<Attr> {
        if written.is_err() {
            self.remove_if_still(p, inode).await;
        }
        written
    }

    /// Removes the file at `p` if `p` still names `inode` (a failed upload's file).
    pub(crate) async fn remove_if_still(&self, p: &str, inode: u64) {
        if self.stat(p).await.is_ok_and(|a| a.inode == inode)
            && let Err(e) = self.delete(p, false).await
        {
            tracing::warn!(path = p, error = %e, "could not remove a failed upload");
        }
    }

    /// Uploads a local file. Each chunk is sent as one mutation read straight from the file
    /// (again, if a replica fails), so memory stays small whatever the file's size.
    pub async fn put_file(&self, local: &Path, p: &str, overwrite: bool) -> Result<Attr> {
        self.put_file_with_progress(local, p, overwrite, None).await
    }

    /// [`Client::put_file`], calling `progress` with the bytes of each chunk once it is
    /// durable on every replica.
    pub async fn put_file_with_progress(
        &self,
        local: &Path,
        p: &str,
        overwrite: bool,
        progress: Option<Progress>,
    ) -> Result<Attr> {
        let file = std::fs::File::open(local)
            .map_err(|e| Error::new(ErrorKind::NotFound, format!("{}: {e}", local.display())))?;
        let len = file
            .metadata()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("{}: {e}", local.display())))?
            .len();
        let attr = self.create_as(p, overwrite, prepare_for(len)).await?;
        let chunk_size = self.chunk_size(attr.inode).await?;
        let payload = Payload::File {
            file: Arc::new(file),
            offset: 0,
            len,
        };
        let written = self
            .inner
            .write_committed(attr.inode, len, || {
                self.inner.write_range_progress(
                    attr.inode,
                    chunk_size,
                    0,
                    payload.clone(),
                    self.inner.config.write_parallelism,
                    progress.clone(),
                )
            })
            .await;
        self.discard_on_failure(p, attr.inode, written).await
    }

    /// Creates (or empties) a file and returns a streaming writer for it. If the upload
    /// fails ([`FileWriter::close`] fails, or the caller calls [`FileWriter::abort`]), the
    /// file is removed again, as `put_file` and `write_all` do.
    pub async fn writer(&self, p: &str, overwrite: bool) -> Result<FileWriter> {
        let attr = self.create(p, overwrite).await?;
        let chunk_size = self.chunk_size(attr.inode).await?;
        let mut w = FileWriter::new(
            self.inner.clone(),
            attr.inode,
            chunk_size,
            self.inner.config.write_segment,
            0,
        );
        w.created = Some(p.to_string());
        Ok(w)
    }

    async fn chunk_size(&self, inode: u64) -> Result<u64> {
        let known = self
            .inner
            .chunk_size
            .load(std::sync::atomic::Ordering::Relaxed);
        if known != 0 {
            return Ok(known);
        }
        let (_, chunk_size, _) = self.inner.chunk_locations(inode, 0, 1).await?;
        self.inner.learn_chunk_size(chunk_size);
        if chunk_size == 0 {
            return Err(Error::new(
                ErrorKind::Internal,
                "the master reported a chunk size of 0",
            ));
        }
        Ok(chunk_size)
    }
}
