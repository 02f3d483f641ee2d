//! Latency benchmark: full `Filter::scan` per 4 KB of text against two naive baselines measured in the same run, `Filter::scan_json_channel` per 4 KB JSON document (p50, p99 and the mean over harmless API documents), and the second stage per 512 tokens; it asserts nothing.
//!
//! Usage: cargo run --release --example bench [-- ROUNDS]
//!
//! Two clocks: wall time, and the thread's CPU time (what one core spends;
//! on a shared machine wall-time tails include time spent descheduled).
//!
//! Inputs are 4096-byte texts assembled from the held-out evaluation files
//! (so they mix harmless text and attacks, with plenty of trigger words).
//! Baselines: a plain case-insensitive regex scan for a few attack phrases
//! (what a filter without normalisation or a model does), and the bare
//! model on the raw text (no decoding, no windows, no pattern layer).

use std::hint::black_box;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use regex::Regex;
use thetazero_safety::{model_scores, second_stage_score, tokens, Channel, Filter};

const TEXT_BYTES: usize = 4096;

fn inputs() -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for name in [
        "slabs_test",
        "neuralchemy_test",
        "trigger_benign",
        "toxicity",
    ] {
        let path = format!("{}/training/eval/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
        let Ok(data) = std::fs::read_to_string(&path) else {
            eprintln!("cannot read {path}");
            continue;
        };
        for line in data.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                    lines.push(t.to_owned());
                }
            }
        }
    }
    // Deterministic interleaving so each text mixes sources.
    let mut out = Vec::new();
    let mut cur = String::new();
    let n = lines.len().max(1);
    let mut i = 0usize;
    while out.len() < 400 && i < n * 4 {
        let line = &lines[(i * 7919) % n];
        i += 1;
        for c in line.chars().chain(std::iter::once(' ')) {
            if cur.len() + c.len_utf8() > TEXT_BYTES {
                out.push(std::mem::take(&mut cur));
                if out.len() >= 400 {
                    break;
                }
            }
            cur.push(c);
        }
    }
    out
}

/// Texts of 512 tokens (the folded tokens the models read), from the
/// held-out text files.
fn texts_of_512_tokens(texts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for t in texts.iter().cycle().take(texts.len() * 4) {
        for word in t.split_whitespace() {
            cur.push_str(word);
            cur.push(' ');
            if tokens(&cur).len() >= 512 {
                out.push(std::mem::take(&mut cur));
                if out.len() >= 200 {
                    return out;
                }
            }
        }
    }
    out
}

/// JSON documents of about 4 KB (serialised): arrays of the held-out API
/// documents of `files`, in file order.
fn documents(files: &[&str]) -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    for name in files {
        let path = format!("{}/training/eval/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
        let Ok(data) = std::fs::read_to_string(&path) else {
            eprintln!("cannot read {path}");
            continue;
        };
        let mut cur = Vec::new();
        let mut bytes = 0usize;
        for line in data.lines() {
            let Some(doc) = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("json").cloned())
            else {
                continue;
            };
            let len = doc.to_string().len();
            if bytes + len > TEXT_BYTES && !cur.is_empty() {
                docs.push(serde_json::Value::Array(std::mem::take(&mut cur)));
                bytes = 0;
            }
            bytes += len;
            cur.push(doc);
        }
    }
    docs.truncate(400);
    docs
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

type Pair = ((Duration, Duration), (Duration, Duration));

/// (wall p50, p99), (thread CPU p50, p99).
fn measure(texts: &[String], rounds: usize, mut f: impl FnMut(&str)) -> Pair {
    // Warm-up: lazy statics (model, regexes) load outside the timings.
    for t in texts.iter().take(10) {
        f(t);
    }
    let mut wall = Vec::with_capacity(texts.len() * rounds);
    let mut cpu = Vec::with_capacity(texts.len() * rounds);
    for _ in 0..rounds {
        for t in texts {
            let c = ThreadTime::now();
            let w = Instant::now();
            f(t);
            wall.push(w.elapsed());
            cpu.push(c.elapsed());
        }
    }
    (percentiles(wall), percentiles(cpu))
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let texts = inputs();
    if texts.is_empty() {
        eprintln!("no input texts");
        return;
    }
    let filter = Filter::default();
    let naive = Regex::new(
        r"(?i)ignore (all )?(previous|prior) instructions|system prompt|jailbreak|developer mode|do anything now",
    )
    .expect("constant pattern compiles");

    let full = measure(&texts, rounds, |t| {
        black_box(filter.scan(black_box(t)));
    });
    let regex_only = measure(&texts, rounds, |t| {
        black_box(naive.is_match(black_box(t)));
    });
    let bare_model = measure(&texts, rounds, |t| {
        black_box(model_scores(black_box(t)));
    });

    let docs = documents(&["api_benign", "api_planted", "api_planted_indirect"]);
    let mut i = 0usize;
    let json = measure(&texts[..docs.len().min(texts.len())], rounds, |_| {
        let d = &docs[i % docs.len()];
        i += 1;
        black_box(filter.scan_json_channel(black_box(d), Channel::Fetched));
    });
    // Realistic traffic: harmless API documents only; the mean is what the
    // filter costs on average, second stage included where it is reached.
    let benign_docs = documents(&["api_benign"]);
    let mut cpu_total = Duration::ZERO;
    let mut reached = 0usize;
    for _ in 0..rounds {
        for d in &benign_docs {
            let c = ThreadTime::now();
            let v = black_box(filter.scan_json_channel(black_box(d), Channel::Fetched));
            cpu_total += c.elapsed();
            reached += usize::from(v.second_stage);
        }
    }
    let benign_runs = (benign_docs.len() * rounds).max(1);
    let long = texts_of_512_tokens(&texts);
    let second = measure(&long, rounds, |t| {
        black_box(second_stage_score(black_box(t)));
    });

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{} texts x {} rounds, {} bytes each, one thread",
        texts.len(),
        rounds,
        TEXT_BYTES
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "per 4 KB (us)", "wall p50", "wall p99", "cpu p50", "cpu p99"
    );
    for (name, ((w50, w99), (c50, c99))) in [
        ("Filter::scan (full pipeline)", full),
        ("baseline: regex only", regex_only),
        ("baseline: bare model, raw text", bare_model),
        ("scan_json_channel, 4 KB JSON", json),
    ] {
        println!(
            "{:<34} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            name,
            us(w50),
            us(w99),
            us(c50),
            us(c99)
        );
    }
    for (name, base) in [("regex only", regex_only), ("bare model", bare_model)] {
        println!(
            "ratio full / {name}: cpu p50 {:.1}x, cpu p99 {:.1}x, wall p50 {:.1}x",
            us(full.1 .0) / us(base.1 .0),
            us(full.1 .1) / us(base.1 .1),
            us(full.0 .0) / us(base.0 .0)
        );
    }
    let verdict = |d: Duration| if us(d) <= 1000.0 { "met" } else { "NOT met" };
    println!(
        "target p99 <= 1000 us per 4 KB: cpu {}, wall {}",
        verdict(full.1 .1),
        verdict(full.0 .1)
    );
    println!(
        "harmless API documents (channel fetched), {} of about 4 KB: mean cpu {:.1} us per document; {} of {} scans reached the second stage ({:.2} %)",
        benign_docs.len(),
        us(cpu_total) / benign_runs as f64,
        reached,
        benign_runs,
        100.0 * reached as f64 / benign_runs as f64
    );
    let ((w50, w99), (c50, c99)) = second;
    println!(
        "second stage alone, {} texts of 512 tokens: wall p50 {:.1} us, p99 {:.1} us; cpu p50 {:.1} us, p99 {:.1} us (target p99 <= 100 ms: {})",
        long.len(),
        us(w50),
        us(w99),
        us(c50),
        us(c99),
        if us(c99) <= 100_000.0 { "met" } else { "NOT met" }
    );
}
