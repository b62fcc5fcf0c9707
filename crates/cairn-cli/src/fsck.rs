//! `cairn fsck [PATH] [--json]`: checks every chunk of every file under PATH against the
//! master's map and the chunk servers themselves.
//!
//! For every chunk, the master says where its live replicas at the current version are;
//! each of those chunk servers is asked for its replica's version and serial and for a
//! CRC32C of its bytes, read in full with every block verified. A replica counts as
//! healthy only if it answered, is at the chunk's version, has the newest serial among the
//! replicas, and its checksum agrees with the others'. So fsck never calls a chunk healthy
//! it did not verify. A replica that fails verification is removed by its server on the
//! spot (and then re-replicated by the master), as a read would do.
//!
//! Each chunk gets one state, the first that applies:
//!
//! | state | meaning |
//! | --- | --- |
//! | `lost` | no healthy replica, and none that merely did not answer |
//! | `corrupt` | a replica failed verification, or replicas of equal serial differ |
//! | `unverified` | fewer healthy replicas than the goal, and a server did not answer |
//! | `under_goal` | fewer healthy replicas than the goal |
//! | `at_goal` | at least the goal's number of healthy replicas |
//!
//! Exit code: 0 when every chunk is at its goal; otherwise the worst of 20 (under goal or
//! unverified), 21 (corrupt replicas found), 22 (lost chunks). Failing to reach the master
//! exits with the usual error codes (6 for `TIMEOUT_ERROR`, ...).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_client::{ChunkReplicas, Client, FileType, Kind};
use clap::Args;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{CmdResult, Failure};

/// Exit code: some chunk is under its goal or could not be fully verified.
pub const EXIT_DEGRADED: u8 = 20;
/// Exit code: corrupt replicas were found (the data is still readable elsewhere).
pub const EXIT_CORRUPT: u8 = 21;
/// Exit code: some chunk has no healthy replica.
pub const EXIT_LOST: u8 = 22;

#[derive(Args)]
pub struct FsckArgs {
    /// File or directory to check (recursively).
    #[arg(default_value = "/")]
    path: String,
    /// Machine-readable report: every file, every problem chunk, totals, exit code.
    #[arg(long)]
    json: bool,
    /// Replicas verified at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Seconds a chunk server may take to verify one replica.
    #[arg(long, default_value_t = 60)]
    server_timeout: u64,
}

/// The state of one chunk (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    AtGoal,
    UnderGoal,
    Unverified,
    Corrupt,
    Lost,
}

/// What one replica's server said.
#[derive(Clone, Debug, Serialize)]
struct ReplicaReport {
    server_id: u64,
    addr: String,
    /// healthy, behind, stale, missing, corrupt, mismatch, unverified.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

#[derive(Clone, Debug, Serialize)]
struct ChunkReport {
    index: u64,
    chunk_id: u64,
    version: u64,
    length: u64,
    goal: u32,
    healthy: usize,
    state: State,
    replicas: Vec<ReplicaReport>,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    chunks: u64,
    at_goal: u64,
    under_goal: u64,
    unverified: u64,
    corrupt: u64,
    lost: u64,
}

impl Counts {
    fn add(&mut self, s: State) {
        self.chunks += 1;
        match s {
            State::AtGoal => self.at_goal += 1,
            State::UnderGoal => self.under_goal += 1,
            State::Unverified => self.unverified += 1,
            State::Corrupt => self.corrupt += 1,
            State::Lost => self.lost += 1,
        }
    }
}

#[derive(Debug, Serialize)]
struct FileReport {
    path: String,
    size: u64,
    goal: u32,
    #[serde(flatten)]
    counts: Counts,
    /// Chunks not at their goal.
    problems: Vec<ChunkReport>,
}

/// Runs the check and exits with its code.
pub async fn fsck(client: &Client, a: &FsckArgs) -> CmdResult {
    let status = client.status().await?;
    if status.safe_mode && !a.json {
        eprintln!("note: the master is in safe mode; fsck waits for the chunk servers' reports");
    }
    let files = walk(client, &a.path).await?;
    let limit = Arc::new(Semaphore::new(a.parallel.max(1)));
    let timeout = Duration::from_secs(a.server_timeout.max(1));
    let mut reports = Vec::new();
    let mut total = Counts::default();
    let mut verified_bytes = 0u64;
    for path in files {
        let (attr, chunks) = match client.chunk_map(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == Kind::NotFound => continue, // removed while we walked
            Err(e) => return Err(e.into()),
        };
        let mut tasks = JoinSet::new();
        // A chunk past the file's end without replicas holds no acknowledged byte (its
        // first write never completed): there is nothing in it to check or to lose.
        let data_chunks = chunks
            .into_iter()
            .filter(|c| c.chunk_id != 0 && !(c.length == 0 && c.replicas.is_empty()));
        for c in data_chunks {
            let (client, limit) = (client.clone(), limit.clone());
            tasks.spawn(async move { check_chunk(&client, c, attr.goal, &limit, timeout).await });
        }
        let mut checked = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let r = r.context("a chunk check failed")?;
            checked.insert(r.index, r);
        }
        let mut file = FileReport {
            path,
            size: attr.size,
            goal: attr.goal,
            counts: Counts::default(),
            problems: Vec::new(),
        };
        for (_, c) in checked {
            file.counts.add(c.state);
            total.add(c.state);
            verified_bytes += c.length * c.healthy as u64;
            if c.state != State::AtGoal {
                file.problems.push(c);
            }
        }
        reports.push(file);
    }
    let worst = reports
        .iter()
        .flat_map(|f| f.problems.iter().map(|c| c.state))
        .max()
        .unwrap_or(State::AtGoal);
    let code = match worst {
        State::AtGoal => 0,
        State::UnderGoal | State::Unverified => EXIT_DEGRADED,
        State::Corrupt => EXIT_CORRUPT,
        State::Lost => EXIT_LOST,
    };
    if a.json {
        let v = serde_json::json!({
            "path": a.path,
            "healthy": code == 0,
            "exit_code": code,
            "safe_mode": status.safe_mode,
            "files": reports,
            "total": total,
            "verified_bytes": verified_bytes,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).context("encode JSON")?
        );
    } else {
        print_text(&reports, &total, verified_bytes, code);
    }
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::Exit(code))
    }
}

fn print_text(reports: &[FileReport], total: &Counts, verified_bytes: u64, code: u8) {
    for f in reports.iter().filter(|f| !f.problems.is_empty()) {
        println!(
            "{}: {} chunks: {} at goal, {} under goal, {} unverified, {} corrupt, {} lost",
            f.path,
            f.counts.chunks,
            f.counts.at_goal,
            f.counts.under_goal,
            f.counts.unverified,
            f.counts.corrupt,
            f.counts.lost
        );
        for c in &f.problems {
            let servers: Vec<String> = c
                .replicas
                .iter()
                .map(|r| format!("{} {}", r.addr, r.state))
                .collect();
            println!(
                "  chunk {} (id {} v{}): {:?}, {} of {} healthy replicas [{}]",
                c.index,
                c.chunk_id,
                c.version,
                c.state,
                c.healthy,
                c.goal,
                servers.join(", ")
            );
        }
    }
    println!(
        "checked {} files, {} chunks, {} verified: {} at goal, {} under goal, {} unverified, {} corrupt, {} lost",
        reports.len(),
        total.chunks,
        cairn_common::size::HumanBytes(verified_bytes),
        total.at_goal,
        total.under_goal,
        total.unverified,
        total.corrupt,
        total.lost
    );
    let verdict = match code {
        0 => "HEALTHY",
        EXIT_DEGRADED => "DEGRADED",
        EXIT_CORRUPT => "CORRUPT REPLICAS FOUND",
        _ => "DATA LOST",
    };
    println!("status: {verdict} (exit {code})");
}

/// Every file under `root` (or `root` itself if it is a file), depth first, sorted.
async fn walk(client: &Client, root: &str) -> Result<Vec<String>, Failure> {
    let attr = client.stat(root).await?;
    let root = cairn_proto::CairnPath::parse_lenient(root)
        .map(|p| p.to_string())
        .map_err(|e| cairn_client::Error::new(Kind::InvalidPath, format!("{root}: {e}")))?;
    if !attr.is_dir() {
        return Ok(if attr.file_type == FileType::File {
            vec![root]
        } else {
            vec![]
        });
    }
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        let entries = match client.list(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == Kind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            let p = if dir == "/" {
                format!("/{}", e.name)
            } else {
                format!("{dir}/{}", e.name)
            };
            match e.attr.file_type {
                FileType::Directory => dirs.push(p),
                FileType::File => files.push(p),
                FileType::Symlink => {}
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Verifies every replica of one chunk and classifies it.
async fn check_chunk(
    client: &Client,
    c: ChunkReplicas,
    goal: u32,
    limit: &Semaphore,
    timeout: Duration,
) -> ChunkReport {
    let mut replicas = Vec::new();
    // (serial, checksum, position in `replicas`) of replicas at the chunk's version.
    let mut current = Vec::new();
    for (server_id, addr) in &c.replicas {
        let answer = {
            let _permit = limit.acquire().await;
            client.replica_state(addr, c.chunk_id, true, timeout).await
        };
        let mut r = ReplicaReport {
            server_id: *server_id,
            addr: addr.clone(),
            state: "unverified",
            serial: None,
            checksum: None,
            detail: String::new(),
        };
        match answer {
            Ok(s) if s.version == c.version => {
                r.serial = Some(s.serial);
                r.checksum = Some(format!("{:08x}", s.checksum));
                current.push((s.serial, s.checksum, replicas.len()));
            }
            Ok(s) => {
                r.state = "stale";
                r.detail = format!("holds version {}", s.version);
            }
            Err(e) => {
                r.state = match e.kind() {
                    Kind::Corrupt => "corrupt",
                    Kind::NotFound => "missing",
                    Kind::Stale => "stale",
                    _ => "unverified",
                };
                r.detail = e.message().to_string();
            }
        }
        replicas.push(r);
    }
    // The newest serial wins; among those, the checksum a strict majority agrees on.
    let newest = current.iter().map(|(s, _, _)| *s).max();
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (serial, sum, i) in &current {
        if Some(*serial) == newest {
            groups.entry(*sum).or_default().push(*i);
        } else {
            replicas[*i].state = "behind";
        }
    }
    let at_newest: usize = groups.values().map(Vec::len).sum();
    let majority = groups
        .iter()
        .find(|(_, v)| v.len() * 2 > at_newest)
        .map(|(sum, _)| *sum);
    let inconsistent = groups.len() > 1;
    let mut healthy = 0;
    for (sum, members) in &groups {
        for i in members {
            if Some(*sum) == majority {
                replicas[*i].state = "healthy";
                healthy += 1;
            } else {
                replicas[*i].state = "mismatch";
            }
        }
    }
    let count = |s: &str| replicas.iter().filter(|r| r.state == s).count();
    let state = if healthy == 0 && count("unverified") == 0 && !inconsistent {
        State::Lost
    } else if count("corrupt") > 0 || inconsistent {
        State::Corrupt
    } else if healthy < goal as usize && count("unverified") > 0 {
        State::Unverified
    } else if healthy < goal as usize {
        State::UnderGoal
    } else {
        State::AtGoal
    };
    ChunkReport {
        index: c.index,
        chunk_id: c.chunk_id,
        version: c.version,
        length: c.length,
        goal,
        healthy,
        state,
        replicas,
    }
}
