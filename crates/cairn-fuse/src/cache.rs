//! The mount's own metadata cache: attributes by inode, directory entries by
//! `(parent, name)`, extended attribute values, and whole-directory listings.
//!
//! Everything expires after a short, configurable time (the same timeouts the kernel is
//! given), so another mount's changes show within that time; this mount's own changes
//! update or drop the affected records at once. The kernel keeps its own caches too: this
//! one answers what the kernel forgot (after `drop_caches`, or a lookup after a
//! `readdirplus`) without a round trip.
//!
//! Listing prefetch: when lookups keep missing in one directory (a scan of `stat`s, `ls -l`
//! after a cold start), the mount reads the whole directory with attributes in pages, which
//! costs one round trip per thousand entries instead of one per entry; while that listing
//! is fresh, a name absent from it is answered `ENOENT` locally.
//!
//! Invariants: a record is served only while younger than its timeout; every map is
//! bounded (`MAX_RECORDS`), expired records being dropped first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::Node;

/// Most records one map keeps.
const MAX_RECORDS: usize = 1 << 20;
/// Lookup misses in one directory (within one entry timeout) that trigger a listing.
const MISSES_BEFORE_LISTING: u32 = 4;
/// Largest directory (entries) the mount lists whole to answer lookups.
pub const MAX_LISTED_DIR: u64 = 100_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A map whose records expire.
struct Timed<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Timed<K, V> {
    fn new(ttl: Duration) -> Self {
        Timed {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = lock(&self.map);
        let (v, at) = map.get(k)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    /// Inserts a record; true if fresh records had to be dropped to make room.
    fn put(&self, k: K, v: V) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut map = lock(&self.map);
        let mut dropped_fresh = false;
        if map.len() >= MAX_RECORDS {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= MAX_RECORDS {
                map.clear();
                dropped_fresh = true;
            }
        }
        map.insert(k, (v, Instant::now()));
        dropped_fresh
    }

    /// Changes a fresh record in place without renewing its age (so a record another
    /// mount may have outdated still expires on time); `f` answering false, or a missing
    /// or expired record, drops it. True if the record was kept.
    fn update(&self, k: &K, f: impl FnOnce(&mut V) -> bool) -> bool {
        let mut map = lock(&self.map);
        let kept = match map.get_mut(k) {
            Some((v, at)) if at.elapsed() < self.ttl => f(v),
            _ => false,
        };
        if !kept {
            map.remove(k);
        }
        kept
    }

    fn remove(&self, k: &K) {
        lock(&self.map).remove(k);
    }

    fn retain(&self, f: impl Fn(&K) -> bool) {
        lock(&self.map).retain(|k, _| f(k));
    }
}

/// How lookups in one directory have gone lately.
#[derive(Clone, Copy, Debug)]
struct DirScan {
    misses: u32,
    since: Instant,
    /// When the whole directory was last listed into the cache.
    listed: Option<Instant>,
}

/// Attribute, entry and extended attribute caches of one mount.
pub struct Cache {
    attrs: Timed<u64, Node>,
    entries: Timed<(u64, String), u64>,
    xattrs: Timed<(u64, String), Option<Bytes>>,
    /// Inodes known to hold no extended attribute at all (files this mount just
    /// created), so every name reads as absent without a round trip.
    bare: Timed<u64, ()>,
    scans: Mutex<HashMap<u64, DirScan>>,
    entry_ttl: Duration,
}

impl Cache {
    pub fn new(attr_ttl: Duration, entry_ttl: Duration) -> Cache {
        Cache {
            attrs: Timed::new(attr_ttl),
            entries: Timed::new(entry_ttl),
            xattrs: Timed::new(attr_ttl),
            bare: Timed::new(attr_ttl),
            scans: Mutex::new(HashMap::new()),
            entry_ttl,
        }
    }

    pub fn attr(&self, ino: u64) -> Option<Node> {
        self.attrs.get(&ino)
    }

    pub fn put_attr(&self, node: &Node) {
        self.attrs.put(node.attr.inode, node.clone());
    }

    /// Applies a change this mount made to the cached attributes of `ino` in place
    /// (`f` answering false drops them); true if they stay cached.
    pub fn update_attr(&self, ino: u64, f: impl FnOnce(&mut Node) -> bool) -> bool {
        self.attrs.update(&ino, f)
    }

    pub fn forget_attr(&self, ino: u64) {
        self.attrs.remove(&ino);
    }

    /// The inode `name` names in `parent`, if cached.
    pub fn entry(&self, parent: u64, name: &str) -> Option<u64> {
        self.entries.get(&(parent, name.to_string()))
    }

    /// Caches `parent/name -> node` and the node's attributes.
    pub fn put_entry(&self, parent: u64, name: &str, node: &Node) {
        if self
            .entries
            .put((parent, name.to_string()), node.attr.inode)
        {
            // Fresh entries were dropped: no cached listing is complete any more.
            lock(&self.scans).clear();
        }
        self.put_attr(node);
    }

    /// Mirrors a rename this mount made when the names it needs are cached: the entry
    /// moves (for an exchange, the two swap), so a complete listing of either directory
    /// stays complete. False if it could not be mirrored; the caller forgets instead.
    pub fn move_entry(&self, from: (u64, &str), to: (u64, &str), exchange: bool) -> bool {
        let Some(moved) = self.entry(from.0, from.1) else {
            return false;
        };
        let from_key = (from.0, from.1.to_string());
        if exchange {
            let Some(other) = self.entry(to.0, to.1) else {
                return false;
            };
            self.put_ino(from_key, other);
        } else {
            self.entries.remove(&from_key);
        }
        self.put_ino((to.0, to.1.to_string()), moved);
        true
    }

    fn put_ino(&self, key: (u64, String), ino: u64) {
        if self.entries.put(key, ino) {
            lock(&self.scans).clear();
        }
    }

    pub fn forget_entry(&self, parent: u64, name: &str) {
        self.entries.remove(&(parent, name.to_string()));
    }

    pub fn xattr(&self, ino: u64, name: &str) -> Option<Option<Bytes>> {
        if let Some(v) = self.xattrs.get(&(ino, name.to_string())) {
            return Some(v);
        }
        self.bare.get(&ino).map(|()| None)
    }

    /// Records that `ino` holds no extended attribute (it was just created here).
    pub fn put_no_xattrs(&self, ino: u64) {
        self.bare.put(ino, ());
    }

    pub fn put_xattr(&self, ino: u64, name: &str, value: Option<Bytes>) {
        self.xattrs.put((ino, name.to_string()), value);
    }

    /// Drops every cached extended attribute of `ino`.
    pub fn forget_xattrs(&self, ino: u64) {
        self.bare.remove(&ino);
        self.xattrs.retain(|(i, _)| *i != ino);
    }

    /// Counts a lookup miss in `parent`; true when the directory should now be listed.
    pub fn note_miss(&self, parent: u64) -> bool {
        let mut scans = lock(&self.scans);
        if scans.len() >= MAX_RECORDS {
            scans.clear();
        }
        let now = Instant::now();
        let s = scans.entry(parent).or_insert(DirScan {
            misses: 0,
            since: now,
            listed: None,
        });
        if now.duration_since(s.since) >= self.entry_ttl {
            s.misses = 0;
            s.since = now;
        }
        s.misses += 1;
        s.misses >= MISSES_BEFORE_LISTING && s.listed.is_none_or(|t| t.elapsed() >= self.entry_ttl)
    }

    /// Records that every entry of `parent` was cached by a listing that started at
    /// `started`. The listing counts from its start, so it expires no later than the
    /// oldest entry it put: a name it found is never answered `ENOENT` from it.
    pub fn set_listed(&self, parent: u64, started: Instant) {
        if let Some(s) = lock(&self.scans).get_mut(&parent) {
            s.listed = Some(started);
        }
    }

    /// Whether a fresh, complete listing of `parent` is cached (so a name missing from the
    /// entry cache does not exist).
    pub fn listed(&self, parent: u64) -> bool {
        lock(&self.scans)
            .get(&parent)
            .and_then(|s| s.listed)
            .is_some_and(|t| t.elapsed() < self.entry_ttl)
    }

    /// Forgets that `parent` was listed whole (a change this mount cannot mirror exactly).
    pub fn unlist(&self, parent: u64) {
        if let Some(s) = lock(&self.scans).get_mut(&parent) {
            s.listed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_client::{Attr, FileType};

    fn node(inode: u64) -> Node {
        Node {
            attr: Attr {
                inode,
                file_type: FileType::File,
                size: 0,
                mode: 0o644,
                uid: 0,
                gid: 0,
                atime_ns: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                nlink: 1,
                goal: 1,
                chunk_count: 0,
            },
            special: None,
            rdev: 0,
        }
    }

    #[test]
    fn a_listing_never_outlives_the_entries_it_put() {
        let ttl = Duration::from_millis(200);
        let cache = Cache::new(ttl, ttl);
        while !cache.note_miss(1) {}
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        cache.put_entry(1, "a", &node(5));
        cache.set_listed(1, started);
        assert!(cache.listed(1) && cache.entry(1, "a") == Some(5));
        // Whenever the entry is gone, so is the listing: "a" is never answered ENOENT.
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.entry(1, "a").is_some() {
            assert!(Instant::now() < deadline, "entry never expired");
            std::thread::yield_now();
        }
        assert!(!cache.listed(1), "listing outlived an entry it put");
        cache.unlist(1);
        assert!(!cache.listed(1));
    }

    #[test]
    fn a_mirrored_rename_moves_or_swaps_entries_and_keeps_listings() {
        let ttl = Duration::from_secs(60);
        let cache = Cache::new(ttl, ttl);
        while !cache.note_miss(1) {}
        cache.put_entry(1, "a", &node(5));
        cache.put_entry(1, "b", &node(6));
        cache.set_listed(1, Instant::now());
        assert!(cache.move_entry((1, "a"), (2, "c"), false));
        assert_eq!(cache.entry(1, "a"), None);
        assert_eq!(cache.entry(2, "c"), Some(5));
        assert!(cache.listed(1), "a mirrored rename kept the listing");
        assert!(cache.move_entry((1, "b"), (2, "c"), true));
        assert_eq!(
            (cache.entry(1, "b"), cache.entry(2, "c")),
            (Some(5), Some(6))
        );
        // What is not cached cannot be mirrored: the caller must forget instead.
        assert!(!cache.move_entry((1, "zz"), (1, "y"), false));
        assert!(!cache.move_entry((1, "b"), (1, "unknown"), true));
        assert_eq!(
            cache.entry(1, "b"),
            Some(5),
            "a refused exchange changed nothing"
        );
    }
}
