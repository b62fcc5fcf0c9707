//! [`MetaState`]: the stored namespace, the `apply` entry point and the helpers every
//! command handler shares.
//!
//! The state is a set of ordered maps (inodes and chunks by id, each in a paged
//! [`crate::paged_table`]), the id counters, running
//! totals, the request de-duplication table, and side tables keyed by inode (sessions and
//! locks, extended attributes, append reservations, hard-link parents). `dispatch.rs`
//! routes each command to its handler (`namespace.rs`, `chunks.rs`, `posix.rs`,
//! `rename_at.rs`, `xattr.rs`, `lock_commands.rs`); each validates everything first and
//! mutates only once nothing can fail, which is what makes `apply` atomic without copying
//! the state. Read-only queries live in `queries.rs` and `lock_commands.rs`.
//!
//! Invariants: formatted iff `config` is `Some`, and then the root inode exists and is a
//! directory; `counts` equals what a full walk would count; ids below the counters only;
//! side tables name live inodes only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dedup::DedupTable;
use crate::node::{DirBody, FileBody, Inode};
use crate::sessions::Sessions;
use crate::{
    CairnPath, ChunkId, InodeId, MAX_FILE_SIZE, MAX_GOAL, MetaCommand, MetaError, MetaResponse,
    ROOT_INODE, RequestId,
};

/// File system parameters fixed by `Format`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FsConfig {
    pub chunk_size: u64,
    pub default_goal: u8,
    pub lease_key: [u8; 32],
    pub formatted_ns: i64,
}

/// Running totals, kept so that status queries do not walk the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub files: u64,
    pub directories: u64,
    /// Sum of file lengths; u128 because 16 files of the largest size overflow a u64.
    pub bytes: u128,
    pub symlinks: u64,
}

/// The master's namespace: a pure, deterministic state machine.
///
/// Serialize it for checkpoints; the caller wraps the bytes in a versioned, checksummed
/// container and should call [`MetaState::check_invariants`] after loading one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub(crate) config: Option<FsConfig>,
    pub(crate) inodes: crate::paged_table::InodeTable,
    /// Chunk records by id, paged like the inodes since chunk ids are consecutive too.
    pub(crate) chunks: crate::paged_table::ChunkTable,
    /// Next inode id to hand out (2 after Format).
    pub(crate) next_inode: InodeId,
    /// Next chunk id to hand out (1 after Format).
    pub(crate) next_chunk: ChunkId,
    pub(crate) counts: Counts,
    pub(crate) dedup: DedupTable,
    /// Client sessions and the lock tables of inodes.
    pub(crate) sessions: Sessions,
    /// Extended attributes of inodes that have any: name -> value.
    pub(crate) xattrs: BTreeMap<InodeId, BTreeMap<Box<str>, Box<[u8]>>>,
    /// Append reservations: the reserved end of files where it lies past the length.
    pub(crate) appends: BTreeMap<InodeId, u64>,
    /// For each non-directory with more than one name: the directory of every name,
    /// sorted, one entry per name. Keeps `parent` valid when a name goes.
    pub(crate) links: BTreeMap<InodeId, Vec<InodeId>>,
}

impl MetaState {
    /// An unformatted, empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command.
    ///
    /// With `Some(req)` and `req.client_id != 0`, a request already applied answers its
    /// remembered result (a clone) without being applied again; otherwise the command is
    /// applied and its result remembered, errors included (so a retried `Delete` that failed
    /// cannot succeed later against a different file). Retryable errors (`NotFormatted`)
    /// are not remembered. On `Err` the namespace is unchanged; the de-duplication table is
    /// the only part that may record the error.
    pub fn apply(
        &mut self,
        req: Option<RequestId>,
        cmd: &MetaCommand,
    ) -> Result<MetaResponse, MetaError> {
        let dedup_key = req.filter(|r| r.client_id != 0);
        if let Some(r) = dedup_key
            && let Some(done) = self.dedup.get(r)
        {
            return done.clone();
        }
        let result = self.execute(cmd);
        if let Some(r) = dedup_key {
            let retryable = matches!(&result, Err(e) if e.kind().is_retryable());
            if !retryable {
                self.dedup.record(r, &result);
            }
        }
        result
    }

    pub(crate) fn format(
        &mut self,
        chunk_size: u64,
        default_goal: u8,
        lease_key: [u8; 32],
        now_ns: i64,
    ) -> Result<MetaResponse, MetaError> {
        if self.config.is_some() {
            return Err(MetaError::AlreadyExists("file system".into()));
        }
        if chunk_size == 0 || chunk_size > MAX_FILE_SIZE {
            return Err(MetaError::invalid(
                format_args!("chunk size {chunk_size}"),
                "must be between 1 and 2^60",
            ));
        }
        if default_goal == 0 || default_goal > MAX_GOAL {
            return Err(MetaError::invalid(
                format_args!("goal {default_goal}"),
                "must be between 1 and 16",
            ));
        }
        self.config = Some(FsConfig {
            chunk_size,
            default_goal,
            lease_key,
            formatted_ns: now_ns,
        });
        self.inodes
            .insert(ROOT_INODE, Inode::new_dir(ROOT_INODE, 0o755, 0, 0, now_ns));
        self.next_inode = ROOT_INODE + 1;
        self.next_chunk = 1;
        self.counts = Counts {
            files: 0,
            directories: 1,
            bytes: 0,
            symlinks: 0,
        };
        Ok(MetaResponse::Unit)
    }

    // ---- helpers shared by the command handlers

    pub(crate) fn ensure_formatted(&self) -> Result<(), MetaError> {
        if self.config.is_some() {
            Ok(())
        } else {
            Err(MetaError::NotFormatted)
        }
    }

    /// Chunk size of a formatted state.
    pub(crate) fn config_chunk_size(&self) -> u64 {
        self.config
            .as_ref()
            .expect("commands run only on a formatted state")
            .chunk_size
    }

    pub(crate) fn config_default_goal(&self) -> u8 {
        self.config
            .as_ref()
            .expect("commands run only on a formatted state")
            .default_goal
    }

    /// The inode `id`, which the caller knows to be live (it came from a directory entry,
    /// a chunk record or a check just made).
    pub(crate) fn node(&self, id: InodeId) -> &Inode {
        self.inodes
            .get(&id)
            .expect("inode ids held by the state are live")
    }

    pub(crate) fn node_mut(&mut self, id: InodeId) -> &mut Inode {
        self.inodes
            .get_mut(&id)
            .expect("inode ids held by the state are live")
    }

    /// The directory `id`, which the caller knows to be a live directory.
    pub(crate) fn dir(&self, id: InodeId) -> &DirBody {
        self.node(id)
            .as_dir()
            .expect("caller checked that this inode is a directory")
    }

    pub(crate) fn dir_mut(&mut self, id: InodeId) -> &mut DirBody {
        self.node_mut(id)
            .as_dir_mut()
            .expect("caller checked that this inode is a directory")
    }

    /// The live inode `id`, or `NotFound`.
    pub(crate) fn live(&self, id: InodeId) -> Result<&Inode, MetaError> {
        self.inodes
            .get(&id)
            .ok_or_else(|| MetaError::NotFound(format!("inode {id}")))
    }

    /// The directory `id`, or `NotFound` / `NotADirectory`.
    pub(crate) fn live_dir(&self, id: InodeId) -> Result<&DirBody, MetaError> {
        self.live(id)?
            .as_dir()
            .ok_or_else(|| MetaError::NotADirectory(format!("inode {id}")))
    }

    /// The file `inode`, or `NotFound` / `IsADirectory` / `InvalidArgument` (a symlink).
    pub(crate) fn file(&self, inode: InodeId) -> Result<&FileBody, MetaError> {
        let node = self.live(inode)?;
        match node.as_file() {
            Some(f) => Ok(f),
            None if node.is_dir() => Err(MetaError::IsADirectory(format!("inode {inode}"))),
            None => Err(MetaError::invalid(
                format_args!("inode {inode}"),
                "is a symbolic link",
            )),
        }
    }

    pub(crate) fn version(&self, chunk: ChunkId) -> u64 {
        self.chunks
            .get(&chunk)
            .expect("every slot's chunk is in the chunk table")
            .version
    }

    /// Walks `path` from the root. A missing component is `NotFound` (naming the whole
    /// path); a file where a directory is needed is `NotADirectory` (naming that prefix).
    pub(crate) fn resolve(&self, path: &CairnPath) -> Result<InodeId, MetaError> {
        let full = path.as_str();
        let mut cur = ROOT_INODE;
        let mut end = 0;
        for name in path.components() {
            let Some(dir) = self.node(cur).as_dir() else {
                return Err(MetaError::NotADirectory(full[..end].to_string()));
            };
            cur = *dir
                .entries
                .get(name)
                .ok_or_else(|| MetaError::NotFound(full.to_string()))?;
            end += 1 + name.len();
        }
        Ok(cur)
    }

    /// Like [`MetaState::resolve`], and the result must be a directory.
    pub(crate) fn resolve_dir(&self, path: &CairnPath) -> Result<InodeId, MetaError> {
        let id = self.resolve(path)?;
        if self.node(id).is_dir() {
            Ok(id)
        } else {
            Err(MetaError::NotADirectory(path.to_string()))
        }
    }

    /// Hands out the next inode id.
    pub(crate) fn alloc_inode_id(&mut self) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        id
    }

    /// Hands out the next chunk id.
    pub(crate) fn alloc_chunk_id(&mut self) -> ChunkId {
        let id = self.next_chunk;
        self.next_chunk += 1;
        id
    }
}
