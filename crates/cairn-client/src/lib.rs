//! Cairn client library: metadata calls, chain writes, verified reads, retries
