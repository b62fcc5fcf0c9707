//! Integration tests of `ChunkStore`: one binary, one module per concern.

mod basic;
mod common;
mod concurrency;
mod corruption;
mod crash;
mod faults;
mod model;
