//! `cairn bench`: figures of the data path and of metadata operations against a running
//! cluster, through the client library. Throughput is MB/s (10^6 bytes per second); rates
//! are operations per second. Every figure is the median of `--runs` runs, with min and max.

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
}

#[derive(Args)]
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
    /// Concurrent clients for randwrite and lock.
    #[arg(long, default_value_t = 1)]
    clients: usize,
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

async fn put_get(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    let source = make_source(a.size)?;
    let expected = crc_of_file(source.path()).context("hash the source")?;
    let mut put = Vec::new();
    let mut get = Vec::new();
    if a.workload == Workload::Get {
        client.put_file(source.path(), &a.path, true).await?;
    }
    for _ in 0..runs {
        if a.workload != Workload::Get {
            let t = Instant::now();
            client.put_file(source.path(), &a.path, true).await?;
            put.push(a.size as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
        if a.workload != Workload::Put {
            let t = Instant::now();
            let mut reader = client.reader(&a.path).await?;
            let mut crc = 0u32;
            let mut n = 0u64;
            while let Some(piece) = reader.next().await? {
                crc = crc32c::crc32c_append(crc, &piece);
                n += piece.len() as u64;
            }
            get.push(a.size as f64 / t.elapsed().as_secs_f64() / 1e6);
            anyhow::ensure!(
                n == a.size && crc == expected,
                "read back {n} bytes with CRC {crc:08x}, expected {} with {expected:08x}",
                a.size
            );
        }
    }
    let size = cairn_common::size::HumanBytes(a.size);
    let mut rows = Vec::new();
    if !put.is_empty() {
        rows.push(Row {
            name: format!("put {size}"),
            unit: "MB/s",
            values: put,
        });
    }
    if !get.is_empty() {
        rows.push(Row {
            name: format!("get {size}"),
            unit: "MB/s",
            values: get,
        });
    }
    Ok(rows)
}

pub async fn bench(client: &Client, a: &BenchArgs) -> CmdResult {
    let mut config = client.config().clone();
    if let Some(p) = a.parallel {
        config.write_parallelism = p.max(1);
    }
    let client = &Client::connect(config).await?;
    let runs = a.runs.max(1);
    let rows = match a.workload {
        Workload::PutGet | Workload::Put | Workload::Get => put_get(client, a, runs).await?,
        Workload::Randwrite => ops::random_writes(client, a, runs).await?,
        Workload::Lock => ops::lock_round_trips(client, a, runs).await?,
    };
    if !a.keep {
        match client.delete(&a.path, true).await {
            Ok(()) => {}
            Err(e) if e.kind() == cairn_client::Kind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    print_rows(&rows, runs, a.json)
}

fn print_rows(rows: &[Row], runs: usize, json: bool) -> CmdResult {
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let (med, min, max) = stats(&r.values);
                serde_json::json!({"figure": r.name, "unit": r.unit, "runs": runs, "median": med, "min": min, "max": max})
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
            "{:<34} {runs:>6} {med:>12.1} {min:>12.1} {max:>12.1} {}",
            r.name, r.unit
        );
    }
    Ok(())
}
