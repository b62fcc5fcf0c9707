//! Property tests against simple models: the namespace (`namespace.rs`, model in
//! `ns_model.rs`) and sessions with locks (`locks.rs`). Regression seeds live in
//! `tests/proptest-regressions/<module>.txt`.

#[path = "../common/mod.rs"]
mod common;
mod locks;
mod namespace;
mod ns_model;
