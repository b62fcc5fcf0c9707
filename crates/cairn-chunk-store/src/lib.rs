//! Local replica storage: per-block CRC32C, journaled mutations, durable renames
