//! Fits the per-channel logit offsets (`model/channels.tsv`) with the filter itself on the calibration sets that `training/train.py` writes; run by train.py, no logic of the filter here.
//!
//! Usage: cargo run --release --example calibrate -- training/calib model/channels.tsv
//!
//! Besides the table it prints, per channel, how many planted calibration
//! documents are caught (`planted.jsonl`: corpora validation rows;
//! `planted_indirect.jsonl`: indirect injections of the calibration
//! phrasings); these are reported, not fitted on.
//!
//! For each fitted channel, the offset is the largest one in [-6, 0] at
//! which the full filter (patterns, JSON structure, sentences, windows)
//! blocks at most 1 % of that channel's calibration set (documents for
//! `output` and `fetched`, texts for `completion`): the rate the prompt
//! model's bias is calibrated to on harmless prompts with trigger words,
//! so one threshold means the same false-positive rate on every channel's
//! calibration set. `input` and
//! `prompt` keep offset 0: the model's bias is calibrated on prompt text in
//! train.py. Offsets never exceed 0, so no channel is more eager to block
//! than the model as trained. Toxicity is fitted first with injection
//! switched off, then injection with toxicity at its offset, so that the
//! two together stay within the target.

use std::fmt::Write as _;
use std::fs;
use std::process::ExitCode;

use serde_json::Value;
use thetazero_safety::{Channel, Filter};

const LO: f64 = -6.0;
const HI: f64 = 0.0;
const OFF: f64 = -60.0;
const RATE: f64 = 0.01;

struct Item {
    text: Option<String>,
    json: Option<Value>,
}

fn read(path: &str) -> Result<Vec<Item>, String> {
    let data = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).map_err(|e| format!("{path}: {e}"))?;
            Ok(Item {
                text: v.get("text").and_then(Value::as_str).map(str::to_owned),
                json: v.get("json").cloned(),
            })
        })
        .collect()
}

fn blocked(items: &[Item], channel: Channel, inj: f64, tox: f64) -> usize {
    let f = Filter::default().with_channel_offsets(inj, tox);
    items
        .iter()
        .filter(|it| match (&it.text, &it.json) {
            (Some(t), _) => f.scan_channel(t, channel).is_block(),
            (None, Some(v)) => f.scan_json_channel(v, channel).is_block(),
            _ => false,
        })
        .count()
}

/// The largest offset in [LO, HI] whose block count stays within `allowed`.
fn fit(count: impl Fn(f64) -> usize, allowed: usize) -> f64 {
    if count(HI) <= allowed {
        return HI;
    }
    let (mut lo, mut hi) = (LO, HI);
    for _ in 0..16 {
        let mid = (lo + hi) / 2.0;
        if count(mid) <= allowed {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: calibrate CALIB_DIR OUT_TSV");
        return ExitCode::FAILURE;
    };
    let planted = match read(&format!("{dir}/planted.jsonl")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let indirect = match read(&format!("{dir}/planted_indirect.jsonl")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut table = String::from(
        "# Logit offsets per channel, written by training/train.py (examples/calibrate.rs); do not edit by hand.\n# channel\tinjection\ttoxicity\n",
    );
    println!(
        "{:<11} {:>5} {:>7} {:>10} {:>9} {:>8} {:>16} {:>16}",
        "channel",
        "n",
        "target",
        "injection",
        "toxicity",
        "blocked",
        "planted caught",
        "indirect caught"
    );
    for channel in Channel::ALL {
        let items = match read(&format!("{dir}/{channel}.jsonl")) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let rate = match channel {
            Channel::Input | Channel::Prompt => None,
            Channel::Output | Channel::Fetched | Channel::Completion => Some(
                // For experiments only: another target rate.
                std::env::var("TZ_RATE")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(RATE),
            ),
        };
        let (inj, tox) = match rate {
            None => (0.0, 0.0),
            Some(r) => {
                let allowed = (items.len() as f64 * r).floor() as usize;
                let tox = fit(|o| blocked(&items, channel, OFF, o), allowed);
                let tox = (tox * 1e4).floor() / 1e4;
                let inj = fit(|o| blocked(&items, channel, o, tox), allowed);
                (inj, tox)
            }
        };
        // Rounded so the file is stable and readable; the filter reads it back.
        let (inj, tox) = ((inj * 1e4).floor() / 1e4, (tox * 1e4).floor() / 1e4);
        let n_blocked = blocked(&items, channel, inj, tox);
        let caught = blocked(&planted, channel, inj, tox);
        let caught_indirect = blocked(&indirect, channel, inj, tox);
        println!(
            "{:<11} {:>5} {:>7} {:>10.4} {:>9.4} {:>8} {:>9}/{} {:>9}/{}",
            channel.name(),
            items.len(),
            rate.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
            inj,
            tox,
            n_blocked,
            caught,
            planted.len(),
            caught_indirect,
            indirect.len()
        );
        let _ = writeln!(table, "{}\t{inj:.4}\t{tox:.4}", channel.name());
    }
    if let Err(e) = fs::write(out, table) {
        eprintln!("{out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
