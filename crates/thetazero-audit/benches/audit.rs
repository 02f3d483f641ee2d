//! Benchmark binary (`cargo bench --bench audit`): append math, proof
//! generation at 1,000,000 leaves, and full verification of a
//! 1,000,000-event bundle, each printed beside a baseline measured in the
//! same run. It measures; it must not assert on time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use thetazero_audit::bundle::{verify_bundle, verify_bundle_with, BundleWriter, VerifyOptions};
use thetazero_audit::checkpoint::{AuditSigner, CheckpointSigner};
use thetazero_audit::leaf::{AuditLeaf, Decision, Digest, LEAF_TYPE};
use thetazero_audit::merkle::{self, Hash, MemoryHashStore};

const N: u64 = 1_000_000;
const ORIGIN: &str = "bench.example/audit/1";

fn leaf(i: u64) -> Vec<u8> {
    AuditLeaf {
        leaf_type: LEAF_TYPE.into(),
        account_id: 7,
        agent_id: Some(42),
        execution_id: Some(i as i64 / 20),
        action_type: "api_call".into(),
        action_category: "network".into(),
        time: "2026-01-31T12:00:00.123456Z".into(),
        permission_state: "granted".into(),
        decision: Decision::Allow,
        is_violation: false,
        key_id: Some(3),
        input_digest: Some(Digest::of(&i.to_be_bytes())),
        output_digest: Some(Digest::of(&(i + 1).to_be_bytes())),
        summary: format!("http_request GET https://api.example.com/items/{i} -> 200"),
        payload_commitment: Digest::of(&i.to_le_bytes()),
    }
    .to_bytes()
    .unwrap_or_default()
}

/// Baseline: the RFC 6962 definition, MTH(D[n]) computed recursively over
/// the leaf hashes, with no stored hashes at all.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash(Sha256::digest([]).into()),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            merkle::node_hash(naive_root(&leaves[..k]), naive_root(&leaves[k..]))
        }
    }
}

fn per_op(d: Duration, ops: u64) -> f64 {
    d.as_secs_f64() * 1e6 / ops as f64
}

fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 11
}

fn main() {
    println!("thetazero-audit benchmark, N = {N}");
    let t = Instant::now();
    let leaves: Vec<Vec<u8>> = (0..N).map(leaf).collect();
    let avg = leaves.iter().map(Vec::len).sum::<usize>() as f64 / N as f64;
    println!(
        "built {N} canonical leaves (avg {avg:.0} bytes) in {:.2?}",
        t.elapsed()
    );

    // 1. Append math: leaf hash + stored hashes.
    let t = Instant::now();
    let mut store = MemoryHashStore::new();
    for l in &leaves {
        let _ = store.push(l);
    }
    let push = t.elapsed();
    println!(
        "append (memory store, leaf hash + stored hashes): {:.2?} total, {:.0} appends/s",
        push,
        N as f64 / push.as_secs_f64()
    );

    // The server's path: batches of 256 through `append` over a reader.
    let t = Instant::now();
    let mut batched = MemoryHashStore::new();
    for (b, chunk) in leaves.chunks(256).enumerate() {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let start = b as u64 * 256;
        if let Ok(rows) = merkle::append(start, &refs, &batched) {
            let _ = batched.extend_rows(&rows, chunk.len() as u64);
        }
    }
    let batch = t.elapsed();
    println!(
        "append (server path, batches of 256 via merkle::append): {:.2?} total, {:.0} appends/s",
        batch,
        N as f64 / batch.as_secs_f64()
    );

    let t = Instant::now();
    let hashes: Vec<Hash> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    let naive = naive_root(&hashes);
    let naive_t = t.elapsed();
    let root = store.root().unwrap_or(Hash([0; 32]));
    println!(
        "baseline naive recursive RFC 6962 root of {N} leaves (hash + MTH): {naive_t:.2?}; roots equal: {}",
        naive == root
    );
    println!(
        "  ratio append-all / naive-root: {:.2}",
        push.as_secs_f64() / naive_t.as_secs_f64()
    );

    // 2. Proofs at 1,000,000 leaves from the in-memory store.
    let t = Instant::now();
    let reps = 200u64;
    for _ in 0..reps {
        black_box(store.root().ok());
    }
    println!(
        "root at {N} from stored hashes: {:.2} us",
        per_op(t.elapsed(), reps)
    );

    let mut x = 12345u64;
    let reps = 100_000u64;
    let idx: Vec<u64> = (0..reps).map(|_| lcg(&mut x) % N).collect();
    let t = Instant::now();
    for &i in &idx {
        black_box(merkle::inclusion_proof(N, i, &store).ok());
    }
    let inc = t.elapsed();
    println!(
        "inclusion proof at {N}: {:.2} us/proof (target <= 50 us)",
        per_op(inc, reps)
    );
    let t = Instant::now();
    let mut ok = 0u64;
    for &i in idx.iter().take(10_000) {
        if let (Ok(p), Some(h)) = (merkle::inclusion_proof(N, i, &store), store.leaf_hash(i)) {
            ok += u64::from(merkle::verify_inclusion(&p, N, root, i, h).is_ok());
        }
    }
    println!(
        "inclusion proof + verify: {:.2} us ({ok}/10000 verified)",
        per_op(t.elapsed(), 10_000)
    );
    let t = Instant::now();
    for &i in idx.iter().take(20) {
        black_box(naive_root(&hashes[..=(i as usize)]));
    }
    let naive_proofish = per_op(t.elapsed(), 20);
    println!(
        "  baseline: recomputing a prefix root naively instead: {naive_proofish:.0} us; ratio naive/proof: {:.0}x",
        naive_proofish / per_op(inc, reps)
    );

    let reps = 20_000u64;
    let olds: Vec<u64> = (0..reps).map(|_| 1 + lcg(&mut x) % (N - 1)).collect();
    let t = Instant::now();
    for &o in &olds {
        black_box(merkle::consistency_proof(o, N, &store).ok());
    }
    println!(
        "consistency proof to {N}: {:.2} us/proof",
        per_op(t.elapsed(), reps)
    );

    // 3. Full verification of a 1,000,000-event bundle.
    let key = match AuditSigner::generate(ORIGIN) {
        Ok(k) => k,
        Err(e) => {
            println!("key generation failed: {e}");
            return;
        }
    };
    let vkey = key.verifier_key();
    let mut signer = CheckpointSigner::new(key, ORIGIN);
    let t = Instant::now();
    let mut w = match BundleWriter::new(Vec::with_capacity(900 << 20), ORIGIN, &vkey) {
        Ok(w) => w,
        Err(e) => {
            println!("bundle writer failed: {e}");
            return;
        }
    };
    let every = 100_000u64;
    let mut sizes = Vec::new();
    for (i, l) in leaves.iter().enumerate() {
        let i = i as u64;
        let _ = w.entry(i, l);
        if (i + 1).is_multiple_of(every) {
            if let Ok(note) = signer.sign_from_store(i + 1, &store) {
                let _ = w.checkpoint(&note);
                sizes.push(i + 1);
            }
        }
    }
    for p in sizes.windows(2) {
        if let Ok(proof) = merkle::consistency_proof(p[0], p[1], &store) {
            let _ = w.consistency(p[0], p[1], &proof);
        }
    }
    for r in [17u64, 500_000, 999_999] {
        if let Some(h) = store.leaf_hash(r) {
            let _ = w.receipt(r, &h);
        }
    }
    let bundle = w.finish().unwrap_or_default();
    println!(
        "built bundle: {:.0} MiB in {:.2?}",
        bundle.len() as f64 / (1 << 20) as f64,
        t.elapsed()
    );
    let t = Instant::now();
    let sample = 200_000usize;
    let mut ok = 0usize;
    for l in leaves.iter().take(sample) {
        ok += usize::from(AuditLeaf::check_bytes(l).is_ok());
    }
    println!(
        "strict leaf check (AuditLeaf::check_bytes): {:.2} us/leaf ({ok} ok)",
        per_op(t.elapsed(), sample as u64)
    );
    let t = Instant::now();
    for line in bundle.split(|&b| b == b'\n').take(sample) {
        black_box(serde_json::from_slice::<thetazero_audit::bundle::Line>(line).ok());
    }
    println!(
        "bundle line parse: {:.2} us/line",
        per_op(t.elapsed(), sample as u64)
    );
    drop(leaves);

    let t = Instant::now();
    let report = verify_bundle(&bundle[..], &vkey);
    let full = t.elapsed();
    println!(
        "verify bundle of {N} events (default: strict leaves, checker thread): {full:.2?} (target <= 3 s); valid: {}, findings: {}, checks: {}",
        report.is_valid(),
        report.findings.len(),
        report.checks.len()
    );
    let t = Instant::now();
    let report = verify_bundle_with(
        &bundle[..],
        &vkey,
        VerifyOptions {
            check_leaf_schema: true,
            parallel: false,
        },
    );
    let sequential = t.elapsed();
    println!(
        "verify bundle, strict, one thread: {sequential:.2?}; valid: {}",
        report.is_valid()
    );
    let t = Instant::now();
    let report = verify_bundle_with(
        &bundle[..],
        &vkey,
        VerifyOptions {
            check_leaf_schema: false,
            parallel: false,
        },
    );
    let tree_only = t.elapsed();
    println!(
        "verify bundle, tree only (no leaf schema): {tree_only:.2?}; valid: {}",
        report.is_valid()
    );
    println!(
        "  ratio verify-bundle / naive-root: {:.2} (default), {:.2} (strict, one thread), {:.2} (tree only)",
        full.as_secs_f64() / naive_t.as_secs_f64(),
        sequential.as_secs_f64() / naive_t.as_secs_f64(),
        tree_only.as_secs_f64() / naive_t.as_secs_f64()
    );
}
