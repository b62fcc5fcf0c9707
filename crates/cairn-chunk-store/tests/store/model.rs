//! Property test: random writes, truncates, version changes and replacements of one
//! replica, checked against a `Vec<u8>` model, with clean reopens and simulated power cuts (the replica file
//! reverted page by page to a random mix of its last checkpoint image and its latest bytes)
//! in between.

use std::fs;
use std::path::Path;

use cairn_chunk_store::{ChunkStore, StoreConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{chunk_file, model_write, pattern, tmpdir};

const MCAP: u64 = 32 * 1024;

#[derive(Clone, Debug)]
enum Op {
    Write {
        off: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        len: u64,
    },
    SetVersion,
    Reopen,
    PowerLoss {
        seed: u64,
    },
    Checkpoint,
    /// A new incarnation: re-replication (`install`) or delete and create.
    Replace {
        len: usize,
        seed: u64,
        install: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..MCAP, 0usize..6000, any::<u64>()).prop_map(|(off, len, seed)| Op::Write {
            off,
            len: len.min((MCAP - off) as usize),
            seed,
        }),
        2 => (0..=MCAP).prop_map(|len| Op::Truncate { len }),
        1 => Just(Op::SetVersion),
        1 => Just(Op::Reopen),
        2 => any::<u64>().prop_map(|seed| Op::PowerLoss { seed }),
        1 => Just(Op::Checkpoint),
        1 => (0usize..9000, any::<u64>(), any::<bool>())
            .prop_map(|(len, seed, install)| Op::Replace { len, seed, install }),
    ]
}

fn mcfg() -> StoreConfig {
    StoreConfig {
        block_size: 1024,
        journal_rotate_bytes: 1 << 40,
        reserve_bytes: 0,
        memory_stage_limit: 2048,
    }
}

fn reopen(dir: &Path) -> ChunkStore {
    ChunkStore::open(dir, mcfg()).expect("reopen").0
}

/// The replica file after a power cut: each 4 KiB page from the checkpoint image or from
/// the latest bytes, the size one of the two.
fn power_cut(path: &Path, image: &[u8], seed: u64) {
    let cur = fs::read(path).expect("read replica");
    let mut rng = StdRng::seed_from_u64(seed);
    let size = if rng.random_bool(0.5) {
        image.len()
    } else {
        cur.len()
    };
    let mut out = vec![0u8; size];
    for (i, page) in out.chunks_mut(4096).enumerate() {
        let src = if rng.random_bool(0.5) {
            image
        } else {
            &cur[..]
        };
        let start = i * 4096;
        let end = (start + page.len()).min(src.len());
        if start < end {
            page[..end - start].copy_from_slice(&src[start..end]);
        }
    }
    fs::write(path, out).expect("write replica");
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let d = tmpdir(true);
    let path = chunk_file(d.path(), 1);
    let mut s = reopen(d.path());
    s.truncate(1, 1, 1, true, 0, MCAP).expect("create");
    let (mut m, mut version, mut serial) = (Vec::<u8>::new(), 1u64, 1u64);
    let mut image = fs::read(&path).expect("image");
    for op in ops {
        match *op {
            Op::Write { off, len, seed } => {
                let data = pattern(seed, len);
                let mut st = s.stage(1, off, MCAP).expect("stage");
                for piece in data.chunks(1500) {
                    st.write(piece).expect("stage write");
                }
                serial += 1;
                s.commit_write(st, version, serial, false).expect("commit");
                model_write(&mut m, off, &data);
            }
            Op::Truncate { len } => {
                serial += 1;
                s.truncate(1, version, serial, false, len, MCAP)
                    .expect("truncate");
                m.resize(len as usize, 0);
            }
            Op::SetVersion => {
                s.set_version(1, version, version + 1).expect("set_version");
                version += 1;
                serial = 0;
            }
            Op::Reopen => {
                drop(s);
                s = reopen(d.path());
                image = fs::read(&path).expect("image");
            }
            Op::PowerLoss { seed } => {
                drop(s);
                power_cut(&path, &image, seed);
                s = reopen(d.path());
                image = fs::read(&path).expect("image");
            }
            Op::Replace { len, seed, install } => {
                let data = pattern(seed, len);
                let mut st = s.stage(1, 0, MCAP).expect("stage");
                st.write(&data).expect("stage write");
                version += 1;
                if install {
                    serial = 3;
                    s.install(st, version, serial).expect("install");
                } else {
                    serial = 1;
                    s.delete(1).expect("delete");
                    s.commit_write(st, version, serial, true).expect("create");
                }
                m = data;
                // A new replica file is durable as a whole: it is its own checkpoint image.
                image = fs::read(&path).expect("image");
            }
            Op::Checkpoint => {
                s.checkpoint().expect("checkpoint");
                image = fs::read(&path).expect("image");
            }
        }
        let info = s.info(1).expect("replica");
        prop_assert_eq!(
            (info.version, info.serial, info.length),
            (version, serial, m.len() as u64)
        );
        let mut buf = vec![0u8; m.len() + 10];
        let n = s.read(1, version, 0, &mut buf).expect("read");
        prop_assert_eq!(n, m.len());
        prop_assert!(buf[..n] == m[..], "content differs after {:?}", op);
        prop_assert_eq!(s.verify(1).expect("verify"), m.len() as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replica_follows_the_model_across_reopens_and_power_cuts(ops in vec(op(), 1..24)) {
        run(&ops)?;
    }
}
