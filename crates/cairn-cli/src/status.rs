//! `cairn status`: the cluster as the master sees it (the same facts as the dashboard), as
//! a table, as JSON, or refreshed in place with `--watch`.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use cairn_client::Client;
use cairn_common::size::HumanBytes;
use cairn_proto::pb;

use crate::CmdResult;

/// Recent events shown under the table.
const EVENTS_SHOWN: usize = 8;

fn when(unix_ms: u64) -> String {
    crate::fs::format_time(unix_ms as i64 * 1_000_000)
}

/// The status as the table `cairn status` prints.
pub fn table(s: &pb::ClusterStatusResponse) -> String {
    let mut out = String::new();
    let state = if s.safe_mode {
        "SAFE MODE (waiting for chunk reports)"
    } else if s.chunks_lost > 0 {
        "DATA UNAVAILABLE (chunks with no live replica)"
    } else if s.chunks_under_goal > 0 {
        "DEGRADED (chunks under goal)"
    } else {
        "healthy"
    };
    let _ = writeln!(
        out,
        "cluster: {state}   cairn {}   master up {}s   log index {} ({})   checkpoint {}",
        s.version,
        s.uptime_ms / 1000,
        s.oplog_index,
        HumanBytes(s.oplog_bytes),
        s.last_checkpoint_index
    );
    let _ = writeln!(
        out,
        "namespace: {} files, {} directories, {} symlinks, {}, {} chunks of {}",
        s.files,
        s.directories,
        s.symlinks,
        HumanBytes(s.total_bytes),
        s.chunks,
        HumanBytes(s.chunk_size)
    );
    let _ = writeln!(
        out,
        "replication: {} at goal, {} under goal, {} over goal, {} lost",
        s.chunks_at_goal, s.chunks_under_goal, s.chunks_over_goal, s.chunks_lost
    );
    if s.replication_bytes_left > 0 || s.replications_in_flight > 0 {
        let eta = match s.replication_eta_ms {
            0 => "unknown".to_string(),
            ms => format!("{:.0}s", ms as f64 / 1000.0),
        };
        let _ = writeln!(
            out,
            "re-replication: {} copies in flight, {} left at {}/s, ETA {eta}",
            s.replications_in_flight,
            HumanBytes(s.replication_bytes_left),
            HumanBytes(s.replication_rate_bytes)
        );
    }
    if s.safe_mode {
        let _ = writeln!(
            out,
            "safe mode: waiting for chunk reports before re-replicating (at most {:.0}s more)",
            s.safe_mode_remaining_ms as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "clients: {} sessions, {} locks held, {} waiting",
        s.sessions, s.locks_held, s.lock_waiters
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:<6} {:>8} {:>10} {:>10} {:>10} {:>9} {:>5}",
        "CHUNK SERVER", "STATE", "BEAT", "CAPACITY", "USED", "FREE", "REPLICAS", "LOAD"
    );
    for v in &s.servers {
        let _ = writeln!(
            out,
            "{:<22} {:<6} {:>7.1}s {:>10} {:>10} {:>10} {:>9} {:>5}",
            v.addr,
            v.state,
            v.last_heartbeat_ms_ago as f64 / 1000.0,
            HumanBytes(v.capacity_bytes).to_string(),
            HumanBytes(v.used_bytes).to_string(),
            HumanBytes(v.free_bytes).to_string(),
            v.replicas,
            v.active_requests
        );
    }
    if !s.events.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "recent events:");
        let skip = s.events.len().saturating_sub(EVENTS_SHOWN);
        for e in &s.events[skip..] {
            let _ = writeln!(
                out,
                "  {} UTC  {:<5}  {}",
                when(e.unix_ms),
                e.level,
                e.message
            );
        }
    }
    out
}

pub async fn status(client: &Client, json: bool, watch: Option<f64>) -> CmdResult {
    let Some(every) = watch else {
        let s = client.status().await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&s).context("encode JSON")?
            );
        } else {
            print!("{}", table(&s));
        }
        return Ok(());
    };
    let every = Duration::from_secs_f64(every.clamp(0.2, 3600.0));
    let mut out = std::io::stdout();
    loop {
        let text = match client.status().await {
            Ok(s) if json => serde_json::to_string(&s).context("encode JSON")? + "\n",
            Ok(s) => format!(
                "\x1b[2J\x1b[H{}\n(every {:?}; Ctrl-C to stop)\n",
                table(&s),
                every
            ),
            Err(e) => format!("\x1b[2J\x1b[Hthe master does not answer: {e}\n"),
        };
        out.write_all(text.as_bytes())?;
        out.flush()?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}
