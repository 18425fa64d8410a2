//! Names and seeds the way Kubernetes makes them: `pod-template-hash` (FNV-32a of the pod
//! template, `SafeEncodeString`), 5-character pod suffixes (`utilrand.String`), and the
//! per-purpose RNGs every random choice of the lab comes from.

use std::hash::Hasher;

use hash32::Hasher as _;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The alphabet of Kubernetes' `utilrand.String` / `SafeEncodeString` (no vowels, no
/// look-alikes).
pub const K8S_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// An RNG for one purpose, derived from the scenario seed (seed XOR FNV-1a-64 of the purpose).
pub fn rng_for(seed: u64, purpose: &str) -> ChaCha8Rng {
    let mut h = fnv::FnvHasher::default();
    h.write(purpose.as_bytes());
    ChaCha8Rng::seed_from_u64(seed ^ h.finish())
}

/// `pod-template-hash` like the Deployment controller: FNV-32a (Go's `hash/fnv.New32a`, as
/// `controller.ComputeHash` uses) of the pod template, its decimal form mapped through
/// `SafeEncodeString` (8–10 chars). Stable for a manifest.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_string(template).unwrap_or_default();
    let mut h = hash32::FnvHasher::default();
    h.write(json.as_bytes());
    let decimal = h.finish32().to_string();
    let mut s = decimal
        .bytes()
        .map(|b| K8S_ALPHABET[b as usize % K8S_ALPHABET.len()] as char)
        .collect::<String>();
    // Kubernetes' hashes of small uint32 values can be short; keep at least 8 chars.
    while s.len() < 8 {
        s.insert(0, '4');
    }
    s
}

/// `utilrand.String(n)`: n chars from [`K8S_ALPHABET`].
pub fn random_suffix(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| K8S_ALPHABET[rng.random_range(0..K8S_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crates compute the FNV-1a the lab computed by hand before (published test
    /// vectors: FNV-1a-32("a") = 0xe40c292c, FNV-1a-64("a") = 0xaf63dc4c8601ec8c).
    #[test]
    fn fnv_vectors() {
        let mut h32 = hash32::FnvHasher::default();
        h32.write(b"a");
        assert_eq!(h32.finish32(), 0xe40c_292c);
        let mut h64 = fnv::FnvHasher::default();
        h64.write(b"a");
        assert_eq!(h64.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut e32 = hash32::FnvHasher::default();
        e32.write(b"");
        assert_eq!(e32.finish32(), 0x811c_9dc5);
    }
}
