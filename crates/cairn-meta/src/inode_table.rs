//! The inode table: every inode by id, in pages of consecutive ids.
//!
//! Why not a `BTreeMap<InodeId, Inode>`: ids are handed out consecutively, so a B-tree
//! keyed by them spends ~60 % on top of the inode itself (keys, half-full nodes after
//! in-order splits). A page holds 64 consecutive ids in place, so a densely used id range
//! costs the inode and nothing more; a page goes as soon as its last inode does. The worst
//! case, one survivor per page, costs 64 slots for that inode.
//!
//! Behaves as an ordered map (iteration in id order) and serializes exactly like
//! `BTreeMap<InodeId, Inode>` did, so checkpoints written before it still load.
//!
//! Invariants: `len` is the number of `Some` slots over all pages; no page is empty.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::InodeId;
use crate::node::Inode;

const PAGE_BITS: u32 = 6;
const PAGE: usize = 1 << PAGE_BITS;

#[derive(Clone, PartialEq, Eq)]
struct Page {
    live: u32,
    slots: Box<[Option<Inode>]>,
}

impl Page {
    fn new() -> Page {
        Page {
            live: 0,
            slots: (0..PAGE).map(|_| None).collect(),
        }
    }
}

fn split(id: InodeId) -> (u64, usize) {
    (id >> PAGE_BITS, (id & (PAGE as u64 - 1)) as usize)
}

/// Inodes by id.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct InodeTable {
    pages: BTreeMap<u64, Page>,
    len: usize,
}

impl InodeTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: &InodeId) -> Option<&Inode> {
        let (p, i) = split(*id);
        self.pages.get(&p)?.slots[i].as_ref()
    }

    pub fn get_mut(&mut self, id: &InodeId) -> Option<&mut Inode> {
        let (p, i) = split(*id);
        self.pages.get_mut(&p)?.slots[i].as_mut()
    }

    pub fn contains_key(&self, id: &InodeId) -> bool {
        self.get(id).is_some()
    }

    /// Puts `inode` at `id`; answers the inode it replaced.
    pub fn insert(&mut self, id: InodeId, inode: Inode) -> Option<Inode> {
        let (p, i) = split(id);
        let page = self.pages.entry(p).or_insert_with(Page::new);
        let old = page.slots[i].replace(inode);
        if old.is_none() {
            page.live += 1;
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, id: &InodeId) -> Option<Inode> {
        let (p, i) = split(*id);
        let page = self.pages.get_mut(&p)?;
        let old = page.slots[i].take()?;
        page.live -= 1;
        self.len -= 1;
        if page.live == 0 {
            self.pages.remove(&p);
        }
        Some(old)
    }

    /// Every inode, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (InodeId, &Inode)> + '_ {
        self.pages.iter().flat_map(|(&p, page)| {
            page.slots
                .iter()
                .enumerate()
                .filter_map(move |(i, s)| s.as_ref().map(|n| ((p << PAGE_BITS) | i as u64, n)))
        })
    }
}

impl fmt::Debug for InodeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for InodeTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len))?;
        for (id, n) in self.iter() {
            m.serialize_entry(&id, n)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for InodeTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InodeTable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of inode id to inode")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<InodeTable, A::Error> {
                let mut t = InodeTable::default();
                while let Some((id, n)) = a.next_entry::<InodeId, Inode>()? {
                    if t.insert(id, n).is_some() {
                        return Err(serde::de::Error::custom(format!("inode {id} twice")));
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(parent: InodeId) -> Inode {
        Inode::new_file(parent, 0o644, 0, 0, 3, 7)
    }

    #[test]
    fn behaves_as_an_ordered_map_and_frees_empty_pages() {
        let mut t = InodeTable::default();
        let ids = [1u64, 2, 63, 64, 65, 1000, 1 << 40];
        for &id in &ids {
            assert!(t.insert(id, file(id)).is_none());
        }
        assert!(
            t.insert(64, file(9)).is_some(),
            "a replacement is not a new inode"
        );
        assert_eq!(t.len(), ids.len());
        assert_eq!(t.iter().map(|(id, _)| id).collect::<Vec<_>>(), ids);
        assert_eq!(t.get(&64).map(|n| n.parent), Some(9));
        assert!(t.get(&3).is_none() && !t.contains_key(&66));
        t.get_mut(&1000).expect("present").mode = 0o600;
        assert_eq!(t.get(&1000).map(|n| n.mode), Some(0o600));
        assert!(t.remove(&1000).is_some() && t.remove(&1000).is_none());
        assert!(
            !t.pages.contains_key(&(1000 >> PAGE_BITS)),
            "its page held only it"
        );
        for id in ids {
            t.remove(&id);
        }
        assert!(t.is_empty() && t.pages.is_empty());
    }

    #[test]
    fn serializes_like_the_btreemap_it_replaced() {
        let mut t = InodeTable::default();
        let mut m = BTreeMap::new();
        for id in [1u64, 5, 70, 300] {
            t.insert(id, file(id));
            m.insert(id, file(id));
        }
        let a = postcard::to_allocvec(&t).expect("encode");
        assert_eq!(a, postcard::to_allocvec(&m).expect("encode"));
        let back: InodeTable = postcard::from_bytes(&a).expect("decode");
        assert!(back == t);
    }
}
