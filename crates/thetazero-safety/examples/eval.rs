//! Prints the evaluation table for labelled JSONL files (`text` or `json`, `label`, optional `channel`); a command-line front end only, no logic of its own.
//!
//! Usage: cargo run --release --example eval -- [--injection-threshold X] [--toxicity-threshold Y] [--channels input,output,...] [--band BELOW,ABOVE] FILES
//!
//! The `stage2` column is the share of lines of which at least one view
//! reached the second stage. `--band` replaces the second stage's
//! borderline band (logits below and above the threshold; `0,0` switches
//! it off), for experiments on the calibration sets.
//!
//! Without `--channels` each line is scanned on its own channel (`input`
//! when it names none); with it, every line of every file is scanned on
//! each listed channel and the labels read `label [channel]`.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use thetazero_safety::{eval_jsonl_on, Channel, EvalReport, Filter, SafetyConfig};

fn main() -> ExitCode {
    let mut cfg = SafetyConfig::default();
    let mut paths = Vec::new();
    let mut channels: Vec<Option<Channel>> = vec![None];
    let mut band: Option<(f64, f64)> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--channels" {
            let parsed: Result<Vec<Option<Channel>>, _> = args
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|c| c.parse().map(Some))
                .collect();
            match parsed {
                Ok(c) => channels = c,
                Err(e) => {
                    eprintln!("--channels: {e}");
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
        if a == "--band" {
            let v = args.next().unwrap_or_default();
            let parsed: Vec<f64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
            match parsed[..] {
                [below, above] => band = Some((below, above)),
                _ => {
                    eprintln!("--band needs BELOW,ABOVE");
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
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
    let mut filter = Filter::new(cfg);
    if let Some((below, above)) = band {
        filter = filter.with_second_stage_band(below, above);
    }
    let mut all = EvalReport::default();
    for path in paths {
        let mut report = EvalReport::default();
        for channel in &channels {
            let one = match File::open(&path).map_err(|e| e.to_string()).and_then(|f| {
                eval_jsonl_on(&filter, BufReader::new(f), *channel).map_err(|e| e.to_string())
            }) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            report.categories.extend(one.categories);
        }
        println!("== {path}\n{report}");
        for (label, c) in report.categories {
            let acc = all.categories.entry(label).or_default();
            acc.total += c.total;
            acc.blocked += c.blocked;
            acc.second_stage += c.second_stage;
        }
    }
    println!("== all files\n{all}");
    ExitCode::SUCCESS
}
