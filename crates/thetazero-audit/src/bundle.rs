//! The verifiable export bundle (JSON Lines) and its offline verifier, as run
//! by `thetazero audit verify`. The verifier reads untrusted input: it must
//! never panic, must bound what one line can cost, and must report every
//! check and every finding by name rather than stop at the first.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, SyncSender};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::checkpoint::{Checkpoint, CheckpointError, VerifierKey};
use crate::encoding::{b64, hash_b64, hash_from_b64, unb64};
use crate::leaf::{AuditLeaf, MAX_LEAF_BYTES};
use crate::merkle::{self, Hash, MemoryHashStore, MAX_PROOF_HASHES};
use crate::proof::Anchor;

/// Value of the header's `format` field.
pub const BUNDLE_FORMAT: &str = "tz.audit.bundle.v1";

/// Longest line the verifier reads; a checkpoint note or an entry is a few
/// kilobytes at most.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Findings kept in a report; past this the report says it was cut.
pub const MAX_FINDINGS: usize = 10_000;

/// One line of a bundle. The first line is the header; entries come in leaf
/// order; the other kinds may appear anywhere after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    Header {
        format: String,
        origin: String,
        verifier_key: String,
    },
    Entry {
        leaf_index: u64,
        leaf_b64: String,
        /// The hash the server stored for this leaf, so a changed leaf is
        /// reported at its own index and not only as a root mismatch.
        leaf_hash: String,
    },
    Checkpoint {
        note: String,
    },
    Consistency {
        from: u64,
        to: u64,
        proof: Vec<String>,
    },
    Anchor {
        kind: String,
        checkpoint_size: u64,
        status: String,
        external_ref: Option<String>,
    },
    /// A receipt the client was given (`leaf_index`, `leaf_hash`), added
    /// by the client before verifying.
    Receipt {
        leaf_index: u64,
        leaf_hash: String,
    },
}

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("writing bundle: {0}")]
    Io(#[from] io::Error),
    #[error("encoding bundle line: {0}")]
    Json(#[from] serde_json::Error),
}

/// Streams a bundle out, one line per call, so a server can export a
/// million entries without holding them.
pub struct BundleWriter<W: Write> {
    out: W,
}

impl<W: Write> BundleWriter<W> {
    pub fn new(out: W, origin: &str, key: &VerifierKey) -> Result<Self, BundleError> {
        let mut w = BundleWriter { out };
        w.line(&Line::Header {
            format: BUNDLE_FORMAT.into(),
            origin: origin.into(),
            verifier_key: key.as_str().into(),
        })?;
        Ok(w)
    }

    pub fn line(&mut self, line: &Line) -> Result<(), BundleError> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn entry(&mut self, leaf_index: u64, leaf: &[u8]) -> Result<(), BundleError> {
        self.line(&Line::Entry {
            leaf_index,
            leaf_b64: b64(leaf),
            leaf_hash: hash_b64(&merkle::leaf_hash(leaf)),
        })
    }

    pub fn checkpoint(&mut self, note: &str) -> Result<(), BundleError> {
        self.line(&Line::Checkpoint { note: note.into() })
    }

    pub fn consistency(&mut self, from: u64, to: u64, proof: &[Hash]) -> Result<(), BundleError> {
        self.line(&Line::Consistency {
            from,
            to,
            proof: proof.iter().map(hash_b64).collect(),
        })
    }

    pub fn anchor(&mut self, a: &Anchor) -> Result<(), BundleError> {
        self.line(&Line::Anchor {
            kind: a.kind.clone(),
            checkpoint_size: a.checkpoint_size,
            status: a.status.clone(),
            external_ref: a.external_ref.clone(),
        })
    }

    pub fn receipt(&mut self, leaf_index: u64, leaf_hash: &Hash) -> Result<(), BundleError> {
        self.line(&Line::Receipt {
            leaf_index,
            leaf_hash: hash_b64(leaf_hash),
        })
    }

    pub fn finish(mut self) -> Result<W, BundleError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One problem found, by a stable snake_case name and a detail, displayed as
/// `name detail` (for example `index_gap 41->43`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.name)
        } else {
            write!(f, "{} {}", self.name, self.detail)
        }
    }
}

/// What `verify_bundle` checked and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub origin: Option<String>,
    pub entries: u64,
    /// Root of all entries, as recomputed from the leaves.
    pub root: Option<Hash>,
    /// Largest checkpoint whose signature and root both verified.
    pub largest_verified_checkpoint: Option<Checkpoint>,
    /// Every check made, in order, each with how it came out.
    pub checks: Vec<String>,
    pub findings: Vec<Finding>,
    pub findings_truncated: bool,
}

impl Report {
    /// True when every check passed.
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty() && !self.findings_truncated
    }

    /// Whether some finding has this name.
    pub fn has(&self, name: &str) -> bool {
        self.findings.iter().any(|f| f.name == name)
    }

    fn find(&mut self, name: &'static str, detail: impl Into<String>) {
        if self.findings.len() >= MAX_FINDINGS {
            self.findings_truncated = true;
            return;
        }
        self.findings.push(Finding {
            name,
            detail: detail.into(),
        });
    }

    fn check(&mut self, text: String) {
        self.checks.push(text);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(f, "check: {c}")?;
        }
        for x in &self.findings {
            writeln!(f, "FINDING: {x}")?;
        }
        if self.findings_truncated {
            writeln!(f, "FINDING: findings_truncated after {MAX_FINDINGS}")?;
        }
        let verdict = if self.is_valid() { "VALID" } else { "INVALID" };
        write!(f, "{verdict}: {} entries", self.entries)
    }
}

/// Options for [`verify_bundle_with`].
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// Parse each leaf as a strict `tz.audit.v1` leaf. On by default; off
    /// checks only the tree, for logs with other leaf types.
    pub check_leaf_schema: bool,
    /// Run the leaf schema checks on a second thread. On by default; the
    /// findings are the same either way.
    pub parallel: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            check_leaf_schema: true,
            parallel: true,
        }
    }
}

/// Verifies a bundle against the pinned verifier key with default options.
pub fn verify_bundle<R: BufRead>(reader: R, key: &VerifierKey) -> Report {
    verify_bundle_with(reader, key, VerifyOptions::default())
}

#[derive(Default)]
struct State {
    report: Report,
    store: MemoryHashStore,
    header_seen: bool,
    origin: Option<String>,
    /// Last leaf index read, to name gaps by their ends.
    last_index: Option<u64>,
    checkpoints: Vec<(usize, Checkpoint)>,
    consistency: Vec<(usize, u64, u64, Vec<Hash>)>,
    anchors: Vec<(usize, u64, String)>,
    receipts: Vec<(usize, u64, Hash)>,
    leaf_hash_mismatches: u64,
    malformed_leaves: u64,
    /// Where leaves go for schema checks, when a checker thread runs.
    checker: Option<SyncSender<LeafBatch>>,
    pending: Vec<(u64, Vec<u8>)>,
}

/// Verifies a bundle: recomputes the tree from every leaf, checks that leaf
/// indices run from 0 without gaps, each checkpoint's signature and root,
/// consistency proofs between successive checkpoints, receipts and anchors.
pub fn verify_bundle_with<R: BufRead>(reader: R, key: &VerifierKey, opts: VerifyOptions) -> Report {
    if !opts.check_leaf_schema || !opts.parallel {
        return read_all(reader, key, opts, None).finish(key);
    }
    // Leaf schema checks are independent of the tree and cost about as much
    // as the rest together, so a second thread runs them when it can.
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<LeafBatch>(8);
        let worker = std::thread::Builder::new()
            .name("leaf-check".into())
            .spawn_scoped(scope, move || {
                let mut bad = Vec::new();
                for batch in rx {
                    for (index, leaf) in batch {
                        if let Err(e) = AuditLeaf::check_bytes(&leaf) {
                            if bad.len() <= MAX_FINDINGS {
                                bad.push((index, e.to_string()));
                            }
                        }
                    }
                }
                bad
            });
        let Ok(worker) = worker else {
            // No thread to be had: check inline instead.
            return read_all(reader, key, opts, None).finish(key);
        };
        let mut st = read_all(reader, key, opts, Some(tx));
        match worker.join() {
            Ok(bad) => {
                st.malformed_leaves += bad.len() as u64;
                for (index, e) in bad {
                    st.report.find("leaf_invalid", format!("at {index}: {e}"));
                }
            }
            Err(_) => st
                .report
                .find("internal_error", "leaf checker stopped unexpectedly"),
        }
        st.finish(key)
    })
}

/// Leaves handed to the checker thread per message.
const LEAF_BATCH: usize = 1024;

/// (leaf index, leaf bytes) pairs on their way to the checker thread.
type LeafBatch = Vec<(u64, Vec<u8>)>;

fn read_all<R: BufRead>(
    mut reader: R,
    key: &VerifierKey,
    opts: VerifyOptions,
    checker: Option<SyncSender<LeafBatch>>,
) -> State {
    let mut st = State {
        checker,
        ..State::default()
    };
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0usize;
    loop {
        buf.clear();
        match read_bounded_line(&mut reader, &mut buf) {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong) => {
                line_no += 1;
                st.report.find("line_too_long", format!("line {line_no}"));
                continue;
            }
            Ok(LineRead::Line) => line_no += 1,
            Err(e) => {
                st.report
                    .find("read_error", format!("after line {line_no}: {e}"));
                break;
            }
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            continue;
        }
        // Entries are nearly every line of a large bundle: parse them with
        // borrowed strings first, and fall back to the general form.
        if let Ok(e) = serde_json::from_slice::<RawEntry<'_>>(text) {
            if e.line_type == "entry" {
                st.before_line(line_no, false);
                st.entry(e.leaf_index, &e.leaf_b64, &e.leaf_hash, opts);
                continue;
            }
        }
        match serde_json::from_slice::<Line>(text) {
            Ok(line) => st.line(line_no, line, key, opts),
            Err(e) => st
                .report
                .find("line_malformed", format!("line {line_no}: {e}")),
        }
    }
    st.flush_leaves();
    // Dropping the sender ends the checker's loop.
    st.checker = None;
    st
}

/// An entry line, borrowing from the input where it can.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry<'a> {
    #[serde(rename = "type", borrow)]
    line_type: Cow<'a, str>,
    leaf_index: u64,
    #[serde(borrow)]
    leaf_b64: Cow<'a, str>,
    #[serde(borrow)]
    leaf_hash: Cow<'a, str>,
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line of at most `MAX_LINE_BYTES`; a longer line is skipped to
/// its end without being held in memory.
fn read_bounded_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = io::Read::take(&mut *r, limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(LineRead::Eof);
    }
    if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
        loop {
            buf.clear();
            let n = io::Read::take(&mut *r, limit).read_until(b'\n', buf)?;
            if n == 0 || buf.last() == Some(&b'\n') {
                break;
            }
        }
        buf.clear();
        return Ok(LineRead::TooLong);
    }
    Ok(LineRead::Line)
}

impl State {
    /// The header must come first; anything else first is reported once.
    fn before_line(&mut self, line_no: usize, is_header: bool) {
        if !self.header_seen && !is_header {
            self.report
                .find("missing_header", format!("line {line_no}"));
            self.header_seen = true;
        }
    }

    fn line(&mut self, line_no: usize, line: Line, key: &VerifierKey, opts: VerifyOptions) {
        self.before_line(line_no, matches!(line, Line::Header { .. }));
        match line {
            Line::Header {
                format,
                origin,
                verifier_key,
            } => {
                if self.header_seen {
                    self.report
                        .find("duplicate_header", format!("line {line_no}"));
                    return;
                }
                self.header_seen = true;
                if format != BUNDLE_FORMAT {
                    self.report.find("unknown_format", format);
                }
                if verifier_key.trim() != key.as_str() {
                    // The pinned key is used regardless; a bundle that names
                    // another key was not made for this verifier.
                    self.report.find("verifier_key_mismatch", verifier_key);
                }
                self.report.origin = Some(origin.clone());
                self.origin = Some(origin);
            }
            Line::Entry {
                leaf_index,
                leaf_b64,
                leaf_hash,
            } => self.entry(leaf_index, &leaf_b64, &leaf_hash, opts),
            Line::Checkpoint { note } => match key.open_checkpoint(&note, self.origin.as_deref()) {
                Ok(cp) => self.checkpoints.push((line_no, cp)),
                Err(CheckpointError::BadSignature | CheckpointError::UnknownKey) => {
                    self.report.find("bad_signature", format!("line {line_no}"));
                }
                Err(CheckpointError::OriginMismatch { got, .. }) => {
                    self.report
                        .find("origin_mismatch", format!("line {line_no}: {got}"));
                }
                Err(e) => self
                    .report
                    .find("checkpoint_malformed", format!("line {line_no}: {e}")),
            },
            Line::Consistency { from, to, proof } => {
                let hashes: Option<Vec<Hash>> = if proof.len() > MAX_PROOF_HASHES {
                    None
                } else {
                    proof.iter().map(|s| hash_from_b64(s)).collect()
                };
                match hashes {
                    Some(h) => self.consistency.push((line_no, from, to, h)),
                    None => self
                        .report
                        .find("consistency_proof_malformed", format!("{from}->{to}")),
                }
            }
            Line::Anchor {
                checkpoint_size,
                status,
                ..
            } => self.anchors.push((line_no, checkpoint_size, status)),
            Line::Receipt {
                leaf_index,
                leaf_hash,
            } => match hash_from_b64(&leaf_hash) {
                Some(h) => self.receipts.push((line_no, leaf_index, h)),
                None => self
                    .report
                    .find("receipt_malformed", format!("line {line_no}")),
            },
        }
    }

    fn entry(&mut self, index: u64, leaf_b64: &str, claimed: &str, opts: VerifyOptions) {
        let expected = self.store.len();
        if index != expected {
            let prev = self
                .last_index
                .map_or_else(|| "start".to_owned(), |p| p.to_string());
            let name = if index > expected {
                "index_gap"
            } else {
                "index_out_of_order"
            };
            self.report.find(name, format!("{prev}->{index}"));
        }
        self.last_index = Some(index);
        let leaf = if leaf_b64.len() <= MAX_LEAF_BYTES * 4 / 3 + 4 {
            unb64(leaf_b64)
        } else {
            None
        };
        // A leaf that cannot be decoded still takes its place in the tree
        // (as the empty leaf), so later positions stay where the server put
        // them and only the affected roots fail.
        let leaf = leaf.unwrap_or_else(|| {
            self.malformed_leaves += 1;
            self.report.find("leaf_malformed", format!("at {index}"));
            Vec::new()
        });
        let h = merkle::leaf_hash(&leaf);
        if hash_from_b64(claimed) != Some(h) {
            self.leaf_hash_mismatches += 1;
            self.report
                .find("leaf_hash_mismatch", format!("at {index}"));
        }
        if let Err(e) = self.store.push_hash(h) {
            self.report.find("tree_error", e.to_string());
        }
        if opts.check_leaf_schema && !leaf.is_empty() {
            if self.checker.is_some() {
                self.pending.push((index, leaf));
                if self.pending.len() >= LEAF_BATCH {
                    self.flush_leaves();
                }
            } else {
                self.check_leaf(index, &leaf);
            }
        }
    }

    fn check_leaf(&mut self, index: u64, leaf: &[u8]) {
        if let Err(e) = AuditLeaf::check_bytes(leaf) {
            self.malformed_leaves += 1;
            self.report.find("leaf_invalid", format!("at {index}: {e}"));
        }
    }

    fn flush_leaves(&mut self) {
        let batch = std::mem::take(&mut self.pending);
        let Some(tx) = &self.checker else {
            return;
        };
        if let Err(mpsc::SendError(batch)) = tx.send(batch) {
            // The checker is gone; check here so no leaf goes unchecked.
            self.checker = None;
            for (index, leaf) in batch {
                self.check_leaf(index, &leaf);
            }
        }
    }

    fn finish(mut self, key: &VerifierKey) -> Report {
        let n = self.store.len();
        let r = &mut self.report;
        if !self.header_seen {
            r.find("missing_header", "empty bundle");
        }
        r.entries = n;
        r.root = self.store.root().ok();
        r.check(format!(
            "entries: {n} read, indices checked for contiguity from 0, {} leaf hash mismatches, {} malformed leaves",
            self.leaf_hash_mismatches, self.malformed_leaves
        ));
        if let Some(root) = r.root {
            r.check(format!(
                "root of {n} entries recomputed: {}",
                hash_b64(&root)
            ));
        }

        // Checkpoints by size; two different roots for one size is a fork.
        let mut by_size: BTreeMap<u64, Checkpoint> = BTreeMap::new();
        for (line, cp) in &self.checkpoints {
            match by_size.get(&cp.size) {
                Some(prev) if prev.root != cp.root => {
                    r.find("checkpoint_fork", format!("size {} (line {line})", cp.size));
                }
                Some(_) => {}
                None => {
                    by_size.insert(cp.size, cp.clone());
                }
            }
        }
        r.check(format!(
            "checkpoints: {} with valid signatures by {}",
            self.checkpoints.len(),
            key.as_str()
        ));
        if by_size.is_empty() {
            r.find("no_checkpoint", "no signed checkpoint covers the entries");
        }
        for cp in by_size.values() {
            if cp.size > n {
                r.find(
                    "checkpoint_beyond_entries",
                    format!("size {} > {n} entries", cp.size),
                );
                continue;
            }
            match merkle::root(cp.size, &self.store) {
                Ok(root) if root == cp.root => {
                    r.check(format!("checkpoint_root size {}: ok", cp.size));
                    r.largest_verified_checkpoint = Some(cp.clone());
                }
                Ok(_) => r.find("checkpoint_root_mismatch", format!("size {}", cp.size)),
                Err(e) => r.find("tree_error", e.to_string()),
            }
        }
        if let Some((&last, _)) = by_size.last_key_value() {
            if last < n {
                r.find(
                    "unsigned_tail",
                    format!("entries {last}..{n} are in no checkpoint"),
                );
            }
        }

        // Every consistency proof given must verify; each successive pair of
        // checkpoints must have one.
        let mut proven: Vec<(u64, u64)> = Vec::new();
        for (_, from, to, proof) in &self.consistency {
            let (Some(a), Some(b)) = (by_size.get(from), by_size.get(to)) else {
                r.find(
                    "consistency_proof_unknown_checkpoint",
                    format!("{from}->{to}"),
                );
                continue;
            };
            match merkle::verify_consistency(proof, a.size, a.root, b.size, b.root) {
                Ok(()) => {
                    r.check(format!("consistency {from}->{to}: ok"));
                    proven.push((*from, *to));
                }
                Err(_) => r.find("consistency_proof_invalid", format!("{from}->{to}")),
            }
        }
        let sizes: Vec<u64> = by_size.keys().copied().filter(|&s| s > 0).collect();
        for pair in sizes.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let invalid = r
                .findings
                .iter()
                .any(|f| f.name == "consistency_proof_invalid" && f.detail == format!("{a}->{b}"));
            if !proven.contains(&(a, b)) && !invalid {
                r.find("consistency_proof_missing", format!("{a}->{b}"));
            }
        }

        for (_, index, h) in &self.receipts {
            match self.store.leaf_hash(*index) {
                None => r.find("receipt_not_included", index.to_string()),
                Some(got) if got != *h => r.find("receipt_hash_mismatch", index.to_string()),
                Some(_) => {
                    let covered = r
                        .largest_verified_checkpoint
                        .as_ref()
                        .is_some_and(|c| *index < c.size);
                    if covered {
                        r.check(format!("receipt {index}: included"));
                    } else {
                        r.find("receipt_not_covered", index.to_string());
                    }
                }
            }
        }

        for (_, size, status) in &self.anchors {
            if by_size.contains_key(size) {
                r.check(format!(
                    "anchor of checkpoint {size}: {status} (external proof not checked offline)"
                ));
            } else {
                r.find("anchor_unknown_checkpoint", format!("size {size}"));
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let input = format!("a\n{long}\nb\n{long}");
        let mut r = io::Cursor::new(input.into_bytes());
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            buf.clear();
            match read_bounded_line(&mut r, &mut buf).unwrap() {
                LineRead::Eof => break,
                LineRead::TooLong => seen.push("too long".to_owned()),
                LineRead::Line => seen.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(seen, ["a\n", "too long", "b\n", "too long"]);
    }

    #[test]
    fn finding_display() {
        let f = Finding {
            name: "index_gap",
            detail: "41->43".into(),
        };
        assert_eq!(f.to_string(), "index_gap 41->43");
    }
}
