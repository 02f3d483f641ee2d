//! Channels (where a text travels: execution input, output, fetched content, model prompt, model completion) and their calibration offsets; no decisions here.
//!
//! The operator sets two thresholds (injection, toxicity). Harmless text
//! looks different on each channel (an agent's output is mostly data, a
//! fetched page is prose written by strangers), so the same threshold would
//! mean a different false-positive rate on each. Each channel therefore
//! shifts the model's logits by an offset that `training/train.py` fits on
//! that channel's calibration set (`model/channels.tsv`), so that one
//! threshold gives the same false-positive rate everywhere.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where a scanned text travels.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An execution's input, given by the caller.
    #[default]
    Input,
    /// An execution's output, produced by agent code.
    Output,
    /// A response an agent fetched (`http_request`): where indirect
    /// injection lives.
    Fetched,
    /// A prompt the agent sends to a model.
    Prompt,
    /// A model's completion handed back to the agent.
    Completion,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Input,
        Channel::Output,
        Channel::Fetched,
        Channel::Prompt,
        Channel::Completion,
    ];

    /// The snake_case name used on the wire and in `model/channels.tsv`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Input => "input",
            Channel::Output => "output",
            Channel::Fetched => "fetched",
            Channel::Prompt => "prompt",
            Channel::Completion => "completion",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A channel name that is not one of [`Channel::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown channel {0:?} (expected input, output, fetched, prompt or completion)")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownChannel(s.to_owned()))
    }
}

/// Logit offsets of one channel, added to the bare model's logits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Offsets {
    pub injection: f64,
    pub toxicity: f64,
}

const TABLE: &str = include_str!("../model/channels.tsv");

fn parse(table: &str) -> HashMap<Channel, Offsets> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let channel = parts.next()?.parse().ok()?;
            let injection = parts.next()?.trim().parse().ok()?;
            let toxicity = parts.next()?.trim().parse().ok()?;
            Some((
                channel,
                Offsets {
                    injection,
                    toxicity,
                },
            ))
        })
        .collect()
}

/// The calibration offsets of `channel`. The table is part of the crate, so
/// a missing row is a build defect (the `table_covers_every_channel` test
/// catches it); such a channel would score like `input`.
pub(crate) fn offsets(channel: Channel) -> Offsets {
    static OFFSETS: OnceLock<HashMap<Channel, Offsets>> = OnceLock::new();
    OFFSETS
        .get_or_init(|| parse(TABLE))
        .get(&channel)
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_channel() {
        let table = parse(TABLE);
        for c in Channel::ALL {
            assert!(table.contains_key(&c), "model/channels.tsv lacks {c}");
        }
        assert_eq!(table.len(), Channel::ALL.len());
    }

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(c.name().parse::<Channel>(), Ok(c));
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::json!(c.name()))
            );
        }
        assert!("Input".parse::<Channel>().is_err());
        assert!("".parse::<Channel>().is_err());
    }

    #[test]
    fn bad_rows_are_skipped() {
        let t = parse("# c\ninput\t0.5\t-1\noutput\tx\t0\nnope\t1\t1\nfetched\t1\n");
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.get(&Channel::Input),
            Some(&Offsets {
                injection: 0.5,
                toxicity: -1.0
            })
        );
    }
}
