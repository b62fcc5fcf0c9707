//! Loopback ports for test nodes that must keep their address across a restart.
//!
//! A port from `bind("127.0.0.1:0")` comes from the kernel's ephemeral range, the same range
//! outgoing connections take their local ports from. While a node is down for a restart,
//! any connection (a chunk server retrying its master, a CLI run of another test) may be
//! given that port, and the node cannot come back on it; and a port bound then released
//! for a child process to take can be handed out again to another test's cluster before
//! the child binds it, so two clusters end up sharing one master. Ports here come from
//! below the ephemeral range, and no port is handed out twice within a test process.
//!
//! Never returns a port it did not just bind successfully itself.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// Lowest port handed out: above the well-known and registered low ports services use.
const FLOOR: u16 = 10_000;

struct Allocator {
    given: HashSet<u16>,
    next: u16,
}

/// The ports outgoing connections do not use: below the kernel's ephemeral range (read
/// from procfs, Linux's default if it cannot be read). `None` when that leaves too few.
fn range() -> Option<(u16, u16)> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (low > FLOOR + 1_000).then_some((FLOOR, low))
}

fn allocator() -> &'static Mutex<Allocator> {
    static A: OnceLock<Mutex<Allocator>> = OnceLock::new();
    A.get_or_init(|| {
        // Test binaries of one `cargo test` run one after another, each with its own pid:
        // starting at a pid-derived place keeps a lingering child of an earlier binary
        // (still bound) out of the way of the first tries.
        let (lo, hi) = range().unwrap_or((FLOOR, FLOOR + 1));
        let span = u32::from(hi - lo);
        let start = lo + ((std::process::id().wrapping_mul(7_919)) % span) as u16;
        Mutex::new(Allocator {
            given: HashSet::new(),
            next: start,
        })
    })
}

/// Binds a loopback listener on a port no other node of this process was given and that
/// outgoing connections cannot take. Falls back to an ephemeral port when the kernel's
/// ephemeral range leaves no room below it.
pub fn bind_listener() -> std::io::Result<TcpListener> {
    let Some((lo, hi)) = range() else {
        return TcpListener::bind("127.0.0.1:0");
    };
    let mut a = allocator().lock().unwrap_or_else(|p| p.into_inner());
    for _ in lo..hi {
        let port = a.next;
        a.next = if port + 1 >= hi { lo } else { port + 1 };
        if a.given.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            a.given.insert(port);
            return Ok(l);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {lo}..{hi}"),
    ))
}

/// A port as [`bind_listener`] chooses it, released for a child process to bind.
pub fn reserve_port() -> std::io::Result<u16> {
    Ok(bind_listener()?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..200).map(|_| reserve_port().unwrap()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        if let Some((lo, hi)) = range() {
            assert!(ports.iter().all(|p| (lo..hi).contains(p)), "{ports:?}");
        }
    }
}
