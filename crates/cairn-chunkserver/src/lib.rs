//! The Cairn chunk server: replica data path, chain replication, heartbeats
