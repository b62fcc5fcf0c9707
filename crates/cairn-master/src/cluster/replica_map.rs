//! Where every replica lives, compactly: the master's largest piece of soft state.
//!
//! Chunk ids are handed out consecutively, so replica sets live in pages of 64 consecutive
//! chunk ids. The common case (1-3 replicas, one version that fits in 32 bits) takes 12
//! bytes per chunk: the version and a 16-bit slot per server, slots being small numbers
//! the map gives the (random 64-bit) server ids it meets. Anything else, e.g. more
//! replicas, replicas at different versions mid version-bump, or a slot past 16 bits,
//! goes whole to a spill map keyed by chunk id, and returns to its page once it fits again.
//! The per-server index is just a count per slot; the rare questions "which chunks does
//! this server hold" (a death, a full report) scan the pages.
//!
//! It must never lose or reorder a replica, whichever form holds it: replicas come back in
//! the order they were first added, at the versions last recorded. It knows nothing of
//! liveness, leases or the scheduler.

use std::collections::{BTreeMap, HashMap};

use super::replicas::{INLINE, Replica, Replicas};
use super::{ChunkId, ServerId};

const PAGE: u64 = 64;

/// The replicas of one chunk in the common case. Slot codes are the server's slot + 1, in
/// the order the replicas were added, 0 after the last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Compact {
    version: u32,
    slots: [u16; INLINE],
}

struct Page {
    /// Which records hold a replica set; a page with none is freed.
    present: u64,
    recs: [Compact; PAGE as usize],
}

/// Small numbers for server ids, and how many chunks each server holds a replica of.
/// Slots are never reused: a server keeps its slot for the master's lifetime (the
/// registry of servers never forgets one either).
#[derive(Default)]
struct Slots {
    by_id: HashMap<ServerId, usize>,
    ids: Vec<ServerId>,
    counts: Vec<usize>,
}

impl Slots {
    fn intern(&mut self, server: ServerId) -> usize {
        *self.by_id.entry(server).or_insert_with(|| {
            self.ids.push(server);
            self.counts.push(0);
            self.ids.len() - 1
        })
    }

    fn count(&self, server: ServerId) -> usize {
        self.by_id.get(&server).map_or(0, |s| self.counts[*s])
    }

    /// One replica of `server` left the map.
    fn release(&mut self, server: ServerId) {
        let slot = self
            .by_id
            .get(&server)
            .expect("a server holding a replica has a slot");
        self.counts[*slot] -= 1;
    }
}

/// The 16-bit code of a slot, if it has one.
fn code(slot: usize) -> Option<u16> {
    slot.checked_add(1).and_then(|c| u16::try_from(c).ok())
}

/// Every chunk's replicas, any version, live or not.
#[derive(Default)]
pub struct ReplicaMap {
    pages: BTreeMap<u64, Box<Page>>,
    /// Replica sets that do not fit a `Compact`; a chunk is here or in a page, never both.
    spill: HashMap<ChunkId, Vec<Replica>>,
    slots: Slots,
}

impl ReplicaMap {
    /// The replicas of `chunk`, in the order they were first added.
    pub fn get(&self, chunk: ChunkId) -> Replicas {
        if let Some(c) = self.compact(chunk) {
            return self.expand(c);
        }
        match self.spill.get(&chunk) {
            Some(v) => Replicas::Heap(v.clone()),
            None => Replicas::default(),
        }
    }

    /// Records that `server` holds `chunk` at `version`, replacing what it held before.
    pub fn add(&mut self, chunk: ChunkId, server: ServerId, version: u64) {
        let mut list = self.get(chunk);
        if list.upsert(server, version) {
            let slot = self.slots.intern(server);
            self.slots.counts[slot] += 1;
        }
        self.store(chunk, list);
    }

    /// Forgets that `server` holds `chunk`; returns whether it did.
    pub fn remove(&mut self, chunk: ChunkId, server: ServerId) -> bool {
        let mut list = self.get(chunk);
        if !list.remove(server) {
            return false;
        }
        self.slots.release(server);
        self.store(chunk, list);
        true
    }

    /// Forgets every replica of `chunk`; returns them.
    pub fn remove_chunk(&mut self, chunk: ChunkId) -> Vec<Replica> {
        let list = self.get(chunk);
        for r in list.iter() {
            self.slots.release(r.server);
        }
        self.store(chunk, Replicas::default());
        list.into()
    }

    /// How many chunks `server` holds a replica of.
    pub fn count(&self, server: ServerId) -> usize {
        self.slots.count(server)
    }

    /// The chunks `server` holds a replica of, ascending. Scans the map unless the server
    /// holds nothing.
    pub fn chunks_of(&self, server: ServerId) -> Vec<ChunkId> {
        let Some(&slot) = self.slots.by_id.get(&server) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.slots.counts[slot]);
        if self.slots.counts[slot] == 0 {
            return out;
        }
        if let Some(code) = code(slot) {
            for (key, page) in &self.pages {
                for i in bits(page.present) {
                    if page.recs[i].slots.contains(&code) {
                        out.push(key * PAGE + i as u64);
                    }
                }
            }
        }
        out.extend(self.spilled_on(server));
        out.sort_unstable();
        out
    }

    /// Forgets every replica `server` holds; returns their chunks, ascending. One pass over
    /// the pages, so a death or a full report at a million chunks stays cheap.
    pub fn remove_server(&mut self, server: ServerId) -> Vec<ChunkId> {
        let Some(&slot) = self.slots.by_id.get(&server) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.slots.counts[slot]);
        if self.slots.counts[slot] == 0 {
            return out;
        }
        if let Some(code) = code(slot) {
            self.pages.retain(|key, page| {
                for i in bits(page.present) {
                    let rec = &mut page.recs[i];
                    let Some(at) = rec.slots.iter().position(|s| *s == code) else {
                        continue;
                    };
                    // Later replicas move up, so the order of the others is kept.
                    rec.slots.copy_within(at + 1.., at);
                    rec.slots[INLINE - 1] = 0;
                    if rec.slots[0] == 0 {
                        page.present &= !(1u64 << i);
                    }
                    out.push(key * PAGE + i as u64);
                }
                page.present != 0
            });
        }
        self.slots.counts[slot] -= out.len();
        let spilled: Vec<ChunkId> = self.spilled_on(server).collect();
        for c in &spilled {
            self.remove(*c, server);
        }
        out.extend(spilled);
        out.sort_unstable();
        debug_assert_eq!(self.slots.counts[slot], 0);
        out
    }

    /// How many chunks have a replica on a server `is_alive` accepts.
    pub fn located(&self, is_alive: impl Fn(ServerId) -> bool) -> usize {
        let alive: Vec<bool> = self.slots.ids.iter().map(|id| is_alive(*id)).collect();
        let compact = self
            .pages
            .values()
            .map(|page| {
                bits(page.present)
                    .filter(|i| {
                        page.recs[*i]
                            .slots
                            .iter()
                            .take_while(|c| **c != 0)
                            .any(|c| alive[*c as usize - 1])
                    })
                    .count()
            })
            .sum::<usize>();
        let spilled = self
            .spill
            .values()
            .filter(|v| v.iter().any(|r| is_alive(r.server)))
            .count();
        compact + spilled
    }

    fn spilled_on(&self, server: ServerId) -> impl Iterator<Item = ChunkId> + '_ {
        self.spill
            .iter()
            .filter(move |(_, v)| v.iter().any(|r| r.server == server))
            .map(|(c, _)| *c)
    }

    fn compact(&self, chunk: ChunkId) -> Option<Compact> {
        let page = self.pages.get(&(chunk / PAGE))?;
        let i = chunk % PAGE;
        (page.present & (1u64 << i) != 0).then(|| page.recs[i as usize])
    }

    fn expand(&self, c: Compact) -> Replicas {
        let mut out = Replicas::default();
        for code in c.slots.iter().take_while(|c| **c != 0) {
            out.push(Replica {
                server: self.slots.ids[*code as usize - 1],
                version: u64::from(c.version),
            });
        }
        out
    }

    /// The compact form of `list`, if it has one. Every server in it has a slot.
    fn pack(&self, list: &[Replica]) -> Option<Compact> {
        let first = list.first()?;
        if list.len() > INLINE || list.iter().any(|r| r.version != first.version) {
            return None;
        }
        let mut c = Compact {
            version: u32::try_from(first.version).ok()?,
            slots: [0; INLINE],
        };
        for (r, to) in list.iter().zip(&mut c.slots) {
            let slot = self
                .slots
                .by_id
                .get(&r.server)
                .expect("a server holding a replica has a slot");
            *to = code(*slot)?;
        }
        Some(c)
    }

    /// Puts `chunk`'s whole replica set where it belongs (nowhere if it is empty).
    fn store(&mut self, chunk: ChunkId, list: Replicas) {
        let key = chunk / PAGE;
        let i = (chunk % PAGE) as usize;
        match self.pack(&list) {
            Some(c) => {
                self.spill.remove(&chunk);
                let page = self.pages.entry(key).or_insert_with(|| {
                    Box::new(Page {
                        present: 0,
                        recs: [Compact::default(); PAGE as usize],
                    })
                });
                page.recs[i] = c;
                page.present |= 1u64 << i;
            }
            None => {
                if let Some(page) = self.pages.get_mut(&key) {
                    page.present &= !(1u64 << i);
                    if page.present == 0 {
                        self.pages.remove(&key);
                    }
                }
                if list.is_empty() {
                    self.spill.remove(&chunk);
                } else {
                    self.spill.insert(chunk, list.into());
                }
            }
        }
    }
}

/// Indices of the set bits of `word`, ascending.
fn bits(mut word: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if word == 0 {
            return None;
        }
        let i = word.trailing_zeros() as usize;
        word &= word - 1;
        Some(i)
    })
}

#[cfg(test)]
#[path = "replica_map_tests.rs"]
mod tests;
