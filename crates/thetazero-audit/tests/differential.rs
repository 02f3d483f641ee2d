//! Differential tests: our RFC 6962 roots and proofs against the independent
//! `ct-merkle` implementation on random trees. Tests only; no shared code.

// Tests may unwrap: a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ct_merkle::{mem_backed_tree::MemoryBackedTree, ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use sha2_ct::Sha256;
use thetazero_audit::merkle::{self, Hash, MemoryHashStore};

fn to_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks(32)
        .map(|c| Hash(c.try_into().unwrap()))
        .collect()
}

fn to_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

fn ct_root(h: Hash, size: u64) -> RootHash<Sha256> {
    RootHash::new(h.0.into(), size)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn agrees_with_ct_merkle(
        leaves in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..160),
        idx_seed in any::<u64>(),
        old_seed in any::<u64>(),
    ) {
        let n = leaves.len() as u64;
        let mut ours = MemoryHashStore::new();
        let mut theirs: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
        for (i, leaf) in leaves.iter().enumerate() {
            ours.push(leaf).unwrap();
            theirs.push(leaf.clone());
            let size = i as u64 + 1;
            // Roots agree at every size.
            let (a, b) = (ours.root().unwrap().0.to_vec(), theirs.root().as_bytes().to_vec());
            prop_assert_eq!(a, b);
            prop_assert_eq!(merkle::root(size, &ours).unwrap(), ours.root().unwrap());
        }
        let root = ours.root().unwrap();

        // Inclusion: same proof bytes, and each side accepts the other's.
        let idx = idx_seed % n;
        let our_proof = merkle::inclusion_proof(n, idx, &ours).unwrap();
        let their_proof = theirs.prove_inclusion(idx as usize);
        prop_assert_eq!(to_bytes(&our_proof), their_proof.as_bytes().to_vec());
        let from_us = InclusionProof::<Sha256>::from_bytes(to_bytes(&our_proof));
        prop_assert!(ct_root(root, n).verify_inclusion(&leaves[idx as usize], idx, &from_us).is_ok());
        let leaf_hash = merkle::leaf_hash(&leaves[idx as usize]);
        merkle::verify_inclusion(&to_hashes(their_proof.as_bytes()), n, root, idx, leaf_hash).unwrap();

        // Consistency from a random earlier size to the full tree.
        let old = 1 + old_seed % n;
        let old_root = merkle::root(old, &ours).unwrap();
        let our_c = merkle::consistency_proof(old, n, &ours).unwrap();
        if old < n {
            let their_c = theirs.prove_consistency((n - old) as usize);
            prop_assert_eq!(to_bytes(&our_c), their_c.as_bytes().to_vec());
            let from_us = ConsistencyProof::<Sha256>::try_from_bytes(to_bytes(&our_c)).unwrap();
            prop_assert!(ct_root(root, n).verify_consistency(&ct_root(old_root, old), &from_us).is_ok());
            merkle::verify_consistency(&to_hashes(their_c.as_bytes()), old, old_root, n, root).unwrap();
        } else {
            prop_assert!(our_c.is_empty());
        }

        // A corrupted proof is refused by both.
        if !our_proof.is_empty() {
            let mut bad = our_proof.clone();
            bad[0].0[0] ^= 1;
            prop_assert!(merkle::verify_inclusion(&bad, n, root, idx, leaf_hash).is_err());
            let bad_ct = InclusionProof::<Sha256>::from_bytes(to_bytes(&bad));
            prop_assert!(ct_root(root, n).verify_inclusion(&leaves[idx as usize], idx, &bad_ct).is_err());
        }
    }
}
