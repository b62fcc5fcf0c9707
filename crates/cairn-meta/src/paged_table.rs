//! Tables keyed by counter-allocated ids (the inode table, the chunk table), in pages of
//! consecutive ids.
//!
//! Why not a `BTreeMap<u64, V>`: ids are handed out consecutively, so a B-tree keyed by
//! them spends ~60 % on top of the value itself (keys, half-full nodes after in-order
//! splits). A page holds 64 consecutive ids in place, so a densely used id range costs the
//! value and nothing more (values are chosen so that `Option<V>` needs no tag of its own);
//! a page goes as soon as its last value does. The worst case, one survivor per page,
//! costs 64 slots for that value.
//!
//! Behaves as an ordered map (iteration in id order) and serializes exactly like the
//! `BTreeMap<u64, V>` it replaced, so checkpoints written before it still load. It must
//! never serialize anything but that map.
//!
//! Invariants: `len` is the number of `Some` slots over all pages; no page is empty.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::chunks::ChunkRec;
use crate::node::Inode;

/// Inodes by id.
pub(crate) type InodeTable = PagedTable<Inode>;
/// Chunk records by chunk id.
pub(crate) type ChunkTable = PagedTable<ChunkRec>;

const PAGE_BITS: u32 = 6;
const PAGE: usize = 1 << PAGE_BITS;

#[derive(Clone, PartialEq, Eq)]
struct Page<V> {
    live: u32,
    slots: Box<[Option<V>]>,
}

impl<V> Page<V> {
    fn new() -> Page<V> {
        Page {
            live: 0,
            slots: (0..PAGE).map(|_| None).collect(),
        }
    }
}

fn split(id: u64) -> (u64, usize) {
    (id >> PAGE_BITS, (id & (PAGE as u64 - 1)) as usize)
}

/// Values by id.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PagedTable<V> {
    pages: BTreeMap<u64, Page<V>>,
    len: usize,
}

impl<V> Default for PagedTable<V> {
    fn default() -> Self {
        PagedTable {
            pages: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<V> PagedTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: &u64) -> Option<&V> {
        let (p, i) = split(*id);
        self.pages.get(&p)?.slots[i].as_ref()
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        let (p, i) = split(*id);
        self.pages.get_mut(&p)?.slots[i].as_mut()
    }

    pub fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    /// Puts `value` at `id`; answers the value it replaced.
    pub fn insert(&mut self, id: u64, value: V) -> Option<V> {
        let (p, i) = split(id);
        let page = self.pages.entry(p).or_insert_with(Page::new);
        let old = page.slots[i].replace(value);
        if old.is_none() {
            page.live += 1;
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, id: &u64) -> Option<V> {
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

    /// Every value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.pages.iter().flat_map(|(&p, page)| {
            page.slots
                .iter()
                .enumerate()
                .filter_map(move |(i, s)| s.as_ref().map(|n| ((p << PAGE_BITS) | i as u64, n)))
        })
    }
}

impl<V: fmt::Debug> fmt::Debug for PagedTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for PagedTable<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len))?;
        for (id, n) in self.iter() {
            m.serialize_entry(&id, n)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for PagedTable<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = PagedTable<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of id to record")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<PagedTable<V>, A::Error> {
                let mut t = PagedTable::default();
                while let Some((id, v)) = a.next_entry::<u64, V>()? {
                    if t.insert(id, v).is_some() {
                        return Err(serde::de::Error::custom(format!("id {id} twice")));
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InodeId;

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

    #[test]
    fn chunk_records_cost_24_bytes_and_serialize_as_chunk_meta() {
        assert_eq!(std::mem::size_of::<Option<ChunkRec>>(), 24);
        let mut t = ChunkTable::default();
        let mut m = BTreeMap::new();
        for id in [1u64, 2, 64, 1000] {
            let rec = ChunkRec {
                inode: std::num::NonZeroU64::new(id + 1).expect("not 0"),
                index: id * 3,
                version: 7,
            };
            t.insert(id, rec);
            m.insert(id, rec.meta());
        }
        let a = postcard::to_allocvec(&t).expect("encode");
        assert_eq!(a, postcard::to_allocvec(&m).expect("encode"));
        let back: ChunkTable = postcard::from_bytes(&a).expect("decode");
        assert!(back == t);
        m.insert(
            5,
            crate::ChunkMeta {
                inode: 0,
                index: 0,
                version: 1,
            },
        );
        let bad = postcard::to_allocvec(&m).expect("encode");
        assert!(
            postcard::from_bytes::<ChunkTable>(&bad).is_err(),
            "inode 0 is refused"
        );
    }
}
