//! RFC 6962 Merkle tree math over stored hashes, as a thin layer on
//! `tlog_tiles` (a port of Go's sumdb/tlog). The storage itself belongs to
//! the caller: this module must not do IO and must not panic whatever a
//! `HashReader` returns.

use std::cell::RefCell;
use std::collections::HashMap;

use thiserror::Error;
use tlog_tiles as tlog;

pub use tlog_tiles::Hash;

/// Largest tree size accepted anywhere. It keeps every index computation far
/// from `u64` overflow, and no log gets near it.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Longest proof accepted for checking. Real proofs are at most about
/// 2·log2(size) hashes; the bound stops a hostile proof from costing time.
pub const MAX_PROOF_HASHES: usize = 128;

/// The error a storage backend reports. The message is kept; the backend's
/// own error type stays on its side of the trait.
#[derive(Debug, Error)]
#[error("hash store: {0}")]
pub struct StoreError(pub Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    pub fn msg(m: impl Into<String>) -> Self {
        StoreError(m.into().into())
    }
}

#[derive(Debug, Error)]
pub enum MerkleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("hash store returned {got} hashes for {want} indexes")]
    ShortRead { want: usize, got: usize },
    #[error("invalid request: {0}")]
    InvalidInput(&'static str),
    #[error("proof does not verify")]
    InvalidProof,
    #[error("proof has {0} hashes, more than any valid proof")]
    ProofTooLong(usize),
}

/// Reads stored hashes by storage index (see [`tlog_tiles::stored_hash_index`]).
///
/// The server implements this over its interior-hash table; the result must
/// have one hash per requested index, in the requested order. Every function
/// here makes a single call, so a database implementation can answer it with
/// one `SELECT ... WHERE idx = ANY(...)`.
pub trait HashReader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;
}

/// One row of the interior-hash table: the hash stored at `index`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredHash {
    pub index: u64,
    pub hash: Hash,
}

/// `SHA-256(0x00 || bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    tlog::record_hash(bytes)
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: Hash, right: Hash) -> Hash {
    tlog::node_hash(left, right)
}

/// The storage index of leaf `n`'s own hash.
pub fn leaf_storage_index(n: u64) -> u64 {
    tlog::stored_hash_index(0, n)
}

/// How many hashes are stored for a tree of `size` leaves.
pub fn stored_hash_count(size: u64) -> u64 {
    tlog::stored_hash_count(size)
}

/// Adapts a [`HashReader`] to `tlog_tiles`, which asserts on short reads:
/// here a short read becomes an error instead, and the backend's error is
/// kept so it can be returned as is.
struct Guard<'a, R: ?Sized> {
    inner: &'a R,
    failure: RefCell<Option<MerkleError>>,
}

impl<'a, R: HashReader + ?Sized> Guard<'a, R> {
    fn new(inner: &'a R) -> Self {
        Guard {
            inner,
            failure: RefCell::new(None),
        }
    }

    fn finish<T>(self, r: Result<T, tlog::Error>) -> Result<T, MerkleError> {
        match (r, self.failure.into_inner()) {
            (_, Some(e)) => Err(e),
            (Ok(v), None) => Ok(v),
            (Err(tlog::Error::InvalidProof), None) => Err(MerkleError::InvalidProof),
            (Err(_), None) => Err(MerkleError::InvalidInput("rejected by tree math")),
        }
    }
}

impl<R: HashReader + ?Sized> tlog::HashReader for Guard<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        match self.inner.read_hashes(indexes) {
            Ok(v) if v.len() == indexes.len() => Ok(v),
            Ok(v) => {
                *self.failure.borrow_mut() = Some(MerkleError::ShortRead {
                    want: indexes.len(),
                    got: v.len(),
                });
                Err(tlog::Error::IndexesNotInTree)
            }
            Err(e) => {
                *self.failure.borrow_mut() = Some(MerkleError::Store(e));
                Err(tlog::Error::IndexesNotInTree)
            }
        }
    }
}

fn check_size(size: u64) -> Result<(), MerkleError> {
    if size > MAX_TREE_SIZE {
        return Err(MerkleError::InvalidInput("tree size too large"));
    }
    Ok(())
}

/// The rows to persist when appending `leaves` to a log that holds
/// `leaf_count` leaves, in storage-index order (contiguous, starting at
/// `stored_hash_count(leaf_count)`). Reads only hashes that existed before
/// the batch: the indexes in [`indexes_for_append`]`(leaf_count)`.
pub fn append<R: HashReader + ?Sized>(
    leaf_count: u64,
    leaves: &[&[u8]],
    r: &R,
) -> Result<Vec<StoredHash>, MerkleError> {
    let hashes: Vec<Hash> = leaves.iter().map(|b| leaf_hash(b)).collect();
    append_hashes(leaf_count, &hashes, r)
}

/// Like [`append`], for leaves whose hashes the caller already computed.
pub fn append_hashes<R: HashReader + ?Sized>(
    leaf_count: u64,
    leaf_hashes: &[Hash],
    r: &R,
) -> Result<Vec<StoredHash>, MerkleError> {
    let added = u64::try_from(leaf_hashes.len())
        .map_err(|_| MerkleError::InvalidInput("batch too large"))?;
    let end = leaf_count
        .checked_add(added)
        .ok_or(MerkleError::InvalidInput("tree size too large"))?;
    check_size(end)?;
    let first = stored_hash_count(leaf_count);
    let mut overlay = Overlay {
        base: r,
        first,
        new: Vec::with_capacity(leaf_hashes.len() * 2),
    };
    for (i, h) in leaf_hashes.iter().enumerate() {
        let n = leaf_count + i as u64;
        let g = Guard::new(&overlay);
        let res = tlog::stored_hashes_for_record_hash(n, *h, &g);
        let rows = g.finish(res)?;
        overlay.new.extend(rows);
    }
    Ok(overlay
        .new
        .into_iter()
        .enumerate()
        .map(|(i, hash)| StoredHash {
            index: first + i as u64,
            hash,
        })
        .collect())
}

/// Serves hashes written earlier in the same batch from memory and the rest
/// from the backing store.
struct Overlay<'a, R: ?Sized> {
    base: &'a R,
    first: u64,
    new: Vec<Hash>,
}

impl<R: HashReader + ?Sized> HashReader for Overlay<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let old: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| i < self.first)
            .collect();
        let mut old_hashes = if old.is_empty() {
            Vec::new()
        } else {
            self.base.read_hashes(&old)?
        }
        .into_iter();
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let h = if i < self.first {
                old_hashes.next()
            } else {
                usize::try_from(i - self.first)
                    .ok()
                    .and_then(|k| self.new.get(k).copied())
            };
            out.push(h.ok_or_else(|| StoreError::msg(format!("missing stored hash {i}")))?);
        }
        Ok(out)
    }
}

/// The root hash of the first `size` leaves.
pub fn root<R: HashReader + ?Sized>(size: u64, r: &R) -> Result<Hash, MerkleError> {
    check_size(size)?;
    let g = Guard::new(r);
    let res = tlog::tree_hash(size, &g);
    g.finish(res)
}

/// The audit path proving leaf `index` is in the tree of `size` leaves.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    size: u64,
    index: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(size)?;
    if index >= size {
        return Err(MerkleError::InvalidInput("leaf index not below tree size"));
    }
    let g = Guard::new(r);
    let res = tlog::prove_record(size, index, &g);
    g.finish(res)
}

/// The proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves.
pub fn consistency_proof<R: HashReader + ?Sized>(
    old_size: u64,
    new_size: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(new_size)?;
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::InvalidInput("need 1 <= old size <= new size"));
    }
    let g = Guard::new(r);
    let res = tlog::prove_tree(new_size, old_size, &g);
    g.finish(res)
}

/// Records which indexes a computation asks for, answering with zeros. The
/// tree math asks for indexes before it looks at any hash, so one dry run
/// yields exactly the set a real run needs.
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash([0; 32]); indexes.len()])
    }
}

fn record<T>(f: impl FnOnce(&Recorder) -> Result<T, MerkleError>) -> Result<Vec<u64>, MerkleError> {
    let rec = Recorder(RefCell::new(Vec::new()));
    f(&rec)?;
    Ok(rec.0.into_inner())
}

/// The storage indexes [`root`] will read, for servers that fetch them
/// asynchronously first and then compute from a [`PrefetchedHashes`].
pub fn indexes_for_root(size: u64) -> Result<Vec<u64>, MerkleError> {
    record(|r| root(size, r))
}

/// The storage indexes [`inclusion_proof`] will read.
pub fn indexes_for_inclusion(size: u64, index: u64) -> Result<Vec<u64>, MerkleError> {
    record(|r| inclusion_proof(size, index, r))
}

/// The storage indexes [`consistency_proof`] will read.
pub fn indexes_for_consistency(old_size: u64, new_size: u64) -> Result<Vec<u64>, MerkleError> {
    record(|r| consistency_proof(old_size, new_size, r))
}

/// The storage indexes an [`append`] of any batch to a log of `leaf_count`
/// leaves may read: the roots of the complete subtrees on its right edge.
pub fn indexes_for_append(leaf_count: u64) -> Result<Vec<u64>, MerkleError> {
    check_size(leaf_count)?;
    Ok(tlog::sub_tree_index(0, leaf_count, Vec::new()))
}

/// Hashes fetched ahead of time, answering reads from a map.
#[derive(Clone, Debug, Default)]
pub struct PrefetchedHashes(pub HashMap<u64, Hash>);

impl PrefetchedHashes {
    pub fn new(rows: impl IntoIterator<Item = (u64, Hash)>) -> Self {
        PrefetchedHashes(rows.into_iter().collect())
    }
}

impl HashReader for PrefetchedHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or_else(|| StoreError::msg(format!("hash {i} was not prefetched")))
            })
            .collect()
    }
}

/// All stored hashes in one vector, indexed by storage index. Used by tests,
/// the CLI's bundle verifier and the benchmarks; the server keeps the same
/// rows in a table.
#[derive(Clone, Debug, Default)]
pub struct MemoryHashStore {
    hashes: Vec<Hash>,
    leaves: u64,
}

impl MemoryHashStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> u64 {
        self.leaves
    }

    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// Appends one leaf by its bytes and returns its index.
    pub fn push(&mut self, leaf_bytes: &[u8]) -> Result<u64, MerkleError> {
        self.push_hash(leaf_hash(leaf_bytes))
    }

    /// Appends one leaf by its leaf hash and returns its index.
    pub fn push_hash(&mut self, h: Hash) -> Result<u64, MerkleError> {
        let n = self.leaves;
        check_size(n + 1)?;
        // Hot path of the bundle verifier: compute the new hashes directly
        // from the vector rather than through a reader and its allocations.
        self.hashes.push(h);
        let mut h = h;
        let mut level = 0u8;
        let mut m = n;
        while m & 1 == 1 {
            let left_index = tlog::stored_hash_index(level, (m >> 1) << 1);
            let left = usize::try_from(left_index)
                .ok()
                .and_then(|i| self.hashes.get(i).copied())
                .ok_or(MerkleError::InvalidInput("memory store out of step"))?;
            h = node_hash(left, h);
            self.hashes.push(h);
            level += 1;
            m >>= 1;
        }
        self.leaves = n + 1;
        Ok(n)
    }

    /// Writes rows computed by [`append`]; they must continue the store.
    pub fn extend_rows(
        &mut self,
        rows: &[StoredHash],
        leaves_added: u64,
    ) -> Result<(), MerkleError> {
        for row in rows {
            if row.index != self.hashes.len() as u64 {
                return Err(MerkleError::InvalidInput("rows do not continue the store"));
            }
            self.hashes.push(row.hash);
        }
        self.leaves += leaves_added;
        if stored_hash_count(self.leaves) != self.hashes.len() as u64 {
            return Err(MerkleError::InvalidInput("row count does not match leaves"));
        }
        Ok(())
    }

    pub fn root(&self) -> Result<Hash, MerkleError> {
        root(self.leaves, self)
    }

    /// The leaf hash of leaf `n`, if present.
    pub fn leaf_hash(&self, n: u64) -> Option<Hash> {
        if n >= self.leaves {
            return None;
        }
        usize::try_from(leaf_storage_index(n))
            .ok()
            .and_then(|i| self.hashes.get(i).copied())
    }
}

impl HashReader for MemoryHashStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i).copied())
                    .ok_or_else(|| StoreError::msg(format!("no stored hash at {i}")))
            })
            .collect()
    }
}

/// Checks that `proof` shows leaf `index` with hash `leaf` is in the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), MerkleError> {
    check_size(size)?;
    if proof.len() > MAX_PROOF_HASHES {
        return Err(MerkleError::ProofTooLong(proof.len()));
    }
    if index >= size {
        return Err(MerkleError::InvalidProof);
    }
    tlog::check_record(&proof.to_vec(), size, root, index, leaf)
        .map_err(|_| MerkleError::InvalidProof)
}

/// Checks that `proof` shows the tree (`old_size`, `old_root`) is a prefix of
/// the tree (`new_size`, `new_root`).
pub fn verify_consistency(
    proof: &[Hash],
    old_size: u64,
    old_root: Hash,
    new_size: u64,
    new_root: Hash,
) -> Result<(), MerkleError> {
    check_size(new_size)?;
    if proof.len() > MAX_PROOF_HASHES {
        return Err(MerkleError::ProofTooLong(proof.len()));
    }
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::InvalidProof);
    }
    tlog::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root)
        .map_err(|_| MerkleError::InvalidProof)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Hash {
        Hash(crate::encoding::unhex32(s).unwrap())
    }

    /// The eight leaves of the RFC 6962 reference tests (certificate-
    /// transparency's merkle_tree_test and Go's tlog ct tests).
    pub(crate) fn ct_leaves() -> Vec<Vec<u8>> {
        vec![
            vec![],
            vec![0x00],
            vec![0x10],
            vec![0x20, 0x21],
            vec![0x30, 0x31],
            vec![0x40, 0x41, 0x42, 0x43],
            vec![0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            (0x60..=0x6f).collect(),
        ]
    }

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn check_root(size: u64, want: &str) {
        let mut s = MemoryHashStore::new();
        for leaf in &ct_leaves()[..size as usize] {
            s.push(leaf).unwrap();
        }
        assert_eq!(s.root().unwrap(), unhex(want), "size {size} (push)");
        // The batch path the server uses must agree with the memory store.
        let leaves = ct_leaves();
        let refs: Vec<&[u8]> = leaves[..size as usize]
            .iter()
            .map(|v| v.as_slice())
            .collect();
        let mut t = MemoryHashStore::new();
        let rows = append(0, &refs, &t).unwrap();
        t.extend_rows(&rows, size).unwrap();
        assert_eq!(t.root().unwrap(), unhex(want), "size {size} (append)");
    }

    #[test]
    fn rfc6962_known_answer_roots() {
        assert_eq!(
            root(0, &MemoryHashStore::new()).unwrap(),
            unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        for (i, want) in CT_ROOTS.iter().enumerate() {
            check_root(i as u64 + 1, want);
        }
    }

    #[test]
    fn append_in_several_batches_matches_one_by_one() {
        let mut one = MemoryHashStore::new();
        let mut batched = MemoryHashStore::new();
        let leaves: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for l in &leaves {
            one.push(l).unwrap();
        }
        let mut start = 0usize;
        for batch in [1usize, 2, 3, 7, 16, 31, 40] {
            let refs: Vec<&[u8]> = leaves[start..start + batch]
                .iter()
                .map(|v| v.as_slice())
                .collect();
            let needed = indexes_for_append(start as u64).unwrap();
            // Only the prefetched right edge is available to the batch.
            let pre = PrefetchedHashes::new(
                needed
                    .iter()
                    .map(|&i| (i, batched.read_hashes(&[i]).unwrap()[0])),
            );
            let rows = append(start as u64, &refs, &pre).unwrap();
            batched.extend_rows(&rows, batch as u64).unwrap();
            start += batch;
        }
        assert_eq!(
            one.read_hashes(&(0..stored_hash_count(100)).collect::<Vec<_>>())
                .unwrap(),
            batched
                .read_hashes(&(0..stored_hash_count(100)).collect::<Vec<_>>())
                .unwrap()
        );
    }

    #[test]
    fn prefetch_plans_cover_what_is_read() {
        let mut s = MemoryHashStore::new();
        for i in 0..1000u32 {
            s.push(&i.to_le_bytes()).unwrap();
        }
        for (size, index) in [
            (1u64, 0u64),
            (2, 1),
            (7, 3),
            (1000, 0),
            (1000, 999),
            (513, 512),
        ] {
            let pre = PrefetchedHashes::new(
                indexes_for_inclusion(size, index)
                    .unwrap()
                    .into_iter()
                    .map(|i| (i, s.read_hashes(&[i]).unwrap()[0])),
            );
            assert_eq!(
                inclusion_proof(size, index, &pre).unwrap(),
                inclusion_proof(size, index, &s).unwrap()
            );
            let pre = PrefetchedHashes::new(
                indexes_for_root(size)
                    .unwrap()
                    .into_iter()
                    .map(|i| (i, s.read_hashes(&[i]).unwrap()[0])),
            );
            assert_eq!(root(size, &pre).unwrap(), root(size, &s).unwrap());
            let pre = PrefetchedHashes::new(
                indexes_for_consistency(index + 1, size)
                    .unwrap()
                    .into_iter()
                    .map(|i| (i, s.read_hashes(&[i]).unwrap()[0])),
            );
            assert_eq!(
                consistency_proof(index + 1, size, &pre).unwrap(),
                consistency_proof(index + 1, size, &s).unwrap()
            );
        }
    }

    struct Liar(usize);
    impl HashReader for Liar {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
            Ok(vec![Hash([1; 32]); indexes.len().saturating_sub(self.0)])
        }
    }

    struct Broken;
    impl HashReader for Broken {
        fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, StoreError> {
            Err(StoreError::msg("connection reset"))
        }
    }

    #[test]
    fn bad_readers_give_errors_not_panics() {
        assert!(matches!(
            root(100, &Liar(1)),
            Err(MerkleError::ShortRead { .. })
        ));
        assert!(matches!(
            inclusion_proof(100, 5, &Liar(1)),
            Err(MerkleError::ShortRead { .. })
        ));
        assert!(matches!(
            consistency_proof(5, 100, &Liar(1)),
            Err(MerkleError::ShortRead { .. })
        ));
        assert!(matches!(
            append(3, &[b"x"], &Liar(1)),
            Err(MerkleError::Store(_) | MerkleError::ShortRead { .. })
        ));
        let e = root(100, &Broken).unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(matches!(
            inclusion_proof(5, 5, &Broken),
            Err(MerkleError::InvalidInput(_))
        ));
        assert!(matches!(
            consistency_proof(0, 5, &Broken),
            Err(MerkleError::InvalidInput(_))
        ));
        assert!(matches!(
            consistency_proof(6, 5, &Broken),
            Err(MerkleError::InvalidInput(_))
        ));
        assert!(matches!(
            root(u64::MAX, &Broken),
            Err(MerkleError::InvalidInput(_))
        ));
    }

    /// A tree of 37 leaves with a root, a leaf and valid proofs, for the
    /// negative cases below.
    fn fixture() -> (MemoryHashStore, Hash) {
        let mut s = MemoryHashStore::new();
        for i in 0..37u32 {
            s.push(&i.to_be_bytes()).unwrap();
        }
        let r = s.root().unwrap();
        (s, r)
    }

    fn flip(h: &mut Hash, bit: usize) {
        h.0[bit / 8] ^= 1 << (bit % 8);
    }

    #[test]
    fn inclusion_negative_vectors() {
        let (s, root37) = fixture();
        // The last leaf, so that a neighbouring size changes the path.
        // (For a leaf inside a complete left subtree, RFC 6962 paths are the
        // same for many sizes; the signed checkpoint is what binds the size.)
        let idx = 36u64;
        let leaf = s.leaf_hash(idx).unwrap();
        let proof = inclusion_proof(37, idx, &s).unwrap();
        verify_inclusion(&proof, 37, root37, idx, leaf).unwrap();

        let check = |proof: &[Hash], size: u64, root: Hash, index: u64, leaf: Hash, what: &str| {
            assert!(
                verify_inclusion(proof, size, root, index, leaf).is_err(),
                "{what} accepted"
            );
        };
        for p in 0..proof.len() {
            for bit in [0, 77, 255] {
                let mut bad = proof.clone();
                flip(&mut bad[p], bit);
                check(&bad, 37, root37, idx, leaf, "flipped proof bit");
            }
        }
        let mut bad_leaf = leaf;
        flip(&mut bad_leaf, 3);
        check(&proof, 37, root37, idx, bad_leaf, "flipped leaf bit");
        check(&proof, 37, root37, idx + 1, leaf, "index + 1");
        check(&proof, 37, root37, idx - 1, leaf, "index - 1");
        let mut bad_root = root37;
        flip(&mut bad_root, 200);
        check(&proof, 37, bad_root, idx, leaf, "wrong root");
        check(&proof, 36, root37, idx, leaf, "size - 1");
        check(&proof, 38, root37, idx, leaf, "size + 1");
        check(
            &proof,
            37,
            root(36, &s).unwrap(),
            idx,
            leaf,
            "root of another size",
        );
        check(
            &proof[..proof.len() - 1],
            37,
            root37,
            idx,
            leaf,
            "truncated proof",
        );
        let mut longer = proof.clone();
        longer.push(leaf);
        check(&longer, 37, root37, idx, leaf, "extended proof");
        check(&[], 37, root37, idx, leaf, "empty proof");
        check(&proof, 37, root37, 37, leaf, "index = size");
        check(&vec![leaf; 10_000], 37, root37, idx, leaf, "huge proof");
        check(&proof, u64::MAX, root37, idx, leaf, "absurd size");
    }

    #[test]
    fn consistency_negative_vectors() {
        let (s, root37) = fixture();
        // Sizes chosen so that each neighbouring size changes the proof
        // shape (see the note in inclusion_negative_vectors).
        let root20 = root(36, &s).unwrap();
        let proof = consistency_proof(36, 37, &s).unwrap();
        verify_consistency(&proof, 36, root20, 37, root37).unwrap();
        verify_consistency(&[], 37, root37, 37, root37).unwrap();

        let check =
            |proof: &[Hash], old: u64, old_root: Hash, new: u64, new_root: Hash, what: &str| {
                assert!(
                    verify_consistency(proof, old, old_root, new, new_root).is_err(),
                    "{what} accepted"
                );
            };
        for p in 0..proof.len() {
            let mut bad = proof.clone();
            flip(&mut bad[p], 9);
            check(&bad, 36, root20, 37, root37, "flipped proof bit");
        }
        let mut r = root20;
        flip(&mut r, 0);
        check(&proof, 36, r, 37, root37, "wrong old root");
        let mut r = root37;
        flip(&mut r, 0);
        check(&proof, 36, root20, 37, r, "wrong new root");
        check(&proof, 35, root20, 37, root37, "old size - 1");
        check(&proof, 37, root20, 37, root37, "old size + 1");
        check(&proof, 36, root20, 36, root37, "new size - 1");
        // Growing the new size past a power of two changes the proof shape;
        // 36 -> 38 has the same shape as 36 -> 37, so it is bound only by the
        // root, which the signed checkpoint fixes.
        let root32 = root(32, &s).unwrap();
        let p20_32 = consistency_proof(20, 32, &s).unwrap();
        verify_consistency(&p20_32, 20, root(20, &s).unwrap(), 32, root32).unwrap();
        check(
            &p20_32,
            20,
            root(20, &s).unwrap(),
            33,
            root32,
            "new size + 1",
        );
        check(&proof, 37, root37, 36, root20, "swapped");
        check(&proof, 0, root20, 37, root37, "old size 0");
        check(&proof[1..], 36, root20, 37, root37, "truncated");
        check(&[], 37, root37, 37, root20, "same size, other root");
        check(&vec![root20; 1000], 36, root20, 37, root37, "huge proof");
    }
}
