//! Cairn's namespace state machine: pure, deterministic apply(command) -> result
