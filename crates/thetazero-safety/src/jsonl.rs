//! JSON Lines front ends: a streaming scanner and the evaluation report; they read and write only the streams they are given.
//!
//! `scan_jsonl` answers one line per input line and never stops on a bad
//! line. `eval_jsonl` reads labelled lines (`text` or `json`, `label`) and
//! counts how many of each label the filter blocks. Labels starting with
//! `benign` are harmless text, where a block is a false positive; every
//! other label is an attack category, where a block is a true positive.
//! A line may name its `channel` (`input` when absent); a `json` line is
//! scanned as a document ([`Filter::scan_json_channel`]), a `text` line as
//! text ([`Filter::scan_channel`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::{Channel, Filter, Layer, Verdict};

/// What one line asks to scan: text or a JSON document, on a channel.
#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    json: Option<Value>,
    #[serde(default)]
    channel: Option<Channel>,
}

impl Item {
    /// Scans the item on its own channel, or on `force` when given.
    fn scan(&self, filter: &Filter, force: Option<Channel>) -> Result<Verdict, String> {
        let channel = force.or(self.channel).unwrap_or_default();
        match (&self.text, &self.json) {
            (Some(t), None) => Ok(filter.scan_channel(t, channel)),
            (None, Some(v)) => Ok(filter.scan_json_channel(v, channel)),
            _ => Err("expected exactly one of \"text\" (a string) and \"json\"".to_owned()),
        }
    }
}

fn parse_item(s: &str) -> Result<Item, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::String(text)) => Ok(Item {
            text: Some(text),
            json: None,
            channel: None,
        }),
        Ok(v @ Value::Object(_)) => serde_json::from_value(v).map_err(|e| e.to_string()),
        Ok(_) => Err("expected an object or a string".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn layer_name(l: Layer) -> &'static str {
    match l {
        Layer::Pattern => "pattern",
        Layer::Model => "model",
        Layer::Bounds => "bounds",
        Layer::External => "external",
        Layer::None => "none",
    }
}

/// Reads `{"text": ...}` or `{"json": ...}` per line, each with an optional
/// `"channel"` (a bare JSON string is accepted too, as text on `input`),
/// and writes `{"decision","injection","toxicity","layer","rule","channel"}`
/// per line, with `"path"`, `"score"` and `"threshold"` when the verdict has
/// them. A line that cannot be read answers `{"error": ...}`.
pub fn scan_jsonl(filter: &Filter, input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    for line in input.split(b'\n') {
        let line = line?;
        let answer = match std::str::from_utf8(&line) {
            Err(e) => json!({ "error": format!("line is not UTF-8: {e}") }),
            Ok(s) if s.trim().is_empty() => json!({ "error": "empty line" }),
            Ok(s) => match parse_item(s).and_then(|item| item.scan(filter, None)) {
                Err(e) => json!({ "error": format!("expected {{\"text\": string}}: {e}") }),
                Ok(v) => {
                    let mut answer = json!({
                        "decision": if v.is_block() { "block" } else { "allow" },
                        "injection": v.injection,
                        "toxicity": v.toxicity,
                        "layer": layer_name(v.layer),
                        "rule": v.rule,
                        "channel": v.channel,
                    });
                    for (k, val) in [
                        ("path", v.path.map(Value::from)),
                        ("score", v.score.map(Value::from)),
                        ("threshold", v.threshold.map(Value::from)),
                        ("model", v.model.map(Value::from)),
                    ] {
                        if let (Some(val), Some(obj)) = (val, answer.as_object_mut()) {
                            obj.insert(k.to_owned(), val);
                        }
                    }
                    answer
                }
            },
        };
        serde_json::to_writer(&mut output, &answer)?;
        output.write_all(b"\n")?;
    }
    output.flush()
}

#[derive(Debug, Error)]
pub enum EvalError {
    #[error("reading evaluation data: {0}")]
    Io(#[from] io::Error),
    #[error("line {line}: {message}")]
    BadLine { line: usize, message: String },
}

#[derive(Deserialize)]
struct EvalLine {
    #[serde(flatten)]
    item: Item,
    label: String,
}

/// Counts for one label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CategoryReport {
    pub total: usize,
    pub blocked: usize,
    /// Lines of which at least one view reached the second stage.
    pub second_stage: usize,
}

impl CategoryReport {
    /// Share blocked: the true-positive rate for an attack label, the
    /// false-positive rate for a benign one.
    pub fn block_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.blocked as f64 / self.total as f64
        }
    }

    /// Share of lines that reached the second stage.
    pub fn second_stage_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.second_stage as f64 / self.total as f64
        }
    }
}

/// Evaluation counts per label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalReport {
    pub categories: BTreeMap<String, CategoryReport>,
}

pub(crate) fn is_benign(label: &str) -> bool {
    label.starts_with("benign")
}

impl EvalReport {
    fn sum(&self, benign: bool) -> CategoryReport {
        let mut acc = CategoryReport::default();
        for (label, c) in &self.categories {
            if is_benign(label) == benign {
                acc.total += c.total;
                acc.blocked += c.blocked;
                acc.second_stage += c.second_stage;
            }
        }
        acc
    }

    /// Blocked share of all attack lines.
    pub fn true_positive_rate(&self) -> f64 {
        self.sum(false).block_rate()
    }

    /// Blocked share of all benign lines.
    pub fn false_positive_rate(&self) -> f64 {
        self.sum(true).block_rate()
    }

    /// Mean of the true-positive rate and the true-negative rate over all
    /// lines; `None` unless there are both attack and benign lines.
    pub fn balanced_accuracy(&self) -> Option<f64> {
        if self.sum(false).total == 0 || self.sum(true).total == 0 {
            return None;
        }
        Some((self.true_positive_rate() + 1.0 - self.false_positive_rate()) / 2.0)
    }

    /// Balanced accuracy of one attack label against all benign lines;
    /// `None` for a benign or unknown label, or without benign lines.
    pub fn balanced_accuracy_of(&self, label: &str) -> Option<f64> {
        let c = self.categories.get(label)?;
        if is_benign(label) || self.sum(true).total == 0 {
            return None;
        }
        Some((c.block_rate() + 1.0 - self.false_positive_rate()) / 2.0)
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "label", "n", "blocked", "TPR", "FPR", "bal.acc", "stage2"
        )?;
        let pct = |x: f64| format!("{:.2}%", 100.0 * x);
        for (label, c) in &self.categories {
            if is_benign(label) {
                writeln!(
                    f,
                    "{:<36} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8}",
                    label,
                    c.total,
                    c.blocked,
                    "-",
                    pct(c.block_rate()),
                    "-",
                    pct(c.second_stage_rate())
                )?;
            } else {
                let ba = self.balanced_accuracy_of(label).map_or("-".to_owned(), pct);
                writeln!(
                    f,
                    "{:<36} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8}",
                    label,
                    c.total,
                    c.blocked,
                    pct(c.block_rate()),
                    "-",
                    ba,
                    pct(c.second_stage_rate())
                )?;
            }
        }
        let pos = self.sum(false);
        let neg = self.sum(true);
        let dash = |n: usize, x: f64| if n == 0 { "-".to_owned() } else { pct(x) };
        let all = pos.total + neg.total;
        writeln!(
            f,
            "{:<36} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "ALL",
            all,
            pos.blocked + neg.blocked,
            dash(pos.total, self.true_positive_rate()),
            dash(neg.total, self.false_positive_rate()),
            self.balanced_accuracy().map_or("-".to_owned(), pct),
            dash(
                all,
                (pos.second_stage + neg.second_stage) as f64 / all.max(1) as f64
            )
        )
    }
}

/// Scans every `{"text" or "json", "label"}` line (on the line's
/// `channel`, `input` when it names none) and counts blocks per label.
/// Blank lines are skipped; any other unreadable line is an error, because
/// an evaluation that silently drops data would report the wrong figures.
pub fn eval_jsonl(filter: &Filter, input: impl BufRead) -> Result<EvalReport, EvalError> {
    eval_jsonl_on(filter, input, None)
}

/// [`eval_jsonl`], every line scanned on `channel` when it is given
/// (whatever the line names); the report's labels then read
/// `label [channel]`, so reports of several channels can be merged.
pub fn eval_jsonl_on(
    filter: &Filter,
    input: impl BufRead,
    channel: Option<Channel>,
) -> Result<EvalReport, EvalError> {
    let mut report = EvalReport::default();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| EvalError::BadLine {
            line: i + 1,
            message,
        };
        let row: EvalLine = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let verdict = row.item.scan(filter, channel).map_err(bad)?;
        let label = match channel {
            Some(c) => format!("{} [{c}]", row.label),
            None => row.label,
        };
        let c = report.categories.entry(label).or_default();
        c.total += 1;
        if verdict.is_block() {
            c.blocked += 1;
        }
        if verdict.second_stage {
            c.second_stage += 1;
        }
    }
    Ok(report)
}
