//! Prints the evaluation table for labelled JSONL files (`text`, `label`); a command-line front end only, no logic of its own.
//!
//! Usage: cargo run --release --example eval -- [--injection-threshold X] [--toxicity-threshold Y] training/eval/*.jsonl

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use thetazero_safety::{eval_jsonl, EvalReport, Filter, SafetyConfig};

fn main() -> ExitCode {
    let mut cfg = SafetyConfig::default();
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let target = match a.as_str() {
            "--injection-threshold" => &mut cfg.injection_threshold,
            "--toxicity-threshold" => &mut cfg.toxicity_threshold,
            _ => {
                paths.push(a);
                continue;
            }
        };
        match args.next().and_then(|v| v.parse().ok()) {
            Some(v) => *target = v,
            None => {
                eprintln!("{a} needs a number");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "thresholds: injection {} toxicity {}\n",
        cfg.injection_threshold, cfg.toxicity_threshold
    );
    let filter = Filter::new(cfg);
    let mut all = EvalReport::default();
    for path in paths {
        let report = match File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| eval_jsonl(&filter, BufReader::new(f)).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("== {path}\n{report}");
        for (label, c) in report.categories {
            let acc = all.categories.entry(label).or_default();
            acc.total += c.total;
            acc.blocked += c.blocked;
        }
    }
    println!("== all files\n{all}");
    ExitCode::SUCCESS
}
