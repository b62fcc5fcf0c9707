//! Sessions and locks.
//!
//! A client opens one session with the master the first time it needs one (to take a lock)
//! and keeps it alive from a background task. Locks belong to the session: they are
//! released by `unlock`, by `close_session`, or by the master when the session times out
//! (a client killed with SIGKILL never holds a lock longer than the session timeout).
//!
//! An exclusive-writer open ([`Client::open_exclusive`]) is a mandatory whole-file lock:
//! while it is held, other sessions' writes, truncates, deletes and renames of the file
//! fail with `Locked`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::{ErrorKind, pb};

use crate::error::{Error, Result};
use crate::{Attr, Client, Inner};

/// Shared (readers) or exclusive (one writer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// What to lock and how long to wait for it.
#[derive(Clone, Debug)]
pub struct LockOptions {
    pub kind: LockKind,
    /// First byte of the range.
    pub start: u64,
    /// End of the range (exclusive); 0 means the whole file from `start` on.
    pub end: u64,
    /// Distinguishes owners inside one session (e.g. processes of a mount).
    pub owner: u64,
    /// Wait in the master's FIFO queue up to this long; `None` fails at once with `Locked`.
    pub wait: Option<Duration>,
    /// Mandatory exclusive-writer lock (whole file; other sessions' writes get `Locked`).
    pub mandatory: bool,
}

impl LockOptions {
    /// An exclusive lock on the whole file, failing at once if taken.
    pub fn exclusive() -> LockOptions {
        LockOptions {
            kind: LockKind::Exclusive,
            start: 0,
            end: 0,
            owner: 0,
            wait: None,
            mandatory: false,
        }
    }

    /// A shared lock on the whole file, failing at once if an exclusive one is held.
    pub fn shared() -> LockOptions {
        LockOptions {
            kind: LockKind::Shared,
            ..LockOptions::exclusive()
        }
    }

    pub fn wait(mut self, d: Option<Duration>) -> LockOptions {
        self.wait = d;
        self
    }

    pub fn range(mut self, start: u64, end: u64) -> LockOptions {
        self.start = start;
        self.end = end;
        self
    }
}

impl Inner {
    /// The session, opened on first use, with a task keeping it alive while the client
    /// lives.
    pub(crate) async fn ensure_session(self: &Arc<Self>) -> Result<u64> {
        let _one = self.session_open.lock().await;
        let id = self.session_id();
        if id != 0 {
            return Ok(id);
        }
        let owner = format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
            std::process::id()
        );
        let req = self.master.request_id();
        let r = self
            .master
            .call(
                "open session",
                rpc!(
                    open_session,
                    pb::OpenSessionRequest {
                        req: Some(req),
                        owner: owner.clone()
                    }
                ),
            )
            .await?;
        self.session.store(r.session_id, Ordering::Relaxed);
        let period = Duration::from_millis((r.timeout_ms / 3).max(100));
        let weak = Arc::downgrade(self);
        let session_id = r.session_id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.session_id() != session_id {
                    return;
                }
                match inner
                    .master
                    .call(
                        "keep alive",
                        rpc!(keep_alive, pb::KeepAliveRequest { session_id }),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        tracing::error!(session_id, "session expired; its locks are gone");
                        let _ = inner.session.compare_exchange(
                            session_id,
                            0,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        return;
                    }
                    Err(e) => tracing::warn!(session_id, error = %e, "keep-alive failed; retrying"),
                }
            }
        });
        Ok(session_id)
    }
}

impl Client {
    /// The client's session id, opening a session if there is none.
    pub async fn session(&self) -> Result<u64> {
        self.inner.ensure_session().await
    }

    /// Closes the session, releasing every lock it holds.
    pub async fn close_session(&self) -> Result<()> {
        let session_id = self.inner.session.swap(0, Ordering::Relaxed);
        if session_id == 0 {
            return Ok(());
        }
        self.inner
            .master
            .call(
                "close session",
                rpc!(close_session, pb::CloseSessionRequest { session_id }),
            )
            .await?;
        Ok(())
    }

    /// Takes a lock on a file. With `opts.wait`, waits in the master's fair queue and calls
    /// `on_queued(position)` whenever the position changes; then fails with `Timeout` if the
    /// wait ends first. Without it, fails at once with `Locked`.
    pub async fn lock(
        &self,
        path: &str,
        opts: &LockOptions,
        mut on_queued: impl FnMut(u32),
    ) -> Result<()> {
        let path = crate::path(path)?.to_string();
        let session_id = self.session().await?;
        let req = pb::LockRequest {
            req: Some(self.inner.master.request_id()),
            session_id,
            path,
            inode: 0,
            owner: opts.owner,
            kind: match opts.kind {
                LockKind::Shared => pb::LockKind::Shared,
                LockKind::Exclusive => pb::LockKind::Exclusive,
            } as i32,
            start: opts.start,
            end: opts.end,
            mandatory: opts.mandatory,
            wait_ms: opts.wait.map_or(0, |d| d.as_millis().max(1) as u64),
        };
        let mut events = self.inner.master.call("lock", rpc!(lock, req)).await?;
        // Waiting in the queue may take up to `wait`; past that plus the usual deadline the
        // master is not answering and the caller must not hang.
        let limit = opts.wait.unwrap_or_default() + self.inner.master.deadline;
        let wait = async {
            loop {
                match events.message().await {
                    Ok(Some(ev)) if ev.granted => return Ok(()),
                    Ok(Some(ev)) => on_queued(ev.position),
                    Ok(None) => {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "the master ended the lock stream",
                        ));
                    }
                    Err(s) => return Err(Error::from(s)),
                }
            }
        };
        tokio::time::timeout(limit, wait).await.map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!("no answer to the lock request within {limit:?}"),
            )
        })?
    }

    /// Releases this session's locks on `[start, end)` of a file (end 0: to the end).
    pub async fn unlock(&self, path: &str, opts: &LockOptions) -> Result<()> {
        let path = crate::path(path)?.to_string();
        let session_id = self.inner.session_id();
        if session_id == 0 {
            return Ok(());
        }
        let req = pb::UnlockRequest {
            session_id,
            path,
            inode: 0,
            owner: opts.owner,
            start: opts.start,
            end: opts.end,
        };
        self.inner.master.call("unlock", rpc!(unlock, req)).await?;
        Ok(())
    }

    /// Opens a file for exclusive writing (creating it if missing): until
    /// [`ExclusiveFile::close`], writes, truncates, renames and deletes of the file by other
    /// sessions fail with `Locked`. A second exclusive open fails with `Locked` at once, or
    /// waits up to `wait` in the queue.
    pub async fn open_exclusive(
        &self,
        path: &str,
        wait: Option<Duration>,
        on_queued: impl FnMut(u32),
    ) -> Result<ExclusiveFile> {
        let path = crate::path(path)?.to_string();
        if let Err(e) = self.stat(&path).await {
            if e.kind() != ErrorKind::NotFound {
                return Err(e);
            }
            if let Err(e) = self.create(&path, false).await
                && e.kind() != ErrorKind::AlreadyExists
            {
                return Err(e);
            }
        }
        let opts = LockOptions {
            mandatory: true,
            ..LockOptions::exclusive().wait(wait)
        };
        self.lock(&path, &opts, on_queued).await?;
        Ok(ExclusiveFile {
            client: self.clone(),
            path,
            opts,
        })
    }
}

/// A file held open for exclusive writing.
pub struct ExclusiveFile {
    client: Client,
    path: String,
    opts: LockOptions,
}

impl ExclusiveFile {
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Replaces the whole content.
    pub async fn write_all(&self, data: Bytes) -> Result<Attr> {
        let attr = self.client.truncate(&self.path, 0).await?;
        if data.is_empty() {
            return Ok(attr);
        }
        self.client.write_at(&self.path, 0, data).await
    }

    pub async fn write_at(&self, offset: u64, data: Bytes) -> Result<Attr> {
        self.client.write_at(&self.path, offset, data).await
    }

    pub async fn append(&self, data: Bytes) -> Result<(u64, Attr)> {
        self.client.append(&self.path, data).await
    }

    /// Releases the exclusive-writer lock.
    pub async fn close(self) -> Result<()> {
        self.client.unlock(&self.path, &self.opts).await
    }
}
