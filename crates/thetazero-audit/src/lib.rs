//! Verifiable audit log math for thetazero: leaves, RFC 6962 Merkle proofs,
//! signed checkpoints, proof bundles, exports and execution receipts.
//! Pure: this crate must never do IO beyond the readers and writers it is
//! handed, never talk to a database or network, and never panic on input.
//!
//! # Storage contract
//!
//! One log per account. For each log the server keeps, append-only:
//!
//! - **leaves**: `(leaf_index, leaf_bytes)`, `leaf_index` contiguous from 0
//!   (taken from a counter row in the same transaction, never a sequence).
//!   `leaf_bytes` is exactly [`AuditLeaf::to_bytes`]; it is never rewritten.
//! - **hashes**: `(storage_index, hash)` rows, exactly as returned by
//!   [`merkle::append`]. A log of `n` leaves holds
//!   `merkle::stored_hash_count(n)` rows with storage indexes `0..count`
//!   (about two per leaf); leaf `i`'s own hash is at
//!   `merkle::leaf_storage_index(i)`.
//! - **checkpoints**: every signed note, and the last one, to resume the
//!   [`CheckpointSigner`] after a restart.
//!
//! Appending a batch: read the hashes at
//! `merkle::indexes_for_append(n)`, call [`merkle::append`]`(n, leaves,
//! reader)`, insert the leaves and the returned rows in one transaction.
//! Reading: implement [`HashReader`] (one batched `SELECT` by storage index),
//! or fetch `merkle::indexes_for_{root,inclusion,consistency}` asynchronously
//! into a [`merkle::PrefetchedHashes`] and compute from that.
//!
//! # Bundle format
//!
//! JSON Lines, one object per line, tagged by `type` (see [`bundle::Line`]):
//! a `header` first (`format`, `origin`, `verifier_key`), then `entry` lines
//! in leaf order (`leaf_index`, `leaf_b64`, `leaf_hash`), and anywhere after
//! the header `checkpoint` (`note`), `consistency` (`from`, `to`, `proof`),
//! `anchor` (`kind`, `checkpoint_size`, `status`, `external_ref`) and
//! `receipt` (`leaf_index`, `leaf_hash`) lines.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod checkpoint;
pub mod csv;
mod encoding;
pub mod leaf;
mod leaf_fast;
pub mod merkle;
pub mod proof;
pub mod receipt;

pub use bundle::{verify_bundle, BundleWriter, Finding, Report};
pub use checkpoint::{
    AuditSigner, Checkpoint, CheckpointError, CheckpointSigner, SignRefusal, VerifierKey,
};
pub use leaf::{AuditLeaf, Decision, Digest, LeafError, Salt};
pub use merkle::{Hash, HashReader, MemoryHashStore, MerkleError, StoreError, StoredHash};
pub use proof::{verify_record_proof, RecordProof, Verified, VerifyError};
pub use receipt::{verify_receipt, ExecutionReceipt, ReceiptError, VerifiedReceipt};
