//! Lease tokens: the master's permission for one chunk server to order the mutations of one
//! chunk version until a deadline.
//!
//! A lease carries a keyed BLAKE3 MAC over its fields, so replicas check it without asking
//! the master. The key is the cluster's lease key, created once when the file system is
//! formatted and handed to chunk servers when they register.

use cairn_proto::pb;

/// Length of the cluster lease key.
pub const LEASE_KEY_LEN: usize = 32;

fn mac_input(l: &pb::Lease) -> [u8; 33] {
    let mut buf = [0u8; 33];
    buf[0..8].copy_from_slice(&l.chunk_id.to_le_bytes());
    buf[8..16].copy_from_slice(&l.version.to_le_bytes());
    buf[16..24].copy_from_slice(&l.primary_id.to_le_bytes());
    buf[24..32].copy_from_slice(&l.expiry_unix_ms.to_le_bytes());
    buf[32] = u8::from(l.create);
    buf
}

/// Fills in the MAC of a lease.
pub fn sign(key: &[u8; LEASE_KEY_LEN], lease: &mut pb::Lease) {
    lease.mac = blake3::keyed_hash(key, &mac_input(lease))
        .as_bytes()
        .to_vec()
        .into();
}

/// Whether a lease's MAC matches its fields under `key` (constant time).
pub fn verify(key: &[u8; LEASE_KEY_LEN], lease: &pb::Lease) -> bool {
    let Ok(mac) = <[u8; 32]>::try_from(lease.mac.as_ref()) else {
        return false;
    };
    blake3::keyed_hash(key, &mac_input(lease)) == blake3::Hash::from_bytes(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_lease_verifies_and_tampering_fails() {
        let key = [7u8; 32];
        let mut l = pb::Lease {
            chunk_id: 9,
            version: 3,
            primary_id: 42,
            expiry_unix_ms: 1_000,
            create: false,
            mac: Default::default(),
        };
        sign(&key, &mut l);
        assert!(verify(&key, &l));
        assert!(!verify(&[8u8; 32], &l));
        let mut t = l.clone();
        t.version = 4;
        assert!(!verify(&key, &t));
        let mut t = l.clone();
        t.create = true;
        assert!(!verify(&key, &t));
        let mut t = l;
        t.mac = vec![1, 2, 3].into();
        assert!(!verify(&key, &t));
    }
}
