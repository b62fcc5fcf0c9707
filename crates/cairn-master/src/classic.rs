//! The master's side of the classic protocol, served on the gRPC port (see
//! `cairn_common::net` for the split and `cairn_common::classic` for the framing).
//!
//! The master answers `FIND_PRIMARY_SERVER` with `PRIMARY_SERVER_INFO:<ip>,<port>`: the live
//! chunk server with the fewest requests in flight (then the most free space, ties drawn at
//! random), where a classic client sends its file requests. Anything after
//! `FIND_PRIMARY_SERVER:` is ignored. With no live chunk server the answer is
//! `UNAVAILABLE_ERROR`. The old chunk servers' registration verbs are refused: Cairn chunk
//! servers register over gRPC. File verbs are answered with an `ERROR:` pointing to the
//! chunk servers, which execute them.
//!
//! At start the master also creates the classic directory if it is missing, so classic
//! names have somewhere to live.

use std::sync::Arc;

use cairn_common::CancellationToken;
use cairn_common::classic::{Answer, ClassicHandler, quoted, serve_connection, split_verb};
use cairn_common::net::{ClassicConnections, GrpcIncoming, split_listener};
use cairn_proto::ErrorKind;
use rand::seq::SliceRandom;
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::master::Master;

/// Executes classic requests against the master's soft cluster state.
struct MasterClassic {
    master: Arc<Master>,
}

impl ClassicHandler for MasterClassic {
    async fn handle(&self, request: Vec<u8>) -> Answer {
        let (verb, _) = match split_verb(&request) {
            Ok(v) => v,
            Err(a) => return a,
        };
        match verb {
            "FIND_PRIMARY_SERVER" => find_primary(&self.master.cluster()),
            "REGISTER_CHUNK_SERVER" | "CHUNK_SERVER_INFO" => Answer::Malformed(format!(
                "{verb} is not accepted: Cairn chunk servers register with the master over gRPC"
            )),
            "CREATE_FILE" | "WRITE_FILE" | "READ_FILE" | "DELETE_FILE" => Answer::Malformed(
                format!("{verb} goes to a chunk server: ask FIND_PRIMARY_SERVER for one"),
            ),
            _ => Answer::Malformed(format!(
                "unknown verb {} (the master answers FIND_PRIMARY_SERVER)",
                quoted(verb.as_bytes(), 32)
            )),
        }
    }
}

/// The answer to `FIND_PRIMARY_SERVER`.
fn find_primary(cluster: &Cluster) -> Answer {
    let Some(addr) = least_loaded(cluster) else {
        return Answer::Failed {
            kind: ErrorKind::Unavailable,
            detail: "no live chunk server".into(),
        };
    };
    match ip_port(&addr) {
        Some((ip, port)) => Answer::Ok {
            status: "PRIMARY_SERVER_INFO",
            payload: Some(format!("{ip},{port}").into_bytes()),
        },
        None => Answer::Failed {
            kind: ErrorKind::Internal,
            detail: format!("chunk server address {addr:?} has no port"),
        },
    }
}

/// The address of the live chunk server with the fewest requests in flight, then the most
/// free space (by GiB); equal ones are drawn at random so that clients spread.
fn least_loaded(cluster: &Cluster) -> Option<String> {
    let mut live: Vec<_> = cluster.servers.values().filter(|s| s.alive).collect();
    live.shuffle(&mut rand::rng());
    live.into_iter()
        .min_by_key(|s| {
            (
                s.active_requests,
                std::cmp::Reverse(s.capacity.free_bytes >> 30),
            )
        })
        .map(|s| s.addr.clone())
}

/// Splits `host:port` (or `[v6]:port`) into the two fields of `PRIMARY_SERVER_INFO`.
fn ip_port(addr: &str) -> Option<(String, u16)> {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.to_string(), port.parse().ok()?))
}

/// Splits `listener` into the gRPC connections tonic serves and classic ones, served here
/// until `shutdown` fires.
pub(crate) fn listen(
    listener: TcpListener,
    master: Arc<Master>,
    shutdown: CancellationToken,
) -> (GrpcIncoming, ClassicConnections) {
    let config = Arc::new(master.config.classic.clone());
    let handler = Arc::new(MasterClassic { master });
    split_listener(listener, config.net(), move |stream| {
        let (config, handler, shutdown) = (config.clone(), handler.clone(), shutdown.clone());
        async move { serve_connection(stream, &config, shutdown, &*handler, "master").await }
    })
}

/// Creates the classic directory (and its parents) if it does not exist yet.
pub(crate) async fn ensure_dir(master: &Master) {
    let dir = master.config.classic_dir.clone();
    if dir.is_root() {
        return;
    }
    match master.stat(&dir) {
        Ok(attr) if attr.file_type == cairn_meta::FileType::Directory => {}
        Ok(_) => {
            tracing::warn!(%dir, "the classic directory is a file; classic requests will fail")
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            match master.mkdir(None, dir.clone(), true, 0o755).await {
                Ok(_) => tracing::info!(%dir, "created the classic directory"),
                Err(e) => tracing::warn!(%dir, error = %e, "cannot create the classic directory"),
            }
        }
        Err(e) => tracing::warn!(%dir, error = %e, "cannot look up the classic directory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Server;
    use cairn_proto::pb;
    use std::time::Instant;

    fn server(id: u64, active: u32, free_gib: u64, alive: bool) -> Server {
        Server {
            id,
            addr: format!("127.0.0.1:{}", 6000 + id),
            capacity: pb::Capacity {
                free_bytes: free_gib << 30,
                ..Default::default()
            },
            last_beat: Instant::now(),
            alive,
            active_requests: active,
            commands: None,
            session: 0,
            http_addr: String::new(),
        }
    }

    #[test]
    fn primary_is_the_least_loaded_live_server() {
        let mut c = Cluster::default();
        assert!(matches!(
            find_primary(&c),
            Answer::Failed {
                kind: ErrorKind::Unavailable,
                ..
            }
        ));
        c.servers.insert(1, server(1, 5, 100, true));
        c.servers.insert(2, server(2, 1, 10, true));
        c.servers.insert(3, server(3, 1, 50, true));
        c.servers.insert(4, server(4, 0, 90, false));
        assert_eq!(
            find_primary(&c),
            Answer::Ok {
                status: "PRIMARY_SERVER_INFO",
                payload: Some(b"127.0.0.1,6003".to_vec())
            }
        );
    }

    #[test]
    fn addresses_split_into_ip_and_port() {
        assert_eq!(ip_port("10.0.0.7:6001"), Some(("10.0.0.7".into(), 6001)));
        assert_eq!(ip_port("[::1]:6002"), Some(("::1".into(), 6002)));
        assert_eq!(
            ip_port("cs1.example:6003"),
            Some(("cs1.example".into(), 6003))
        );
        assert_eq!(ip_port("nohost"), None);
    }
}
