//! Calls to the master with retries: an `Unavailable` answer (or no answer within the
//! per-attempt timeout) is retried with exponential backoff until the deadline, then the
//! call fails with `Timeout`. A caller never waits longer than the deadline.
//!
//! Mutating calls carry one `(client_id, seq)` across all their attempts, so a retry after
//! a lost reply is applied once by the master.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_proto::pb::file_system_client::FileSystemClient;
use cairn_proto::pb::master_client::MasterClient;
use cairn_proto::{ErrorKind, pb};
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// Builds the closure `MasterConn::call` retries: the request is built once and cloned
/// into each attempt, which owns its client handle.
macro_rules! rpc {
    ($method:ident, $req:expr) => {{
        let req = $req;
        move |mut c: cairn_proto::pb::master_client::MasterClient<tonic::transport::Channel>| {
            let req = req.clone();
            async move { c.$method(req).await }
        }
    }};
}

/// First pause between attempts; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connection to the master.
pub(crate) struct MasterConn {
    client: MasterClient<Channel>,
    /// The master's POSIX service (`posix.rs`), on the same connection.
    pub fs: FileSystemClient<Channel>,
    addr: String,
    /// Total time a call may take, retries included.
    pub deadline: Duration,
    /// Longest wait for one attempt.
    pub attempt_timeout: Duration,
    client_id: u64,
    seq: AtomicU64,
}

impl MasterConn {
    pub fn new(addr: &str, deadline: Duration, attempt_timeout: Duration) -> Result<MasterConn> {
        let channel =
            cairn_common::grpc::lazy_channel(addr, Duration::from_secs(2)).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("master address {addr}: {e}"),
                )
            })?;
        let fs = FileSystemClient::new(channel.clone())
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        let client = MasterClient::new(channel)
            .max_decoding_message_size(cairn_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(cairn_proto::MAX_MESSAGE_BYTES);
        let client_id = loop {
            let id: u64 = rand::random();
            if id != 0 {
                break id;
            }
        };
        Ok(MasterConn {
            client,
            fs,
            addr: addr.to_string(),
            deadline,
            attempt_timeout,
            client_id,
            seq: AtomicU64::new(1),
        })
    }

    /// A fresh request id for one mutating call (the same id for all its retries).
    pub fn request_id(&self) -> pb::RequestId {
        pb::RequestId {
            client_id: self.client_id,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Runs `f` against the master, retrying while it is unavailable.
    pub async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: Fn(MasterClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_on(what, &self.client, f).await
    }

    /// Like [`MasterConn::call`], for any service client on the master's connection.
    pub async fn call_on<C, T, F, Fut>(&self, what: &str, client: &C, f: F) -> Result<T>
    where
        C: Clone,
        F: Fn(C) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let remaining = self.deadline.saturating_sub(start.elapsed());
            let attempt = tokio::time::timeout(
                self.attempt_timeout
                    .min(remaining.max(Duration::from_millis(1))),
                f(client.clone()),
            )
            .await;
            let err = match attempt {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => Error::from_status(&s),
                Err(_) => Error::new(ErrorKind::Unavailable, "no answer in time"),
            };
            if !err.kind().is_retryable() {
                return Err(err);
            }
            if start.elapsed() + backoff >= self.deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what}: the master at {} did not answer within {:?} (last error: {})",
                        self.addr, self.deadline, err
                    ),
                ));
            }
            tracing::debug!(what, error = %err, ?backoff, "master unavailable; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
