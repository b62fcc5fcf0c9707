//! Operation-rate benchmarks: small random writes and lock round trips.

use std::time::Instant;

use bytes::Bytes;
use cairn_client::{Client, LockOptions};

use super::{BenchArgs, Row};

/// Size of one random write.
const WRITE_SIZE: u64 = 4096;

/// Runs `clients` tasks each doing `ops` operations, returns operations per second.
pub(super) async fn rate<F, Fut>(clients: usize, ops: usize, make: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|i| tokio::spawn(make(i))).collect();
    for task in tasks {
        task.await??;
    }
    Ok((clients * ops) as f64 / t.elapsed().as_secs_f64())
}

/// 4 KiB writes at random 4 KiB-aligned offsets of a `--size` file.
pub async fn random_writes(
    client: &Client,
    a: &BenchArgs,
    runs: usize,
) -> anyhow::Result<Vec<Row>> {
    let size = a.size.max(WRITE_SIZE);
    client.create(&a.path, true).await?;
    client.truncate(&a.path, size).await?;
    let mut clients = Vec::new();
    for _ in 0..a.clients.max(1) {
        clients.push(Client::connect(client.config().clone()).await?);
    }
    let mut values = Vec::new();
    for run in 0..runs {
        let r = rate(clients.len(), a.ops, |i| {
            let c = clients[i].clone();
            let (path, ops) = (a.path.clone(), a.ops);
            async move {
                let mut state = (run as u64 + 1) * 0x9E37_79B9 + i as u64;
                let block = Bytes::from(vec![i as u8 + 1; WRITE_SIZE as usize]);
                for _ in 0..ops {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let offset = (state % (size / WRITE_SIZE)) * WRITE_SIZE;
                    c.write_at(&path, offset, block.clone()).await?;
                }
                Ok(())
            }
        })
        .await?;
        values.push(r);
    }
    Ok(vec![Row {
        name: format!("randwrite 4KiB, {} client(s)", clients.len()),
        unit: "ops/s",
        values,
    }])
}

/// Exclusive whole-file lock, then unlock, as fast as possible; each client on its own file
/// (a round trip, not contention).
pub async fn lock_round_trips(
    client: &Client,
    a: &BenchArgs,
    runs: usize,
) -> anyhow::Result<Vec<Row>> {
    client.mkdir(&a.path, true).await?;
    let mut clients = Vec::new();
    for i in 0..a.clients.max(1) {
        let c = Client::connect(client.config().clone()).await?;
        c.create(&format!("{}/lock{i}", a.path), true).await?;
        c.session().await?;
        clients.push(c);
    }
    let mut values = Vec::new();
    for _ in 0..runs {
        let r = rate(clients.len(), a.ops, |i| {
            let c = clients[i].clone();
            let (path, ops) = (format!("{}/lock{i}", a.path), a.ops);
            async move {
                let opts = LockOptions::exclusive();
                for _ in 0..ops {
                    c.lock(&path, &opts, |_| {}).await?;
                    c.unlock(&path, &opts).await?;
                }
                Ok(())
            }
        })
        .await?;
        values.push(r);
    }
    for c in &clients {
        c.close_session().await?;
    }
    Ok(vec![Row {
        name: format!("lock+unlock, {} client(s)", clients.len()),
        unit: "round trips/s",
        values,
    }])
}
