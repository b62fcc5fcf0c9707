//! A file's chunk slots (and its replication goal) in 16 bytes.
//!
//! Most files have no chunk or one chunk in slot 0, so those cases live inline: a file
//! pays nothing beyond its inode for them. Files with more chunks keep one boxed
//! allocation: dense (a chunk id per slot, 0 = hole) while at least half the slots are
//! allocated, sparse (sorted `(index, chunk)` pairs) otherwise, so a far-out write costs
//! one entry, never a run of holes. The goal rides in the enum's spare bytes, which is
//! what keeps the inode at 72 bytes.
//!
//! The representation is canonical (a function of the set of slots alone, see
//! [`FileSlots::from_sorted`]), so equal contents are equal values whatever the history.
//! Serialization is the file body's business (`node.rs`): it must always write the old
//! `Vec<Slot>` of allocated slots in index order, never this layout.
//!
//! Invariants: chunk ids are never 0; indices strictly increase along iteration; a dense
//! vector's last element is not 0 and its `count` is its number of non-zero elements.

use std::num::NonZeroU64;

use crate::ChunkId;
use crate::node::Slot;

/// The allocated slots of a file plus its goal.
#[derive(Clone, Debug)]
pub(crate) struct FileSlots(Repr);

#[derive(Clone, Debug)]
enum Repr {
    Empty {
        goal: u8,
    },
    /// Slot 0 allocated, nothing else.
    First {
        goal: u8,
        chunk: NonZeroU64,
    },
    Many {
        goal: u8,
        many: Box<Many>,
    },
}

#[derive(Clone, Debug)]
enum Many {
    /// `ids[i]` fills slot `i`; 0 = hole.
    Dense { count: usize, ids: Vec<ChunkId> },
    /// Sorted by index.
    Sparse(Vec<Slot>),
}

/// Whether `count` slots spread over `slot_count` slots are kept dense: then a slot costs
/// 8 bytes or less per allocated chunk, against 16 sparse.
fn dense_fits(count: usize, slot_count: u64) -> bool {
    slot_count <= 2 * count as u64
}

fn nonzero(chunk: ChunkId) -> NonZeroU64 {
    NonZeroU64::new(chunk).expect("chunk ids are never 0")
}

impl FileSlots {
    pub fn new(goal: u8) -> FileSlots {
        FileSlots(Repr::Empty { goal })
    }

    /// The canonical value for `slots`, which must be sorted by strictly increasing index
    /// and hold no chunk 0 (deserialization checks both before calling this).
    pub fn from_sorted(goal: u8, slots: Vec<Slot>) -> FileSlots {
        let Some(last) = slots.last() else {
            return FileSlots(Repr::Empty { goal });
        };
        if slots.len() == 1 && last.index == 0 {
            let chunk = nonzero(last.chunk);
            return FileSlots(Repr::First { goal, chunk });
        }
        let count = slots.len();
        let many = if dense_fits(count, last.index + 1) {
            let mut ids = vec![0; (last.index + 1) as usize];
            for s in &slots {
                ids[s.index as usize] = s.chunk;
            }
            Many::Dense { count, ids }
        } else {
            let mut slots = slots;
            slots.shrink_to_fit();
            Many::Sparse(slots)
        };
        FileSlots(Repr::Many {
            goal,
            many: Box::new(many),
        })
    }

    pub fn goal(&self) -> u8 {
        match self.0 {
            Repr::Empty { goal } | Repr::First { goal, .. } | Repr::Many { goal, .. } => goal,
        }
    }

    pub fn set_goal(&mut self, new: u8) {
        match &mut self.0 {
            Repr::Empty { goal } | Repr::First { goal, .. } | Repr::Many { goal, .. } => {
                *goal = new
            }
        }
    }

    /// Number of allocated slots.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Empty { .. } => 0,
            Repr::First { .. } => 1,
            Repr::Many { many, .. } => match &**many {
                Many::Dense { count, .. } => *count,
                Many::Sparse(v) => v.len(),
            },
        }
    }

    /// Last allocated index + 1, or 0.
    pub fn slot_count(&self) -> u64 {
        match &self.0 {
            Repr::Empty { .. } => 0,
            Repr::First { .. } => 1,
            Repr::Many { many, .. } => match &**many {
                Many::Dense { ids, .. } => ids.len() as u64,
                Many::Sparse(v) => v.last().map_or(0, |s| s.index + 1),
            },
        }
    }

    /// The chunk in slot `index`, if allocated.
    pub fn get(&self, index: u64) -> Option<ChunkId> {
        match &self.0 {
            Repr::Empty { .. } => None,
            Repr::First { chunk, .. } => (index == 0).then_some(chunk.get()),
            Repr::Many { many, .. } => match &**many {
                Many::Dense { ids, .. } => usize::try_from(index)
                    .ok()
                    .and_then(|i| ids.get(i))
                    .copied()
                    .filter(|&c| c != 0),
                Many::Sparse(v) => v
                    .binary_search_by_key(&index, |s| s.index)
                    .ok()
                    .map(|pos| v[pos].chunk),
            },
        }
    }

    /// The allocated slots with index >= `first`, in index order.
    pub fn iter_from(&self, first: u64) -> impl Iterator<Item = Slot> + '_ {
        let (one, dense, dense_base, sparse): (Option<Slot>, &[ChunkId], u64, &[Slot]) =
            match &self.0 {
                Repr::Empty { .. } => (None, &[], 0, &[]),
                Repr::First { chunk, .. } => {
                    let slot = Slot {
                        index: 0,
                        chunk: chunk.get(),
                    };
                    ((first == 0).then_some(slot), &[], 0, &[])
                }
                Repr::Many { many, .. } => match &**many {
                    Many::Dense { ids, .. } => {
                        let start = first.min(ids.len() as u64);
                        (None, &ids[start as usize..], start, &[])
                    }
                    Many::Sparse(v) => {
                        let start = v.partition_point(|s| s.index < first);
                        (None, &[], 0, &v[start..])
                    }
                },
            };
        let dense = dense.iter().enumerate().filter(|(_, c)| **c != 0);
        one.into_iter()
            .chain(dense.map(move |(i, &chunk)| Slot {
                index: dense_base + i as u64,
                chunk,
            }))
            .chain(sparse.iter().copied())
    }

    /// Every allocated slot, in index order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.iter_from(0)
    }

    /// Fills slot `index`, which the caller knows to be a hole, with `chunk` (not 0).
    pub fn insert(&mut self, index: u64, chunk: ChunkId) {
        debug_assert!(self.get(index).is_none(), "caller checked for a hole");
        let goal = self.goal();
        match &mut self.0 {
            Repr::Empty { .. } if index == 0 => {
                self.0 = Repr::First {
                    goal,
                    chunk: nonzero(chunk),
                };
            }
            Repr::Empty { .. } | Repr::First { .. } => {
                let mut slots: Vec<Slot> = self.iter().collect();
                let at = slots.partition_point(|s| s.index < index);
                slots.insert(at, Slot { index, chunk });
                *self = FileSlots::from_sorted(goal, slots);
            }
            Repr::Many { many, .. } => match &mut **many {
                Many::Dense { count, ids }
                    if dense_fits(*count + 1, index.max(ids.len() as u64 - 1) + 1) =>
                {
                    let i = index as usize;
                    if i >= ids.len() {
                        ids.resize(i + 1, 0);
                    }
                    ids[i] = chunk;
                    *count += 1;
                }
                Many::Dense { .. } => {
                    let mut slots: Vec<Slot> = self.iter().collect();
                    slots.push(Slot { index, chunk });
                    *self = FileSlots::from_sorted(goal, slots);
                }
                Many::Sparse(v) => {
                    let at = v.partition_point(|s| s.index < index);
                    v.insert(at, Slot { index, chunk });
                    let last = v.last().map_or(0, |s| s.index);
                    if dense_fits(v.len(), last + 1) {
                        let slots = std::mem::take(v);
                        *self = FileSlots::from_sorted(goal, slots);
                    }
                }
            },
        }
    }

    /// Removes the slots with index >= `keep` and answers them in index order.
    pub fn remove_from(&mut self, keep: u64) -> Vec<Slot> {
        if self.slot_count() <= keep {
            return Vec::new();
        }
        let mut slots: Vec<Slot> = self.iter().collect();
        let cut = slots.partition_point(|s| s.index < keep);
        let gone = slots.split_off(cut);
        *self = FileSlots::from_sorted(self.goal(), slots);
        gone
    }
}

/// Equal when the goal and the allocated slots are; the layout follows from those.
impl PartialEq for FileSlots {
    fn eq(&self, other: &Self) -> bool {
        self.goal() == other.goal() && self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for FileSlots {}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(s: &FileSlots) -> Vec<(u64, u64)> {
        s.iter().map(|s| (s.index, s.chunk)).collect()
    }

    fn is_dense(s: &FileSlots) -> bool {
        matches!(&s.0, Repr::Many { many, .. } if matches!(**many, Many::Dense { .. }))
    }

    #[test]
    fn stays_within_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<FileSlots>(), 16);
    }

    #[test]
    fn first_chunk_lives_inline() {
        let mut s = FileSlots::new(3);
        assert_eq!((s.len(), s.slot_count(), s.get(0)), (0, 0, None));
        s.insert(0, 9);
        assert!(matches!(s.0, Repr::First { goal: 3, .. }));
        assert_eq!(
            (s.len(), s.slot_count(), s.get(0), s.get(1)),
            (1, 1, Some(9), None)
        );
        s.set_goal(5);
        assert_eq!(s.goal(), 5);
        assert_eq!(slots(&s), [(0, 9)]);
    }

    #[test]
    fn sequential_writes_stay_dense_and_far_out_goes_sparse() {
        let mut s = FileSlots::new(1);
        for i in 0..10 {
            s.insert(i, 100 + i);
        }
        assert!(is_dense(&s));
        assert_eq!(s.slot_count(), 10);
        s.insert(1 << 40, 7);
        assert!(
            !is_dense(&s),
            "a far-out write must not become a run of holes"
        );
        assert_eq!((s.len(), s.slot_count()), (11, (1 << 40) + 1));
        assert_eq!(s.get(1 << 40), Some(7));
        assert_eq!(s.get(5), Some(105));
        assert_eq!(s.get(11), None);
        assert_eq!(
            s.iter_from(9).collect::<Vec<_>>(),
            [
                Slot {
                    index: 9,
                    chunk: 109
                },
                Slot {
                    index: 1 << 40,
                    chunk: 7
                }
            ]
        );
    }

    #[test]
    fn a_lone_far_out_slot_is_one_entry() {
        let mut s = FileSlots::new(1);
        s.insert(u64::MAX >> 4, 4);
        assert_eq!(slots(&s), [(u64::MAX >> 4, 4)]);
        assert_eq!(s.slot_count(), (u64::MAX >> 4) + 1);
        s.insert(0, 3);
        s.insert(2, 5);
        assert_eq!(slots(&s), [(0, 3), (2, 5), (u64::MAX >> 4, 4)]);
        assert!(s.iter_from(3).eq([Slot {
            index: u64::MAX >> 4,
            chunk: 4
        }]));
    }

    #[test]
    fn truncate_removes_slots_and_returns_to_canonical_form() {
        let mut s = FileSlots::new(2);
        for i in [0, 1, 2, 3, 1000] {
            s.insert(i, i + 1);
        }
        assert!(s.remove_from(2000).is_empty(), "nothing lies past 2000");
        let gone: Vec<_> = s
            .remove_from(2)
            .iter()
            .map(|s| (s.index, s.chunk))
            .collect();
        assert_eq!(gone, [(2, 3), (3, 4), (1000, 1001)]);
        assert_eq!(slots(&s), [(0, 1), (1, 2)]);
        assert!(is_dense(&s));
        s.remove_from(1);
        assert!(matches!(s.0, Repr::First { goal: 2, .. }));
        s.remove_from(0);
        assert!(matches!(s.0, Repr::Empty { goal: 2 }));
        assert_eq!(s.slot_count(), 0);
    }

    #[test]
    fn equal_contents_are_equal_whatever_the_history() {
        let mut a = FileSlots::new(1);
        for i in [9, 3, 0, 1, 2] {
            a.insert(i, i + 10);
        }
        let b = FileSlots::from_sorted(1, a.iter().collect());
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        b.iter_from(4).for_each(|s| assert_eq!(s.index, 9));
        let mut c = b.clone();
        c.set_goal(2);
        assert_ne!(b, c);
    }
}
