//! The chunk server's side of the classic protocol, served on the gRPC port (see
//! `cairn_common::net` for the split and `cairn_common::classic` for the framing).
//!
//! Each request becomes the cluster's own operations, made through the `cairn-client`
//! library against the master, exactly as `cairn create|write|read|delete` make them: data
//! written here is replicated and checksummed like any other, listed by `cairn ls`, and
//! files written by any client read back here.
//!
//! | request | operation | answer |
//! | --- | --- | --- |
//! | `CREATE_FILE:<name>` | create, failing if it exists | `FILE_CREATED` |
//! | `WRITE_FILE:<name>:<content>` | create or empty, then write all of `content` | `FILE_WRITTEN` |
//! | `READ_FILE:<name>` | read the whole file | `FILE_CONTENT:<content>` |
//! | `DELETE_FILE:<name>` | delete a file (not a directory) | `FILE_DELETED` |
//!
//! Invariants:
//! - A name is one path component below the classic directory: UTF-8, not empty, `.` or
//!   `..`, without `/`, `:`, NUL or other control characters, at most 255 bytes. Anything
//!   else is answered `ERROR:<reason>` before the cluster is asked.
//! - Content is bytes: whatever follows the second `:` is stored as is, and `READ_FILE`
//!   returns the stored bytes as they are.
//! - An operation's failure is answered with its kind's classic name (`FILE_NOT_FOUND`,
//!   `FILE_LOCKED_ERROR`, `COPY_ERROR`, `FILE_EXISTS_ERROR`, ...); the connection loop
//!   answers `TIMEOUT_ERROR` for a request over the classic timeout.
//! - `READ_FILE` of a file larger than the request limit is refused with `ERROR:`, so one
//!   connection never buffers more than that limit in either direction.
//! - If the classic directory is missing, `CREATE_FILE` and `WRITE_FILE` create it once
//!   and retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, ClientConfig, Kind, LockOptions};
use cairn_common::CancellationToken;
use cairn_common::classic::{Answer, ClassicHandler, quoted, serve_connection, split_verb};
use cairn_common::net::{ClassicConnections, GrpcIncoming, split_listener};
use cairn_proto::{CairnPath, ErrorKind};
use tokio::net::TcpListener;

use crate::server::ChunkServer;

/// One parsed classic request.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Create(CairnPath),
    Write(CairnPath, Bytes),
    Read(CairnPath),
    Delete(CairnPath),
}

/// Parses a request (terminator already removed); `Err` is the answer to send instead.
fn parse(dir: &CairnPath, request: Vec<u8>) -> Result<Request, Answer> {
    let (verb, rest) = split_verb(&request)?;
    let known = ["CREATE_FILE", "WRITE_FILE", "READ_FILE", "DELETE_FILE"];
    if !known.contains(&verb) {
        return Err(Answer::Malformed(match verb {
            "FIND_PRIMARY_SERVER" => "FIND_PRIMARY_SERVER goes to the master".to_string(),
            _ => format!(
                "unknown verb {} (expected CREATE_FILE, WRITE_FILE, READ_FILE or DELETE_FILE)",
                quoted(verb.as_bytes(), 32)
            ),
        }));
    }
    let Some(rest) = rest else {
        return Err(Answer::Malformed(format!(
            "{verb} needs a name: {verb}:<name>"
        )));
    };
    if verb == "WRITE_FILE" {
        let Some(sep) = rest.iter().position(|&b| b == b':') else {
            return Err(Answer::Malformed(
                "WRITE_FILE needs a name and content: WRITE_FILE:<name>:<content>".into(),
            ));
        };
        let path = name_path(dir, &rest[..sep])?;
        // The content is the tail of the request: slice it out without copying.
        let start = request.len() - (rest.len() - sep - 1);
        return Ok(Request::Write(path, Bytes::from(request).slice(start..)));
    }
    let path = name_path(dir, rest)?;
    Ok(match verb {
        "CREATE_FILE" => Request::Create(path),
        "READ_FILE" => Request::Read(path),
        _ => Request::Delete(path),
    })
}

/// Validates a classic name and places it in the classic directory.
fn name_path(dir: &CairnPath, name: &[u8]) -> Result<CairnPath, Answer> {
    let bad = |why: String| Answer::Malformed(format!("bad name {}: {why}", quoted(name, 64)));
    let text = std::str::from_utf8(name).map_err(|_| bad("not UTF-8".into()))?;
    if text.contains(':') {
        return Err(bad("a name cannot hold ':'".into()));
    }
    if text.contains('\0') {
        return Err(bad("a name cannot hold NUL".into()));
    }
    if text.chars().any(char::is_control) {
        return Err(bad("a name cannot hold control characters".into()));
    }
    dir.join(text).map_err(|e| bad(e.to_string()))
}

/// Executes classic requests through the client library.
struct ChunkClassic {
    server: Arc<ChunkServer>,
    client: Client,
    dir: CairnPath,
    max_read: u64,
    /// Lock owner ids, one per write or delete.
    next_owner: AtomicU64,
}

fn failed(e: cairn_client::Error) -> Answer {
    Answer::Failed {
        kind: e.kind(),
        detail: e.message().to_string(),
    }
}

impl ClassicHandler for ChunkClassic {
    async fn handle(&self, request: Vec<u8>) -> Answer {
        // Counted in the load this server reports, which the master's pick looks at.
        let _load = self.server.track();
        match parse(&self.dir, request) {
            Ok(r) => self.execute(r).await.unwrap_or_else(failed),
            Err(answer) => answer,
        }
    }
}

impl ChunkClassic {
    async fn execute(&self, request: Request) -> cairn_client::Result<Answer> {
        match request {
            Request::Create(path) => {
                let p = path.as_str();
                self.in_dir(|| self.client.create(p, false)).await?;
                Ok(Answer::ok("FILE_CREATED"))
            }
            Request::Write(path, content) => {
                let p = path.as_str();
                // The file must exist to be locked; an existing one is left as it is.
                match self.in_dir(|| self.client.create(p, false)).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                self.exclusively(p, || self.client.write_all(p, content.clone(), true))
                    .await?;
                Ok(Answer::ok("FILE_WRITTEN"))
            }
            Request::Read(path) => {
                let reader = self.client.reader(path.as_str()).await?;
                let size = reader.attr().size;
                if size > self.max_read {
                    return Ok(Answer::Malformed(format!(
                        "{path} is {size} bytes, over the classic limit of {} bytes; read it with `cairn get`",
                        self.max_read
                    )));
                }
                let data = reader.read_to_end().await?;
                Ok(Answer::Ok {
                    status: "FILE_CONTENT",
                    payload: Some(Vec::from(data)),
                })
            }
            Request::Delete(path) => {
                let p = path.as_str();
                if self.client.stat(p).await?.is_dir() {
                    let msg = format!("{p}: is a directory");
                    return Err(cairn_client::Error::new(Kind::IsADirectory, msg));
                }
                self.exclusively(p, || self.client.delete(p, false)).await?;
                Ok(Answer::ok("FILE_DELETED"))
            }
        }
    }

    /// Runs `op` holding an exclusive lock on `path`, as the old system's writers held the
    /// file: a file another client holds (`cairn lock`, an exclusive-writer open, another
    /// classic writer) answers `FILE_LOCKED_ERROR` at once. Each request is its own lock
    /// owner, so concurrent classic writers exclude each other too.
    async fn exclusively<T, F, Fut>(&self, path: &str, op: F) -> cairn_client::Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = cairn_client::Result<T>>,
    {
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        let opts = LockOptions {
            owner,
            ..LockOptions::exclusive()
        };
        self.client.lock(path, &opts, |_| {}).await?;
        let result = op().await;
        if let Err(e) = self.client.unlock(path, &opts).await {
            // A deleted file took its locks with it.
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path, error = %e, "could not release a classic write lock");
            }
        }
        result
    }

    /// Runs `op`; if it fails because the classic directory is missing, creates the
    /// directory and runs `op` once more.
    async fn in_dir<T, F, Fut>(&self, op: F) -> cairn_client::Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = cairn_client::Result<T>>,
    {
        match op().await {
            Err(e) if e.kind() == ErrorKind::NotFound && !self.dir.is_root() => {
                match self.client.stat(self.dir.as_str()).await {
                    Err(s) if s.kind() == ErrorKind::NotFound => {
                        tracing::info!(dir = %self.dir, "creating the missing classic directory");
                        self.client.mkdir(self.dir.as_str(), true).await?;
                        op().await
                    }
                    _ => Err(e),
                }
            }
            r => r,
        }
    }
}

/// The client classic requests go through: one for the server's lifetime, connecting to
/// the master lazily, waiting for an unavailable master as long as a classic request may
/// take.
pub(crate) fn client_config(master_addr: &str, timeout: Duration) -> ClientConfig {
    let mut c = ClientConfig::new(master_addr);
    c.deadline = timeout;
    c.attempt_timeout = timeout.min(Duration::from_secs(10));
    c
}

/// Splits `listener` into the gRPC connections tonic serves and classic ones, served here
/// through `client` until `shutdown` fires.
pub(crate) fn listen(
    listener: TcpListener,
    server: Arc<ChunkServer>,
    client: Client,
    shutdown: CancellationToken,
) -> (GrpcIncoming, ClassicConnections) {
    let config = Arc::new(server.config.classic.clone());
    let handler = Arc::new(ChunkClassic {
        dir: server.config.classic_dir.clone(),
        max_read: config.max_request_bytes as u64,
        server,
        client,
        next_owner: AtomicU64::new(1),
    });
    split_listener(listener, config.net(), move |stream| {
        let (config, handler, shutdown) = (config.clone(), handler.clone(), shutdown.clone());
        async move { serve_connection(stream, &config, shutdown, &*handler, "chunkserver").await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CairnPath {
        CairnPath::new(s).unwrap()
    }

    fn malformed(dir: &str, req: &[u8]) -> String {
        match parse(&p(dir), req.to_vec()) {
            Err(Answer::Malformed(reason)) => reason,
            other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(req)),
        }
    }

    #[test]
    fn requests_parse_into_paths_under_the_classic_dir() {
        let root = p("/");
        assert_eq!(
            parse(&root, b"CREATE_FILE:a.txt".to_vec()),
            Ok(Request::Create(p("/a.txt")))
        );
        assert_eq!(
            parse(&p("/classic/files"), b"READ_FILE:x".to_vec()),
            Ok(Request::Read(p("/classic/files/x")))
        );
        assert_eq!(
            parse(&root, b"DELETE_FILE:x".to_vec()),
            Ok(Request::Delete(p("/x")))
        );
        assert_eq!(
            parse(&root, b"WRITE_FILE:n:a:b\nc\xff".to_vec()),
            Ok(Request::Write(p("/n"), Bytes::from_static(b"a:b\nc\xff")))
        );
        assert_eq!(
            parse(&root, b"WRITE_FILE:n:".to_vec()),
            Ok(Request::Write(p("/n"), Bytes::new()))
        );
    }

    #[test]
    fn malformed_requests_say_why() {
        assert!(malformed("/", b"LIST_FILES:a").starts_with("unknown verb \"LIST_FILES\""));
        assert!(malformed("/", b"").starts_with("unknown verb"));
        assert!(malformed("/", b"FIND_PRIMARY_SERVER").contains("master"));
        assert!(malformed("/", b"READ_FILE").contains("needs a name"));
        assert!(malformed("/", b"WRITE_FILE:abc").contains("name and content"));
        assert!(malformed("/", b"READ_FILE:").contains("empty"));
        assert!(malformed("/", b"READ_FILE:..").contains("'..'"));
        assert!(malformed("/", b"READ_FILE:a/b").contains("'/'"));
        assert!(malformed("/", b"READ_FILE:a:b").contains("':'"));
        assert!(malformed("/", b"CREATE_FILE:a\0b").contains("NUL"));
        assert!(malformed("/", b"CREATE_FILE:a\rb").contains("control"));
        assert!(malformed("/", b"READ_FILE:\xff").contains("UTF-8"));
        assert!(malformed("/", b"\xffREAD").contains("UTF-8"));
        let long = format!("CREATE_FILE:{}", "x".repeat(256));
        assert!(malformed("/", long.as_bytes()).contains("over the limit of 255"));
    }
}
