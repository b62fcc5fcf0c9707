//! `cairn bench`: figures of the data path and of metadata operations against a running
//! cluster, through the client library. Throughput is MB/s (10^6 bytes per second); rates
//! are operations per second. Every figure is the median of `--runs` runs, with min and max.

mod meta;
mod ops;

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use cairn_client::Client;
use cairn_common::size::parse_size;
use clap::{Args, ValueEnum};

use crate::CmdResult;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Workload {
    /// Upload a file, then download it.
    PutGet,
    Put,
    Get,
    /// 4 KiB writes at random offsets of a file, from `--clients` clients.
    Randwrite,
    /// Exclusive lock acquire + release round trips, from `--clients` clients.
    Lock,
    /// 4 KiB reads at random offsets of a `--size` file, from `--clients` clients.
    Randread,
    /// Create+write, stat, read and delete of `--files` 4 KiB files.
    SmallFiles,
    /// mkdir, create, stat, rename of `--files` entries; list a directory of `--entries`.
    Metadata,
    /// Master memory per file and per chunk, and create/stat rates, at `--files` files.
    Scale,
    /// Every workload above but scale, with 1 and 4 clients where that matters.
    All,
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    #[arg(value_enum, default_value_t = Workload::PutGet)]
    workload: Workload,
    /// Bytes per run for put/get; file size for randwrite.
    #[arg(long, default_value = "1GiB", value_parser = |s: &str| parse_size(s).map_err(|e| e.to_string()))]
    size: u64,
    /// Remote path used (overwritten, removed afterwards unless --keep).
    #[arg(long, default_value = "/.cairn-bench")]
    path: String,
    /// Runs; the median is reported with min and max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent clients (each its own connection and session).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Concurrent tasks per client for small-files, metadata and scale (a server
    /// answering many requests at once through one client).
    #[arg(long, default_value_t = 1)]
    tasks: usize,
    /// Files for small-files, metadata and scale.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Entries of the directory that metadata lists.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Chunks that scale writes (one byte each, one file per client) to measure memory
    /// per chunk; start the master with a small `--chunk-size` for large counts.
    #[arg(long, default_value_t = 20_000)]
    chunk_files: usize,
    /// How long scale waits before each reading of the master's memory.
    #[arg(long, default_value = "3s", value_parser = crate::servers::duration_arg)]
    settle: std::time::Duration,
    /// Operations per client per run for randwrite and lock.
    #[arg(long, default_value_t = 500)]
    ops: usize,
    /// Keep the remote file afterwards.
    #[arg(long)]
    keep: bool,
    #[arg(long)]
    json: bool,
    /// Chunks written concurrently (default: the client library's).
    #[arg(long)]
    parallel: Option<usize>,
}

/// One measured figure.
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
}

/// Fills a local file with non-repeating bytes (zeros would flatter sparse storage).
fn make_source(size: u64) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut f = tempfile::NamedTempFile::new().context("create a local source file")?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
        }
        let n = (left as usize).min(buf.len());
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(f)
}

fn crc_of_file(path: &std::path::Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Sequential put then get of `--size` bytes by each of `--clients` clients (each its own
/// file), aggregate MB/s; every byte read back is checked against the source's CRC.
async fn put_get(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    let source = std::sync::Arc::new(make_source(a.size)?);
    let expected = crc_of_file(source.path()).context("hash the source")?;
    let mut cs = Vec::new();
    for i in 0..a.clients.max(1) {
        cs.push((
            Client::connect(client.config().clone()).await?,
            format!("{}.{i}", a.path),
        ));
    }
    let (mut put, mut get) = (Vec::new(), Vec::new());
    if a.workload == Workload::Get {
        for (c, p) in &cs {
            c.put_file(source.path(), p, true).await?;
        }
    }
    let total = a.size as f64 * cs.len() as f64;
    for _ in 0..runs {
        if a.workload != Workload::Get {
            let t = Instant::now();
            let tasks: Vec<_> = cs
                .iter()
                .map(|(c, p)| {
                    let (c, p, src) = (c.clone(), p.clone(), source.clone());
                    tokio::spawn(async move { c.put_file(src.path(), &p, true).await.map(drop) })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            put.push(total / t.elapsed().as_secs_f64() / 1e6);
        }
        if a.workload != Workload::Put {
            let t = Instant::now();
            let tasks: Vec<_> = cs
                .iter()
                .map(|(c, p)| {
                    let (c, p) = (c.clone(), p.clone());
                    tokio::spawn(async move {
                        let mut reader = c.reader(&p).await?;
                        let (mut crc, mut n) = (0u32, 0u64);
                        while let Some(piece) = reader.next().await? {
                            crc = crc32c::crc32c_append(crc, &piece);
                            n += piece.len() as u64;
                        }
                        Ok::<_, anyhow::Error>((n, crc))
                    })
                })
                .collect();
            for task in tasks {
                let (n, crc) = task.await??;
                anyhow::ensure!(
                    n == a.size && crc == expected,
                    "read back {n} bytes with CRC {crc:08x}, expected {} with {expected:08x}",
                    a.size
                );
            }
            get.push(total / t.elapsed().as_secs_f64() / 1e6);
        }
    }
    for (c, p) in &cs {
        if !a.keep {
            c.delete(p, false).await?;
        }
    }
    let size = cairn_common::size::HumanBytes(a.size);
    let k = cs.len();
    let mut rows = Vec::new();
    if !put.is_empty() {
        rows.push(Row {
            name: format!("put {size}, {k}c"),
            unit: "MB/s",
            values: put,
        });
    }
    if !get.is_empty() {
        rows.push(Row {
            name: format!("get {size}, {k}c"),
            unit: "MB/s",
            values: get,
        });
    }
    Ok(rows)
}

/// Runs one workload (not `All`).
async fn run_one(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    Ok(match a.workload {
        Workload::PutGet | Workload::Put | Workload::Get => put_get(client, a, runs).await?,
        Workload::Randwrite => ops::random_writes(client, a, runs).await?,
        Workload::Lock => ops::lock_round_trips(client, a, runs).await?,
        Workload::Randread => meta::random_reads(client, a, runs).await?,
        Workload::SmallFiles => meta::small_files(client, a, runs).await?,
        Workload::Metadata => meta::metadata(client, a, runs).await?,
        Workload::Scale => meta::scale(client, a).await?,
        Workload::All => anyhow::bail!("`all` is not one workload"),
    })
}

/// Every workload but scale, in a fixed order, 1 and 4 clients where concurrency matters.
async fn run_all(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let plan = [
        (Workload::PutGet, 1),
        (Workload::PutGet, 4),
        (Workload::SmallFiles, 1),
        (Workload::SmallFiles, 4),
        (Workload::Metadata, 4),
        (Workload::Randread, 1),
        (Workload::Randread, 4),
        (Workload::Randwrite, 1),
        (Workload::Randwrite, 4),
        (Workload::Lock, 1),
        (Workload::Lock, 4),
    ];
    for (workload, clients) in plan {
        let w = BenchArgs {
            workload,
            clients,
            path: format!("{}/{workload:?}{clients}", a.path),
            ..a.clone()
        };
        client.mkdir(&a.path, true).await?;
        eprintln!("bench: {workload:?} with {clients} client(s)");
        rows.extend(run_one(client, &w, runs).await?);
        if !a.keep {
            remove(client, &w.path).await?;
        }
    }
    Ok(rows)
}

async fn remove(client: &Client, path: &str) -> anyhow::Result<()> {
    match client.delete(path, true).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == cairn_client::Kind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn bench(client: &Client, a: &BenchArgs) -> CmdResult {
    let mut config = client.config().clone();
    if let Some(p) = a.parallel {
        config.write_parallelism = p.max(1);
    }
    let client = &Client::connect(config).await?;
    let runs = a.runs.max(1);
    let rows = if a.workload == Workload::All {
        run_all(client, a, runs).await?
    } else {
        run_one(client, a, runs).await?
    };
    if !a.keep {
        remove(client, &a.path).await?;
    }
    print_rows(&rows, a.json)
}

fn print_rows(rows: &[Row], json: bool) -> CmdResult {
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let (med, min, max) = stats(&r.values);
                serde_json::json!({"figure": r.name, "unit": r.unit, "runs": r.values.len(), "median": med, "min": min, "max": max})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).context("encode JSON")?
        );
        return Ok(());
    }
    println!(
        "{:<34} {:>6} {:>12} {:>12} {:>12}",
        "figure", "runs", "median", "min", "max"
    );
    for r in rows {
        let (med, min, max) = stats(&r.values);
        println!(
            "{:<34} {:>6} {med:>12.1} {min:>12.1} {max:>12.1} {}",
            r.name,
            r.values.len(),
            r.unit
        );
    }
    Ok(())
}
