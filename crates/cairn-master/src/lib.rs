//! The Cairn master: operation log, checkpoints, namespace RPCs, placement, leases, heartbeats
