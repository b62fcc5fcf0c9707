//! A directory's entries: an ordered map of name -> inode kept as sorted blocks.
//!
//! Why not a `BTreeMap<CompactString, InodeId>`: its nodes end up half full after the
//! in-order inserts typical of directories (`f0000001`, `f0000002`, ...), so an entry cost
//! 45-65 bytes. Here entries sit in a vector of blocks, each a sorted vector of at most
//! [`BLOCK`] entries; an insert at the end of a full block starts a new block instead of
//! splitting it, so in-order inserts leave every block full and an entry costs its 32
//! bytes. An insert in the middle of a full block splits it in two; a block that runs low
//! merges with a neighbour, an empty one goes. An empty directory allocates nothing, and
//! the whole map is one pointer inside the inode.
//!
//! Names are ordered by bytes, as listings return them. It serializes exactly like the
//! `BTreeMap` it replaced (a map of name to inode in name order); it must never write its
//! block layout into a checkpoint.
//!
//! Invariants: no block is empty; names strictly increase along the blocks and within each
//! block; `len` is the sum of the block lengths; `inner` is `None` exactly when empty.

use std::fmt;

use compact_str::CompactString;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::InodeId;

/// Most entries a block holds (4 KiB of entries).
const BLOCK: usize = 128;

type Entry = (CompactString, InodeId);

#[derive(Clone)]
struct Blocks {
    len: usize,
    blocks: Vec<Vec<Entry>>,
}

/// Entries of one directory by name.
#[derive(Clone, Default)]
pub(crate) struct DirEntries {
    inner: Option<Box<Blocks>>,
}

/// Makes room for one more entry in `block`, growing by a quarter (not the usual double)
/// and never past [`BLOCK`]: capacity is what the memory budget pays for, and blocks
/// filled out of order sit at 50-100 % of [`BLOCK`] entries.
fn make_room(block: &mut Vec<Entry>) {
    if block.len() == block.capacity() {
        let extra = (block.len() / 4).max(4).min(BLOCK - block.len());
        block.reserve_exact(extra);
    }
}

impl Blocks {
    /// The block that holds `name` or would hold it, and the position within it.
    fn locate(&self, name: &str) -> (usize, Result<usize, usize>) {
        let b = self
            .blocks
            .partition_point(|blk| blk[0].0.as_str() <= name)
            .saturating_sub(1);
        let pos = self.blocks[b].binary_search_by(|(k, _)| k.as_str().cmp(name));
        (b, pos)
    }
}

impl DirEntries {
    fn blocks(&self) -> &[Vec<Entry>] {
        self.inner.as_ref().map_or(&[], |b| &b.blocks)
    }

    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |b| b.len)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    pub fn get(&self, name: &str) -> Option<&InodeId> {
        let inner = self.inner.as_ref()?;
        let (b, pos) = inner.locate(name);
        pos.ok().map(|i| &inner.blocks[b][i].1)
    }

    /// Puts `name -> id`; answers the inode `name` named before, if any.
    pub fn insert(&mut self, name: CompactString, id: InodeId) -> Option<InodeId> {
        let Some(inner) = self.inner.as_mut() else {
            self.inner = Some(Box::new(Blocks {
                len: 1,
                blocks: vec![vec![(name, id)]],
            }));
            return None;
        };
        let (b, pos) = inner.locate(&name);
        let pos = match pos {
            Ok(i) => return Some(std::mem::replace(&mut inner.blocks[b][i].1, id)),
            Err(i) => i,
        };
        inner.len += 1;
        let next_has_room = inner.blocks.get(b + 1).is_some_and(|n| n.len() < BLOCK);
        let block = &mut inner.blocks[b];
        if block.len() < BLOCK {
            make_room(block);
            block.insert(pos, (name, id));
        } else if pos == BLOCK && next_has_room {
            // Descending inserts into a gap between two blocks: grow the next one forward
            // rather than start a block per name.
            let next = &mut inner.blocks[b + 1];
            make_room(next);
            next.insert(0, (name, id));
        } else if pos == BLOCK || pos == 0 {
            // In-order inserts land here: start a new block, keep this one full.
            let mut fresh = Vec::with_capacity(4);
            fresh.push((name, id));
            inner.blocks.insert(if pos == 0 { b } else { b + 1 }, fresh);
        } else {
            let mut right = Vec::with_capacity(BLOCK / 2 + BLOCK / 8);
            right.extend(block.drain(BLOCK / 2..));
            block.shrink_to(BLOCK / 2 + BLOCK / 8);
            if pos <= BLOCK / 2 {
                block.insert(pos, (name, id));
            } else {
                right.insert(pos - BLOCK / 2, (name, id));
            }
            inner.blocks.insert(b + 1, right);
        }
        None
    }

    /// Removes `name`; answers the inode it named.
    pub fn remove(&mut self, name: &str) -> Option<InodeId> {
        let inner = self.inner.as_mut()?;
        let (b, pos) = inner.locate(name);
        let (_, id) = inner.blocks[b].remove(pos.ok()?);
        inner.len -= 1;
        if inner.len == 0 {
            self.inner = None;
            return Some(id);
        }
        let blocks = &mut inner.blocks;
        if blocks[b].is_empty() {
            blocks.remove(b);
        } else if blocks[b].len() < BLOCK / 4 {
            // Merge a sparse block into a neighbour that has room, so that deletions do
            // not leave a long run of nearly empty blocks.
            let into = if b > 0 && blocks[b - 1].len() + blocks[b].len() <= BLOCK {
                Some(b - 1)
            } else if b + 1 < blocks.len() && blocks[b].len() + blocks[b + 1].len() <= BLOCK {
                Some(b)
            } else {
                None
            };
            if let Some(left) = into {
                let moved = blocks.remove(left + 1);
                blocks[left].reserve_exact(moved.len());
                blocks[left].extend(moved);
            }
        }
        let b = b.min(blocks.len() - 1);
        if blocks[b].capacity() > 2 * blocks[b].len() + 8 {
            blocks[b].shrink_to_fit();
        }
        if blocks.capacity() > 2 * blocks.len() + 8 {
            blocks.shrink_to_fit();
        }
        Some(id)
    }

    /// Every entry in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&CompactString, &InodeId)> + '_ {
        self.blocks().iter().flatten().map(|(k, v)| (k, v))
    }

    /// The entries whose names sort after `name`, in name order.
    pub fn after<'a>(
        &'a self,
        name: &str,
    ) -> impl Iterator<Item = (&'a CompactString, &'a InodeId)> + 'a {
        let blocks = self.blocks();
        let (b, pos) = match &self.inner {
            None => (0, 0),
            Some(inner) => {
                let (b, _) = inner.locate(name);
                (b, blocks[b].partition_point(|(k, _)| k.as_str() <= name))
            }
        };
        let first: &[Entry] = blocks.get(b).map_or(&[], |blk| &blk[pos..]);
        let rest: &[Vec<Entry>] = blocks.get(b + 1..).unwrap_or(&[]);
        first
            .iter()
            .chain(rest.iter().flatten())
            .map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &InodeId> + '_ {
        self.iter().map(|(_, v)| v)
    }

    pub fn into_values(self) -> impl Iterator<Item = InodeId> {
        self.inner
            .map(|b| b.blocks)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
    }
}

impl<'a> IntoIterator for &'a DirEntries {
    type Item = (&'a CompactString, &'a InodeId);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Equal when the entries are; block boundaries depend on history, not on contents.
impl PartialEq for DirEntries {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for DirEntries {}

impl fmt::Debug for DirEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for DirEntries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (name, id) in self.iter() {
            m.serialize_entry(name, id)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for DirEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DirEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of name to inode id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<DirEntries, A::Error> {
                let mut entries = DirEntries::default();
                while let Some((name, id)) = a.next_entry::<CompactString, InodeId>()? {
                    if entries.insert(name, id).is_some() {
                        return Err(serde::de::Error::custom("a name twice in a directory"));
                    }
                }
                Ok(entries)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn name(i: u32) -> CompactString {
        CompactString::from(format!("f{i:07}"))
    }

    /// Checks the module invariants.
    fn check(e: &DirEntries) {
        let Some(inner) = &e.inner else {
            return;
        };
        assert!(
            inner
                .blocks
                .iter()
                .all(|b| !b.is_empty() && b.len() <= BLOCK)
        );
        assert_eq!(inner.len, inner.blocks.iter().map(Vec::len).sum::<usize>());
        let names: Vec<_> = e.iter().map(|(k, _)| k).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted");
    }

    #[test]
    fn in_order_inserts_fill_every_block() {
        let mut e = DirEntries::default();
        for i in 0..1000 {
            assert_eq!(e.insert(name(i), u64::from(i) + 2), None);
        }
        check(&e);
        let inner = e.inner.as_ref().expect("not empty");
        assert_eq!(inner.blocks.len(), 1000usize.div_ceil(BLOCK));
        assert!(
            inner.blocks[..7]
                .iter()
                .all(|b| b.len() == BLOCK && b.capacity() == BLOCK)
        );
        // Reverse order too: each new block goes in front.
        let mut r = DirEntries::default();
        for i in (0..1000).rev() {
            r.insert(name(i), u64::from(i) + 2);
        }
        check(&r);
        assert_eq!(r, e);
        assert_eq!(r.inner.as_ref().map(|i| i.blocks.len()), Some(8));
    }

    #[test]
    fn behaves_as_the_btreemap_it_replaced() {
        let mut e = DirEntries::default();
        let mut m = BTreeMap::new();
        // A fixed pseudo-random order that splits blocks in the middle.
        for k in 0..3000u32 {
            let i = (k * 7919) % 3001;
            assert_eq!(
                e.insert(name(i), u64::from(k)),
                m.insert(name(i), u64::from(k))
            );
        }
        assert_eq!(e.insert(name(5), 1), m.insert(name(5), 1), "replace");
        check(&e);
        assert_eq!(e.len(), m.len());
        assert!(e.iter().eq(m.iter()));
        assert_eq!(e.get("f0000005"), Some(&1));
        assert_eq!(e.get("f"), None);
        assert_eq!(e.get("g"), None);
        let a = postcard::to_allocvec(&e).expect("encode");
        assert_eq!(a, postcard::to_allocvec(&m).expect("encode"));
        let back: DirEntries = postcard::from_bytes(&a).expect("decode");
        assert!(back == e);
        check(&back);
        // Removing most entries merges blocks; removing all frees everything.
        for k in 0..2900u32 {
            let i = (k * 31) % 3001;
            assert_eq!(e.remove(name(i).as_str()), m.remove(&name(i)));
            if k % 97 == 0 {
                check(&e);
            }
        }
        check(&e);
        assert!(e.iter().eq(m.iter()));
        let blocks = e.inner.as_ref().map_or(0, |i| i.blocks.len());
        assert!(blocks <= 2 * e.len().div_ceil(BLOCK / 4), "{blocks} blocks");
        for k in 0..3001 {
            e.remove(name(k).as_str());
        }
        assert!(e.is_empty() && e.inner.is_none() && e.iter().next().is_none());
        assert_eq!(e.remove("x"), None);
    }

    #[test]
    fn lists_from_any_name() {
        let mut e = DirEntries::default();
        for i in (0..600).step_by(2) {
            e.insert(name(i), u64::from(i));
        }
        let from = |s: &str| e.after(s).map(|(_, &v)| v).take(3).collect::<Vec<_>>();
        assert_eq!(from(""), [0, 2, 4]);
        assert_eq!(
            from("f0000255"),
            [256, 258, 260],
            "from a name in the middle"
        );
        assert_eq!(from("f0000256"), [258, 260, 262], "strictly after");
        assert_eq!(from("f0000253"), [254, 256, 258], "across a block boundary");
        assert_eq!(from("f0000598"), [] as [u64; 0]);
        assert_eq!(from("zzz"), [] as [u64; 0]);
        assert_eq!(e.after("f0000127").count(), 300 - 64);
        assert_eq!(DirEntries::default().after("a").count(), 0);
        let values: Vec<_> = e.clone().into_values().collect();
        assert_eq!(values, e.values().copied().collect::<Vec<_>>());
        assert_eq!(values.len(), 300);
    }

    #[test]
    fn names_are_byte_ordered() {
        let mut e = DirEntries::default();
        for n in ["b", "a", "B", "é", "a0", "~"] {
            e.insert(n.into(), 1);
        }
        let names: Vec<_> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["B", "a", "a0", "b", "~", "é"]);
    }
}
