//! Scans JSON Lines from stdin and writes one verdict per line to stdout; a command-line front end to `scan_jsonl` only, no logic of its own.
//!
//! Usage: cargo run --release --example scan < input.jsonl > verdicts.jsonl

use std::io::{stdin, stdout, BufWriter};

use thetazero_safety::{scan_jsonl, Filter};

fn main() -> std::io::Result<()> {
    let out = BufWriter::new(stdout().lock());
    scan_jsonl(&Filter::default(), stdin().lock(), out)
}
