//! `cairn status`: the cluster as the master sees it, as a table or JSON.

use std::io::Write;

use anyhow::Context;
use cairn_client::Client;
use cairn_common::size::HumanBytes;

use crate::CmdResult;

pub async fn status(client: &Client, json: bool) -> CmdResult {
    let s = client.status().await?;
    if json {
        let servers: Vec<_> = s
            .servers
            .iter()
            .map(|v| {
                serde_json::json!({
                    "server_id": v.server_id, "addr": v.addr, "state": v.state,
                    "capacity_bytes": v.capacity_bytes, "used_bytes": v.used_bytes, "free_bytes": v.free_bytes,
                    "replicas": v.replicas, "last_heartbeat_ms_ago": v.last_heartbeat_ms_ago,
                })
            })
            .collect();
        let v = serde_json::json!({
            "servers": servers,
            "namespace": { "files": s.files, "directories": s.directories, "bytes": s.total_bytes, "chunks": s.chunks },
            "replication": {
                "chunks_at_goal": s.chunks_at_goal, "chunks_under_goal": s.chunks_under_goal,
                "chunks_over_goal": s.chunks_over_goal, "chunks_lost": s.chunks_lost,
            },
            "master": {
                "chunk_size": s.chunk_size, "safe_mode": s.safe_mode,
                "oplog_index": s.oplog_index, "last_checkpoint_index": s.last_checkpoint_index,
            },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).context("encode JSON")?
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "master: {}  chunk size {}  log index {}  checkpoint {}",
        if s.safe_mode {
            "SAFE MODE (waiting for chunk reports)"
        } else {
            "serving"
        },
        HumanBytes(s.chunk_size),
        s.oplog_index,
        s.last_checkpoint_index
    )?;
    writeln!(
        out,
        "namespace: {} files, {} directories, {}, {} chunks",
        s.files,
        s.directories,
        HumanBytes(s.total_bytes),
        s.chunks
    )?;
    writeln!(
        out,
        "replication: {} at goal, {} under goal, {} over goal, {} lost",
        s.chunks_at_goal, s.chunks_under_goal, s.chunks_over_goal, s.chunks_lost
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<22} {:<6} {:>10} {:>10} {:>10} {:>9} {:>8}",
        "CHUNK SERVER", "STATE", "CAPACITY", "USED", "FREE", "REPLICAS", "BEAT"
    )?;
    for v in &s.servers {
        writeln!(
            out,
            "{:<22} {:<6} {:>10} {:>10} {:>10} {:>9} {:>7.1}s",
            v.addr,
            v.state,
            HumanBytes(v.capacity_bytes).to_string(),
            HumanBytes(v.used_bytes).to_string(),
            HumanBytes(v.free_bytes).to_string(),
            v.replicas,
            v.last_heartbeat_ms_ago as f64 / 1000.0
        )?;
    }
    Ok(())
}
