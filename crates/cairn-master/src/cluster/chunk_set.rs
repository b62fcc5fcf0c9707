//! A set of chunk ids as a paged bitmap: one bit per chunk, 64 consecutive ids per word,
//! words kept only while they hold a member.
//!
//! Chunk ids are handed out consecutively, so a set holding every chunk (the scheduler's
//! work set right after a restart) costs about a bit per chunk, and an emptied set gives
//! its memory back. It must never be used for ids that are not dense (it would cost a
//! word per member) and never hand out members in any order but ascending.

use std::collections::BTreeMap;

use super::ChunkId;

const BITS: u64 = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSet {
    /// Word index (`chunk / 64`) to the members among its 64 ids; never 0.
    words: BTreeMap<u64, u64>,
}

impl ChunkSet {
    /// Adds `chunk`; returns whether it was new.
    pub fn insert(&mut self, chunk: ChunkId) -> bool {
        let word = self.words.entry(chunk / BITS).or_insert(0);
        let bit = 1u64 << (chunk % BITS);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    /// Drops `chunk`; returns whether it was there.
    pub fn remove(&mut self, chunk: ChunkId) -> bool {
        let Some(word) = self.words.get_mut(&(chunk / BITS)) else {
            return false;
        };
        let bit = 1u64 << (chunk % BITS);
        let had = *word & bit != 0;
        *word &= !bit;
        if *word == 0 {
            self.words.remove(&(chunk / BITS));
        }
        had
    }

    pub fn contains(&self, chunk: ChunkId) -> bool {
        self.words
            .get(&(chunk / BITS))
            .is_some_and(|w| w & (1u64 << (chunk % BITS)) != 0)
    }

    pub fn len(&self) -> usize {
        self.words.values().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Empties the set and frees its memory.
    pub fn clear(&mut self) {
        self.words = BTreeMap::new();
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.words.iter().flat_map(|(w, bits)| members(*w, *bits))
    }

    /// Empties the set (freeing its memory at once) and yields what it held, ascending.
    pub fn drain(&mut self) -> impl Iterator<Item = ChunkId> + use<> {
        std::mem::take(&mut self.words)
            .into_iter()
            .flat_map(|(w, bits)| members(w, bits))
    }
}

fn members(word: u64, mut bits: u64) -> impl Iterator<Item = ChunkId> {
    std::iter::from_fn(move || {
        if bits == 0 {
            return None;
        }
        let i = u64::from(bits.trailing_zeros());
        bits &= bits - 1;
        Some(word * BITS + i)
    })
}

impl Extend<ChunkId> for ChunkSet {
    fn extend<I: IntoIterator<Item = ChunkId>>(&mut self, iter: I) {
        for c in iter {
            self.insert(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_back_ascending_and_the_set_frees_emptied_words() {
        let mut s = ChunkSet::default();
        for c in [130, 0, 63, 64, u64::MAX, 5] {
            assert!(s.insert(c));
        }
        assert!(!s.insert(64));
        assert_eq!(s.len(), 6);
        assert!(s.contains(u64::MAX) && s.contains(0) && !s.contains(1));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![0, 5, 63, 64, 130, u64::MAX]
        );
        assert!(s.remove(130));
        assert!(!s.remove(130));
        assert!(!s.remove(7_000));
        assert_eq!(s.words.len(), 3, "the word of 128..192 is gone");
        assert_eq!(s.drain().collect::<Vec<_>>(), vec![0, 5, 63, 64, u64::MAX]);
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn clear_and_extend() {
        let mut s = ChunkSet::default();
        s.extend([3, 2, 1, 2]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        s.clear();
        assert!(s.is_empty() && !s.contains(1));
    }
}
