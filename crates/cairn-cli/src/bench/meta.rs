//! Metadata-heavy benchmarks: small files, namespace operations, random reads, and the
//! master's memory per file and per chunk at scale. Work is spread over `--clients`
//! connections, each its own `Client`, so the figures include real round trips.
//!
//! Everything runs under `--path` (a directory) and is removed afterwards unless `--keep`.

use std::time::Instant;

use bytes::Bytes;
use cairn_client::Client;

use super::ops::rate;
use super::{BenchArgs, Row};

/// Size of a small file and of one random read.
const SMALL: usize = 4096;

async fn clients(client: &Client, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(Client::connect(client.config().clone()).await?);
    }
    Ok(out)
}

/// Runs `op(client, index)` for every index in `0..total`, spread over `tasks` concurrent
/// tasks per client, and returns operations per second.
async fn spread<F, Fut>(
    clients: &[Client],
    tasks: usize,
    total: usize,
    op: F,
) -> anyhow::Result<f64>
where
    F: Fn(Client, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let n = clients.len() * tasks.max(1);
    let per = total.div_ceil(n);
    let r = rate(n, per, |i| {
        let (c, op) = (clients[i % clients.len()].clone(), op.clone());
        async move {
            for k in (i * per)..((i + 1) * per).min(total) {
                op(c.clone(), k).await?;
            }
            Ok(())
        }
    })
    .await?;
    // `rate` counts n * per operations; correct for the last task's shorter share.
    Ok(r * total as f64 / (n * per) as f64)
}

/// How a row names its concurrency: clients, and tasks per client when more than one.
fn who(clients: usize, tasks: usize) -> String {
    if tasks > 1 {
        format!("{clients}c x {tasks}t")
    } else {
        format!("{clients}c")
    }
}

fn row(name: String, unit: &'static str, values: Vec<f64>) -> Row {
    Row { name, unit, values }
}

/// Create+write, stat, read and delete of `--files` files of 4 KiB.
pub async fn small_files(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    let cs = clients(client, a.clients).await?;
    let body = Bytes::from(vec![0x5a_u8; SMALL]);
    let (mut create, mut stat, mut read, mut delete) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let dir = format!("{}/small{run}", a.path);
        client.mkdir(&dir, true).await?;
        let name = move |k: usize| format!("{dir}/f{k}");
        let (n, b) = (name.clone(), body.clone());
        create.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let (p, b) = (n(k), b.clone());
                async move { Ok(c.write_all(&p, b, false).await.map(drop)?) }
            })
            .await?,
        );
        let n = name.clone();
        stat.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let p = n(k);
                async move {
                    let attr = c.stat(&p).await?;
                    anyhow::ensure!(attr.size == SMALL as u64, "{p}: size {}", attr.size);
                    Ok(())
                }
            })
            .await?,
        );
        let n = name.clone();
        read.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let p = n(k);
                async move {
                    let data = c.read_all(&p).await?;
                    anyhow::ensure!(data.len() == SMALL && data[0] == 0x5a, "{p}: wrong content");
                    Ok(())
                }
            })
            .await?,
        );
        let n = name.clone();
        delete.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let p = n(k);
                async move { Ok(c.delete(&p, false).await?) }
            })
            .await?,
        );
    }
    let k = who(cs.len(), a.tasks);
    Ok(vec![
        row(format!("small 4KiB create+write, {k}"), "ops/s", create),
        row(format!("small 4KiB stat, {k}"), "ops/s", stat),
        row(format!("small 4KiB read, {k}"), "ops/s", read),
        row(format!("small 4KiB delete, {k}"), "ops/s", delete),
    ])
}

/// mkdir, create, stat and rename of `--files` entries, and a full listing of a directory
/// of `--entries` entries.
pub async fn metadata(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    let cs = clients(client, a.clients).await?;
    let (mut mkdir, mut create, mut stat, mut rename) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let dir = format!("{}/meta{run}", a.path);
        client.mkdir(&dir, true).await?;
        let d = dir.clone();
        mkdir.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let p = format!("{d}/d{k}");
                async move { Ok(c.mkdir(&p, false).await.map(drop)?) }
            })
            .await?,
        );
        let d = dir.clone();
        create.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let p = format!("{d}/f{k}");
                async move { Ok(c.create(&p, false).await.map(drop)?) }
            })
            .await?,
        );
        let d = dir.clone();
        stat.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let p = format!("{d}/f{k}");
                async move { Ok(c.stat(&p).await.map(drop)?) }
            })
            .await?,
        );
        let d = dir.clone();
        rename.push(
            spread(&cs, a.tasks, a.files, move |c, k| {
                let (from, to) = (format!("{d}/f{k}"), format!("{d}/r{k}"));
                async move { Ok(c.rename(&from, &to).await?) }
            })
            .await?,
        );
        client.delete(&dir, true).await?;
    }
    let big = format!("{}/big", a.path);
    client.mkdir(&big, true).await?;
    let b = big.clone();
    spread(&cs, a.tasks, a.entries, move |c, k| {
        let p = format!("{b}/e{k:07}");
        async move { Ok(c.create(&p, false).await.map(drop)?) }
    })
    .await?;
    let mut list = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        let entries = client.list(&big).await?;
        list.push(a.entries as f64 / t.elapsed().as_secs_f64());
        anyhow::ensure!(
            entries.len() == a.entries,
            "listed {} of {} entries",
            entries.len(),
            a.entries
        );
    }
    let k = who(cs.len(), a.tasks);
    Ok(vec![
        row(format!("mkdir, {k}"), "ops/s", mkdir),
        row(format!("create empty, {k}"), "ops/s", create),
        row(format!("stat, {k}"), "ops/s", stat),
        row(format!("rename, {k}"), "ops/s", rename),
        row(
            format!("list a dir of {} entries", a.entries),
            "entries/s",
            list,
        ),
    ])
}

/// 4 KiB reads at random 4 KiB-aligned offsets of a `--size` file, `--ops` per client.
pub async fn random_reads(client: &Client, a: &BenchArgs, runs: usize) -> anyhow::Result<Vec<Row>> {
    let size = a.size.max(SMALL as u64);
    let source = super::make_source(size)?;
    client.put_file(source.path(), &a.path, true).await?;
    let cs = clients(client, a.clients).await?;
    let mut values = Vec::new();
    for run in 0..runs {
        let r = rate(cs.len(), a.ops, |i| {
            let (c, path, ops) = (cs[i].clone(), a.path.clone(), a.ops);
            async move {
                let mut state = (run as u64 + 7) * 0x2545_F491 + i as u64;
                for _ in 0..ops {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let offset = (state % (size / SMALL as u64)) * SMALL as u64;
                    let data = c.read(&path, offset, SMALL as u64).await?;
                    anyhow::ensure!(data.len() == SMALL, "short read at {offset}");
                }
                Ok(())
            }
        })
        .await?;
        values.push(r);
    }
    Ok(vec![row(
        format!("randread 4KiB, {}c", cs.len()),
        "ops/s",
        values,
    )])
}

/// The master's resident memory and, of that, its heap in use (0 if it cannot tell).
#[derive(Clone, Copy)]
struct Memory {
    resident: f64,
    heap: f64,
}

/// Waits `settle` for the master to settle (heartbeat reports processed, transient
/// buffers freed, leases of the phase expired if the master's lease is short) and answers
/// its memory.
async fn settled_memory(client: &Client, settle: std::time::Duration) -> anyhow::Result<Memory> {
    tokio::time::sleep(settle).await;
    let s = client.status().await?;
    Ok(Memory {
        resident: s.master_resident_bytes as f64,
        heap: s.master_heap_bytes as f64,
    })
}

/// The master's memory per chunk and per file, and create and stat rates at scale.
///
/// Chunks come first, on a master that holds little yet: memory freed after the file
/// phase (checkpoint buffers) would otherwise absorb the chunks' growth. Each client
/// writes one byte into each chunk of its own file (no file per chunk, so the figure is
/// the chunk's alone: the namespace's record and slot, and the replica locations of the
/// master's soft state). Start the master with a small `--chunk-size` (64 KiB) so that
/// the chunk servers' disks are not the limit. Then `--files` empty files are created in
/// directories of 1,000 and stat'ed. Resident size is read after a settling pause
/// (`--settle`); with a master started with `--lease 5s` and a settle of 15 s, the chunk
/// figure leaves out write leases, which the master forgets a lease length after they
/// expire. Memory is reported twice: resident (what the operating system charges) and
/// heap in use (live blocks, without the allocator's free memory), as differences.
pub async fn scale(client: &Client, a: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    let cs = clients(client, a.clients).await?;
    let k = who(cs.len(), a.tasks);
    let root = format!("{}/scale", a.path);
    client.mkdir(&root, true).await?;
    let chunk_dir = format!("{root}/chunks");
    client.mkdir(&chunk_dir, false).await?;
    let chunk_size = client.status().await?.chunk_size.max(1);
    let one = Bytes::from_static(b"x");
    // Chunk 0 of every client's file warms connections, leases and buffers.
    for i in 0..cs.len() {
        client
            .write_at(&format!("{chunk_dir}/c{i}"), 0, one.clone())
            .await?;
    }
    let before_chunks = settled_memory(client, a.settle).await?;
    let per = a.chunk_files.div_ceil(cs.len());
    let r = chunk_dir.clone();
    let chunk_rate = spread(&cs, 1, a.chunk_files, move |c, n| {
        let (p, one) = (format!("{r}/c{}", n / per), one.clone());
        let offset = (1 + n % per) as u64 * chunk_size;
        async move { Ok(c.write_at(&p, offset, one).await.map(drop)?) }
    })
    .await?;
    let after_chunks = settled_memory(client, a.settle).await?;

    for d in 0..a.files.div_ceil(1000) {
        client.mkdir(&format!("{root}/d{d}"), false).await?;
    }
    let before_files = settled_memory(client, a.settle).await?;
    let r = root.clone();
    let creates = spread(&cs, a.tasks, a.files, move |c, n| {
        let p = format!("{r}/d{}/f{n}", n / 1000);
        async move { Ok(c.create(&p, false).await.map(drop)?) }
    })
    .await?;
    let after_files = settled_memory(client, a.settle).await?;
    let r = root.clone();
    let stats = spread(&cs, a.tasks, a.files, move |c, n| {
        let p = format!("{r}/d{}/f{n}", n / 1000);
        async move { Ok(c.stat(&p).await.map(drop)?) }
    })
    .await?;
    let (chunks, files) = (a.chunk_files.max(1) as f64, a.files.max(1) as f64);
    let per_chunk = (after_chunks.resident - before_chunks.resident) / chunks;
    let per_file = (after_files.resident - before_files.resident) / files;
    let heap_per_chunk = (after_chunks.heap - before_chunks.heap) / chunks;
    let heap_per_file = (after_files.heap - before_files.heap) / files;
    Ok(vec![
        row(
            format!("chunk writes at {} chunks, {}c", a.chunk_files, cs.len()),
            "ops/s",
            vec![chunk_rate],
        ),
        row(
            format!("create at {} files, {k}", a.files),
            "ops/s",
            vec![creates],
        ),
        row(
            format!("stat at {} files, {k}", a.files),
            "ops/s",
            vec![stats],
        ),
        row("master memory per file".into(), "bytes", vec![per_file]),
        row("master memory per chunk".into(), "bytes", vec![per_chunk]),
        row("master heap per file".into(), "bytes", vec![heap_per_file]),
        row(
            "master heap per chunk".into(),
            "bytes",
            vec![heap_per_chunk],
        ),
        row(
            "master resident after".into(),
            "MB",
            vec![after_files.resident / 1e6],
        ),
    ])
}
