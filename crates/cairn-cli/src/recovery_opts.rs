//! Flags for failure handling: how the master detects dead servers and re-replicates, and
//! how a chunk server copies, scrubs and keeps free space.

use std::time::Duration;

use cairn_chunkserver::ChunkServerConfig;
use cairn_common::size::parse_size;
use cairn_master::MasterConfig;
use clap::Args;

use crate::servers::duration_arg;

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// `auto` (1 GiB or 5% of the disk, whichever is smaller) or a size.
fn reserve_arg(s: &str) -> Result<Option<u64>, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    size_arg(s).map(Some)
}

/// The master's failure-handling flags.
#[derive(Args, Clone)]
pub struct MasterRecoveryOpts {
    /// How long the master waits for chunk reports after a start before it re-replicates.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    safe_mode_timeout: Duration,
    /// How long a replica the master does not know is kept before it is deleted.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    gc_grace: Duration,
    /// Fewest replicas a write may complete on (COPY_ERROR below it).
    #[arg(long, default_value_t = 1)]
    min_replicas: usize,
    /// Re-replication copies in flight in the whole cluster.
    #[arg(long, default_value_t = 64)]
    replication_max_in_flight: usize,
    /// Re-replication copies one server may receive (and, separately, send) at once.
    #[arg(long, default_value_t = 4)]
    replication_per_server: usize,
}

impl MasterRecoveryOpts {
    /// Applies the flags to a master's config.
    pub fn apply(&self, c: &mut MasterConfig) {
        c.safe_mode_timeout = self.safe_mode_timeout;
        c.gc_grace = self.gc_grace;
        c.min_replicas = self.min_replicas.max(1);
        c.replication.max_in_flight = self.replication_max_in_flight.max(1);
        c.replication.max_per_server = self.replication_per_server.max(1);
    }
}

/// A chunk server's failure-handling flags.
#[derive(Args, Clone)]
pub struct ChunkServerRecoveryOpts {
    /// Free space kept unused on the data directory's disk: `auto` (1 GiB or 5% of the
    /// disk, whichever is smaller) or a size. Below it the server takes no new replicas.
    #[arg(long, default_value = "auto", value_parser = reserve_arg)]
    reserve: ::std::option::Option<u64>, // fully qualified: the parser yields the Option itself
    /// Bytes per second re-replication copies into this server may use together (0: no
    /// limit).
    #[arg(long, default_value = "100MiB", value_parser = size_arg)]
    replication_bandwidth: u64,
    /// Re-replication copies this server makes at once.
    #[arg(long, default_value_t = 4)]
    replication_concurrency: usize,
    /// Bytes per second the scrubber re-verifies (0: no scrubbing).
    #[arg(long, default_value = "8MiB", value_parser = size_arg)]
    scrub_bandwidth: u64,
    /// A scrub pass over every replica starts at most this often.
    #[arg(long, default_value = "24h", value_parser = duration_arg)]
    scrub_interval: Duration,
}

impl ChunkServerRecoveryOpts {
    /// Applies the flags to a chunk server's config.
    pub fn apply(&self, c: &mut ChunkServerConfig) {
        c.reserve_bytes = self.reserve;
        c.replication_bandwidth = self.replication_bandwidth;
        c.replication_concurrency = self.replication_concurrency.max(1);
        c.scrub_bandwidth = self.scrub_bandwidth;
        c.scrub_interval = self.scrub_interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_auto_or_a_size() {
        assert_eq!(reserve_arg("auto"), Ok(None));
        assert_eq!(reserve_arg("AUTO"), Ok(None));
        assert_eq!(reserve_arg("2GiB"), Ok(Some(2 << 30)));
        assert_eq!(reserve_arg("0"), Ok(Some(0)));
        assert!(reserve_arg("lots").is_err());
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        master: MasterRecoveryOpts,
        #[command(flatten)]
        chunkserver: ChunkServerRecoveryOpts,
    }

    #[test]
    fn flags_parse_and_apply() {
        use clap::Parser;
        let f = Flags::try_parse_from(["t", "--reserve", "2GiB", "--min-replicas", "2"]).unwrap();
        let mut c = ChunkServerConfig::new("/tmp/x", "127.0.0.1:1");
        f.chunkserver.apply(&mut c);
        assert_eq!(c.reserve_bytes, Some(2 << 30));
        let mut m = MasterConfig::new("/tmp/m");
        f.master.apply(&mut m);
        assert_eq!(m.min_replicas, 2);
        let f = Flags::try_parse_from(["t"]).unwrap();
        f.chunkserver.apply(&mut c);
        assert_eq!(c.reserve_bytes, None);
        assert_eq!(c.scrub_bandwidth, 8 << 20);
    }
}
