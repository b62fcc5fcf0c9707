//! The request de-duplication table: remembers the result of recently applied requests so
//! that a client's retry is answered, not applied twice.
//!
//! It is part of the replicated state (and of checkpoints), so it is driven only by the
//! command sequence: recency is an apply counter (`tick`), never a clock.
//!
//! Invariants: each client keeps at most [`DEDUP_SEQS_PER_CLIENT`] results, in the order
//! they were applied; at most [`DEDUP_MAX_CLIENTS`] clients are kept; `by_tick` holds
//! exactly one entry per client, keyed by that client's `last_tick`.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{MetaError, MetaResponse, RequestId};

/// Results remembered per client: the most recently applied ones.
pub const DEDUP_SEQS_PER_CLIENT: usize = 128;
/// Clients remembered; the one whose last request was applied longest ago goes first.
pub const DEDUP_MAX_CLIENTS: usize = 10_000;

type Outcome = Result<MetaResponse, MetaError>;

/// Remembered results by client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupTable {
    /// Counts recorded requests; orders clients by recency.
    tick: u64,
    clients: BTreeMap<u64, ClientLog>,
    /// `last_tick -> client_id`, to find the least recent client in O(log n).
    by_tick: BTreeMap<u64, u64>,
}

/// One client's recent results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ClientLog {
    last_tick: u64,
    /// `(seq, result)`, oldest applied first.
    recent: VecDeque<(u64, Outcome)>,
}

impl DedupTable {
    /// The remembered result of `req`, if any.
    pub fn get(&self, req: RequestId) -> Option<&Outcome> {
        let log = self.clients.get(&req.client_id)?;
        log.recent
            .iter()
            .find(|(seq, _)| *seq == req.seq)
            .map(|(_, outcome)| outcome)
    }

    /// Remembers the result of `req`, which was just applied.
    pub fn record(&mut self, req: RequestId, outcome: &Outcome) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(log) = self.clients.get_mut(&req.client_id) {
            self.by_tick.remove(&log.last_tick);
            log.last_tick = tick;
        } else {
            if self.clients.len() >= DEDUP_MAX_CLIENTS
                && let Some((_, oldest)) = self.by_tick.pop_first()
            {
                self.clients.remove(&oldest);
            }
            self.clients.insert(
                req.client_id,
                ClientLog {
                    last_tick: tick,
                    recent: VecDeque::new(),
                },
            );
        }
        self.by_tick.insert(tick, req.client_id);
        let log = self
            .clients
            .get_mut(&req.client_id)
            .expect("inserted or found above");
        if log.recent.len() >= DEDUP_SEQS_PER_CLIENT {
            log.recent.pop_front();
        }
        log.recent.push_back((req.seq, outcome.clone()));
    }

    /// Checks the invariants listed in the module doc.
    pub fn check(&self) -> Result<(), String> {
        if self.clients.len() > DEDUP_MAX_CLIENTS || self.clients.len() != self.by_tick.len() {
            return Err(format!(
                "dedup: {} clients, {} recency entries",
                self.clients.len(),
                self.by_tick.len()
            ));
        }
        for (client, log) in &self.clients {
            if self.by_tick.get(&log.last_tick) != Some(client) || log.last_tick > self.tick {
                return Err(format!("dedup: client {client} has a bad recency entry"));
            }
            if log.recent.is_empty() || log.recent.len() > DEDUP_SEQS_PER_CLIENT {
                return Err(format!(
                    "dedup: client {client} keeps {} results",
                    log.recent.len()
                ));
            }
        }
        Ok(())
    }
}
