//! One chunk's replica list as the master hands it out: up to three replicas without a heap
//! allocation, any number beyond that in a `Vec`.
//!
//! It only holds and edits a list; it never decides where a list is stored (that is
//! `replica_map`'s job) and never reorders replicas: callers see them in the order they
//! were first added, as with the `Vec` this replaced.

use std::ops::Deref;

use super::ServerId;

/// How many replicas a list holds before it moves to the heap.
pub(crate) const INLINE: usize = 3;

/// A replica as reported by a chunk server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    pub server: ServerId,
    pub version: u64,
}

/// The replicas of one chunk, in the order they were first added.
#[derive(Clone, Debug)]
pub enum Replicas {
    Inline { len: u8, items: [Replica; INLINE] },
    Heap(Vec<Replica>),
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas::Inline {
            len: 0,
            items: [Replica::default(); INLINE],
        }
    }
}

impl Deref for Replicas {
    type Target = [Replica];

    fn deref(&self) -> &[Replica] {
        match self {
            Replicas::Inline { len, items } => &items[..*len as usize],
            Replicas::Heap(v) => v,
        }
    }
}

impl PartialEq<[Replica]> for Replicas {
    fn eq(&self, other: &[Replica]) -> bool {
        **self == *other
    }
}

impl From<Replicas> for Vec<Replica> {
    fn from(r: Replicas) -> Vec<Replica> {
        match r {
            Replicas::Inline { .. } => r.to_vec(),
            Replicas::Heap(v) => v,
        }
    }
}

impl Replicas {
    /// Appends a replica whose server is not in the list yet.
    pub(crate) fn push(&mut self, r: Replica) {
        match self {
            Replicas::Inline { len, items } if (*len as usize) < INLINE => {
                items[*len as usize] = r;
                *len += 1;
            }
            Replicas::Inline { len, items } => {
                let mut v = Vec::with_capacity(*len as usize + 1);
                v.extend_from_slice(&items[..*len as usize]);
                v.push(r);
                *self = Replicas::Heap(v);
            }
            Replicas::Heap(v) => v.push(r),
        }
    }

    /// Sets `server`'s version, appending it if absent. Returns whether it was absent.
    pub(crate) fn upsert(&mut self, server: ServerId, version: u64) -> bool {
        let slice: &mut [Replica] = match self {
            Replicas::Inline { len, items } => &mut items[..*len as usize],
            Replicas::Heap(v) => v,
        };
        match slice.iter_mut().find(|r| r.server == server) {
            Some(r) => {
                r.version = version;
                false
            }
            None => {
                self.push(Replica { server, version });
                true
            }
        }
    }

    /// Drops `server`'s replica, keeping the others' order. Returns whether it was there.
    pub(crate) fn remove(&mut self, server: ServerId) -> bool {
        match self {
            Replicas::Inline { len, items } => {
                let n = *len as usize;
                let Some(i) = items[..n].iter().position(|r| r.server == server) else {
                    return false;
                };
                items.copy_within(i + 1..n, i);
                *len -= 1;
                true
            }
            Replicas::Heap(v) => {
                let before = v.len();
                v.retain(|r| r.server != server);
                v.len() != before
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(server: ServerId, version: u64) -> Replica {
        Replica { server, version }
    }

    #[test]
    fn keeps_insertion_order_across_the_move_to_the_heap() {
        let mut l = Replicas::default();
        assert!(l.is_empty());
        for s in 1..=5 {
            assert!(l.upsert(s, 7));
        }
        assert!(matches!(l, Replicas::Heap(_)));
        assert!(!l.upsert(3, 8));
        assert_eq!(&*l, &[r(1, 7), r(2, 7), r(3, 8), r(4, 7), r(5, 7)]);
        assert!(l.remove(1));
        assert!(!l.remove(1));
        assert_eq!(Vec::from(l), vec![r(2, 7), r(3, 8), r(4, 7), r(5, 7)]);
    }

    #[test]
    fn removing_from_the_middle_keeps_the_rest_in_order() {
        let mut l = Replicas::default();
        l.upsert(10, 1);
        l.upsert(u64::MAX, 2);
        l.upsert(30, 1);
        assert!(l.remove(u64::MAX));
        assert_eq!(&*l, &[r(10, 1), r(30, 1)]);
        assert!(l.upsert(40, 1));
        assert!(matches!(l, Replicas::Inline { len: 3, .. }));
        assert_eq!(l, *[r(10, 1), r(30, 1), r(40, 1)].as_slice());
    }
}
