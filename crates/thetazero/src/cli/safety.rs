//! `thetazero safety`: measure content safety offline: scan JSON lines, or
//! evaluate a labelled file.

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug, Clone, Copy)]
pub struct Thresholds {
    /// Block at or above this injection score (default 0.35).
    #[arg(long)]
    injection_threshold: Option<f32>,
    /// Block at or above this toxicity score (default 0.4).
    #[arg(long)]
    toxicity_threshold: Option<f32>,
}

impl Thresholds {
    fn filter(self) -> thetazero_safety::Filter {
        let mut config = thetazero_safety::SafetyConfig::default();
        if let Some(t) = self.injection_threshold {
            config.injection_threshold = t;
        }
        if let Some(t) = self.toxicity_threshold {
            config.toxicity_threshold = t;
        }
        thetazero_safety::Filter::new(config)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read `{"text": ...}` (or `{"json": ...}`) lines on standard input,
    /// each with an optional `channel`; write one verdict line per input, in
    /// order: decision, injection, toxicity, layer, rule, channel, path.
    Scan {
        #[command(flatten)]
        thresholds: Thresholds,
    },
    /// Evaluate a labelled file of `{"text", "label"}` lines: true-positive
    /// rate, false-positive rate and balanced accuracy per category.
    Eval {
        file: std::path::PathBuf,
        /// The channel every line is scored on (input, output, fetched,
        /// prompt, completion); a line's own `channel` field wins. Default
        /// input.
        #[arg(long)]
        channel: Option<thetazero_safety::Channel>,
        #[command(flatten)]
        thresholds: Thresholds,
    },
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Scan { thresholds } => {
            let filter = thresholds.filter();
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            thetazero_safety::scan_jsonl(&filter, stdin.lock(), stdout.lock())?;
        }
        Command::Eval {
            file,
            channel,
            thresholds,
        } => {
            let filter = thresholds.filter();
            let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
            let report = thetazero_safety::eval_jsonl_on(&filter, reader, channel)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            print!("{report}");
        }
    }
    Ok(())
}
