//! The classic protocol's transport: how requests are cut from a byte stream, how answers
//! are written back, and the per-connection loop shared by the master and chunk servers.
//! What the verbs mean is up to each role's handler.
//!
//! # Framing
//!
//! The original clients send one request with no terminator and wait (`send` once, then
//! `recv(1024)`); people at `nc` and line-based scripts end requests with a newline. A
//! *burst* is the run of bytes a client sends before it falls quiet for the quiet period
//! ([`ClassicConfig::quiet`], plus twice the connection's round-trip time where the kernel
//! reports it, so a pause of the network is not mistaken for a client that waits); the end
//! of the stream (a half-close) also ends a burst. Requests are cut as follows:
//!
//! 1. Every request except `WRITE_FILE` ends at the first `\n` (a `\r` before it is dropped
//!    too): it is answered at once, and its answer ends with `\n`.
//! 2. Bytes that end without a newline are one request when the burst ends; its answer has
//!    no terminator, so `recv(1024) == b"FILE_CREATED"` holds for the original clients.
//! 3. A `WRITE_FILE` request always runs to the end of its burst, because its content may
//!    hold newlines. If the burst ends with `\n` (or `\r\n`), that one line end is the
//!    terminator: it is not stored and the answer ends with `\n`; otherwise the whole burst
//!    is the request and the answer is bare. So content that must end with a newline is
//!    sent with one more (`WRITE_FILE:a:line\n\n` stores `line\n`), and nothing should follow
//!    a `WRITE_FILE` in the same burst.
//! 4. A request longer than [`ClassicConfig::max_request_bytes`] (terminator excluded) is
//!    read to its end as above and dropped unbuffered; it is answered with `ERROR:<reason>`.
//!
//! Which rule applies is known from a request's first 11 bytes (`WRITE_FILE:` or not); the
//! rules decide from the bytes, the quiet period and the end of the stream alone, never by
//! guessing from the content.
//!
//! # The connection loop
//!
//! [`serve_connection`] reads requests until the client closes, stays idle for
//! [`ClassicConfig::idle_timeout`], or the server shuts down (between requests: a request
//! being executed is finished and answered first, within [`DRAIN_GRACE`]). Each request gets exactly one answer,
//! in order, and every answer is written with a single write so that it leaves in as few
//! segments as possible (the original clients read once). An `ERROR:` answer leaves the
//! connection usable. A request that does not finish within [`ClassicConfig::timeout`] is
//! answered `TIMEOUT_ERROR`. Every request is logged once: at DEBUG, or at INFO when it
//! failed or took longer than [`SLOW_REQUEST`] (WARN for internal errors).

use std::future::Future;
use std::time::{Duration, Instant};

use cairn_proto::ErrorKind;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::net::{NetConfig, SniffedStream};

mod frame;

pub use frame::{Ending, Frame, FrameReader};

/// A request slower than this is logged at INFO.
pub const SLOW_REQUEST: Duration = Duration::from_secs(1);
/// How long a shutting-down server waits for classic requests being executed.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Longest added to the quiet period for a slow network.
const MAX_RTT_ALLOWANCE: Duration = Duration::from_secs(2);

/// Settings of the classic protocol.
#[derive(Clone, Debug)]
pub struct ClassicConfig {
    /// Longest request, terminator excluded (the content of `WRITE_FILE` counts).
    pub max_request_bytes: usize,
    /// Longest a request may take before it is answered `TIMEOUT_ERROR`.
    pub timeout: Duration,
    /// Silence after which a client that sent no newline is taken to wait for its answer.
    pub quiet: Duration,
    /// A connection idle this long between requests is closed.
    pub idle_timeout: Duration,
    /// Longest wait for a new connection's first bytes before it is taken as classic.
    pub sniff_timeout: Duration,
}

impl Default for ClassicConfig {
    fn default() -> ClassicConfig {
        ClassicConfig {
            max_request_bytes: 64 << 20,
            timeout: Duration::from_secs(120),
            quiet: Duration::from_millis(50),
            idle_timeout: Duration::from_secs(600),
            sniff_timeout: NetConfig::default().sniff_timeout,
        }
    }
}

impl ClassicConfig {
    /// The acceptor settings these imply.
    pub fn net(&self) -> NetConfig {
        NetConfig {
            sniff_timeout: self.sniff_timeout,
        }
    }
}

/// What a handler answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Success: `status`, or `status:payload` when there is a payload.
    Ok {
        status: &'static str,
        payload: Option<Vec<u8>>,
    },
    /// The operation failed: answered with the kind's classic name (`FILE_NOT_FOUND`,
    /// `FILE_LOCKED_ERROR`, `TIMEOUT_ERROR`, `COPY_ERROR`, ...). `detail` is for the log.
    Failed { kind: ErrorKind, detail: String },
    /// The request itself is wrong: answered `ERROR:<reason>`.
    Malformed(String),
}

impl Answer {
    /// A bare success.
    pub fn ok(status: &'static str) -> Answer {
        Answer::Ok {
            status,
            payload: None,
        }
    }

    /// The answer's bytes, terminated as `ending` asks.
    pub fn render(&self, ending: Ending) -> Vec<u8> {
        let mut out = match self {
            Answer::Ok { status, payload } => {
                let payload = payload.as_deref().unwrap_or_default();
                let mut out = Vec::with_capacity(status.len() + payload.len() + 2);
                out.extend_from_slice(status.as_bytes());
                if self.has_payload() {
                    out.push(b':');
                    out.extend_from_slice(payload);
                }
                out
            }
            Answer::Failed { kind, .. } => kind.classic_name().as_bytes().to_vec(),
            // A reason never holds a line end: it would read as the end of the answer.
            Answer::Malformed(reason) => {
                format!("ERROR:{}", reason.replace(['\r', '\n'], " ")).into_bytes()
            }
        };
        if ending == Ending::Line {
            out.push(b'\n');
        }
        out
    }

    fn has_payload(&self) -> bool {
        matches!(
            self,
            Answer::Ok {
                payload: Some(_),
                ..
            }
        )
    }

    /// The first word of the answer, for logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Ok { status, .. } => status,
            Answer::Failed { kind, .. } => kind.classic_name(),
            Answer::Malformed(_) => "ERROR",
        }
    }
}

/// A role's meaning of the classic verbs.
pub trait ClassicHandler: Send + Sync + 'static {
    /// Executes one request (terminator removed). The caller bounds it in time.
    fn handle(&self, request: Vec<u8>) -> impl Future<Output = Answer> + Send;
}

/// Splits a request into its verb (up to the first `:`) and the rest after that `:`.
pub fn split_verb(request: &[u8]) -> Result<(&str, Option<&[u8]>), Answer> {
    let (verb, rest) = match request.iter().position(|&b| b == b':') {
        Some(i) => (&request[..i], Some(&request[i + 1..])),
        None => (request, None),
    };
    match std::str::from_utf8(verb) {
        Ok(v) => Ok((v, rest)),
        Err(_) => Err(Answer::Malformed("the request is not UTF-8".into())),
    }
}

/// `s` as text (invalid UTF-8 replaced), cut after `max_chars` characters.
fn shortened(s: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(s);
    let mut out: String = text.chars().take(max_chars).collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// `s` quoted, escaped and shortened, to show user input in an answer.
pub fn quoted(s: &[u8], max_chars: usize) -> String {
    format!("{:?}", shortened(s, max_chars))
}

/// The verb and the field after it (the name), for logs (which escape them).
fn labels(request: &[u8]) -> (String, String) {
    let mut parts = request.splitn(3, |&b| b == b':');
    let verb = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_default();
    (shortened(verb, 32), shortened(name, 64))
}

/// The quiet period for a connection with round-trip time `rtt`.
fn quiet_for(base: Duration, rtt: Option<Duration>) -> Duration {
    base + rtt.map_or(Duration::ZERO, |r| (2 * r).min(MAX_RTT_ALLOWANCE))
}

/// Serves classic requests on one connection until the client leaves, it idles out, or
/// `shutdown` fires (checked between requests). `role` names the server in logs.
pub async fn serve_connection<H: ClassicHandler>(
    stream: SniffedStream,
    config: &ClassicConfig,
    shutdown: CancellationToken,
    handler: &H,
    role: &'static str,
) {
    let peer = stream.peer_addr();
    tracing::debug!(role, %peer, "classic connection opened");
    let quiet = quiet_for(config.quiet, stream.rtt());
    let mut reader = FrameReader::new(stream, config.max_request_bytes, quiet, config.idle_timeout);
    let mut served = 0u64;
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            f = reader.next() => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(role, %peer, error = %e, "classic connection failed");
                break;
            }
        };
        let started = Instant::now();
        let (verb, name, len, answer, ending) = match frame {
            Frame::TooLarge { len, ending, head } => {
                let reason = format!(
                    "request of {len} bytes is over the limit of {} bytes",
                    config.max_request_bytes
                );
                let (verb, name) = labels(&head);
                (verb, name, len, Answer::Malformed(reason), ending)
            }
            Frame::Request { bytes, ending } => {
                let (verb, name) = labels(&bytes);
                let len = bytes.len() as u64;
                let answer = match tokio::time::timeout(config.timeout, handler.handle(bytes)).await
                {
                    Ok(a) => a,
                    Err(_) => Answer::Failed {
                        kind: ErrorKind::Timeout,
                        detail: format!("not finished within {:?}", config.timeout),
                    },
                };
                (verb, name, len, answer, ending)
            }
        };
        let written = reader.get_mut().write_all(&answer.render(ending)).await;
        log_request(role, peer, &verb, &name, len, &answer, started.elapsed());
        served += 1;
        if let Err(e) = written {
            tracing::debug!(role, %peer, error = %e, "cannot send a classic answer");
            break;
        }
        // The round-trip estimate improves as data flows.
        let rtt = reader.get_ref().rtt();
        reader.set_quiet(quiet_for(config.quiet, rtt));
    }
    let _ = reader.get_mut().shutdown().await;
    tracing::debug!(role, %peer, requests = served, "classic connection closed");
}

fn log_request(
    role: &str,
    peer: std::net::SocketAddr,
    verb: &str,
    name: &str,
    bytes: u64,
    answer: &Answer,
    took: Duration,
) {
    let duration_ms = (took.as_secs_f64() * 1e6).round() / 1e3;
    let outcome = answer.outcome();
    let detail = match answer {
        Answer::Ok { .. } => "",
        Answer::Failed { detail, .. } => detail,
        Answer::Malformed(reason) => reason,
    };
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(role, %peer, verb, name = name, bytes, duration_ms, outcome,
                detail, "classic request")
        };
    }
    match answer {
        Answer::Failed {
            kind: ErrorKind::Internal,
            ..
        } => emit!(warn),
        Answer::Ok { .. } if took < SLOW_REQUEST => emit!(debug),
        _ => emit!(info),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_render_in_the_clients_style() {
        let content = Answer::Ok {
            status: "FILE_CONTENT",
            payload: Some(b"a:b\nc".to_vec()),
        };
        assert_eq!(content.render(Ending::Bare), b"FILE_CONTENT:a:b\nc");
        assert_eq!(content.render(Ending::Line), b"FILE_CONTENT:a:b\nc\n");
        let empty = Answer::Ok {
            status: "FILE_CONTENT",
            payload: Some(Vec::new()),
        };
        assert_eq!(empty.render(Ending::Bare), b"FILE_CONTENT:");
        assert_eq!(
            Answer::ok("FILE_CREATED").render(Ending::Bare),
            b"FILE_CREATED"
        );
        let cases = [
            (ErrorKind::NotFound, "FILE_NOT_FOUND"),
            (ErrorKind::Locked, "FILE_LOCKED_ERROR"),
            (ErrorKind::Timeout, "TIMEOUT_ERROR"),
            (ErrorKind::ReplicationFailed, "COPY_ERROR"),
        ];
        for (kind, name) in cases {
            let a = Answer::Failed {
                kind,
                detail: "x".into(),
            };
            assert_eq!(a.render(Ending::Bare), name.as_bytes());
            assert_eq!(a.outcome(), name);
        }
        let bad = Answer::Malformed("two\nlines".into());
        assert_eq!(bad.render(Ending::Line), b"ERROR:two lines\n");
    }

    #[test]
    fn verbs_split_and_labels_are_safe() {
        assert_eq!(
            split_verb(b"READ_FILE:a:b").unwrap(),
            ("READ_FILE", Some(&b"a:b"[..]))
        );
        assert_eq!(
            split_verb(b"FIND_PRIMARY_SERVER").unwrap(),
            ("FIND_PRIMARY_SERVER", None)
        );
        assert!(split_verb(b"RE\xffAD:a").is_err());
        let (verb, name) = labels(b"WRITE_FILE:n\n\xff:content");
        assert_eq!(
            (verb.as_str(), name.as_str()),
            ("WRITE_FILE", "n\n\u{fffd}")
        );
        assert_eq!(quoted(&[b'x'; 100], 3), "\"xxx…\"");
    }

    #[test]
    fn quiet_period_grows_with_the_round_trip() {
        let base = Duration::from_millis(50);
        assert_eq!(quiet_for(base, None), base);
        assert_eq!(
            quiet_for(base, Some(Duration::from_millis(40))),
            Duration::from_millis(130)
        );
        assert_eq!(
            quiet_for(base, Some(Duration::from_secs(60))),
            base + MAX_RTT_ALLOWANCE
        );
    }
}
