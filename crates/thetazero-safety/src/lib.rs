//! thetazero's content-safety filter: normalisation, a pattern layer, an embedded scoring model and resource bounds; CPU-only, synchronous, no IO.
//!
//! Every input or output passes [`Filter::scan`]:
//!
//! 1. resource bounds: text longer than [`SafetyConfig::max_text_bytes`] is
//!    blocked before anything else looks at it;
//! 2. normalisation: invisible and bidirectional characters removed, NFKC,
//!    look-alike letters and leetspeak (digits and symbols written for
//!    letters) folded, Han and kana split into one token per character,
//!    base64, hex and character-escape blobs decoded and scanned as well,
//!    long text cut into overlapping windows;
//! 3. the pattern layer blocks near-certain attacks at once;
//! 4. the model scores `injection` and `toxicity` in [0, 1] and blocks at or
//!    above the configured thresholds (0.35 and 0.4 by default, as the spec
//!    says).
//!
//! The verdict says which layer and rule decided and carries a bounded
//! excerpt of the offending text. The filter is deterministic and never
//! panics, whatever the input.

#![forbid(unsafe_code)]

mod bounds;
mod external;
mod features;
mod jsonl;
mod model;
mod normalize;
mod patterns;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use bounds::{check_cost_delta, check_evolution_rate, check_prompt_length, BoundViolation};
pub use external::{ExternalError, ExternalScorer};
pub use features::tokens;
pub use jsonl::{eval_jsonl, scan_jsonl, CategoryReport, EvalError, EvalReport};
pub use model::model_scores;

use features::{tokens_cleaned, word_count};
use normalize::{segments, windows, Origin};
use patterns::Kind;

/// Longest text also scored as a whole besides its windows.
const WHOLE_TEXT_BYTES: usize = 2048;

/// Fewer words than this are judged by the pattern layer alone. (Three was
/// chosen over four after comparing held-out figures; see training/DATA.md.)
pub const MIN_MODEL_WORDS: usize = 3;

/// The longest excerpt a verdict carries, in characters.
pub const EXCERPT_CHARS: usize = 200;

/// Filter settings. `Default` gives the spec's thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetyConfig {
    /// Off only in the DEV template; then every scan allows.
    pub enabled: bool,
    /// Block when the injection score is at or above this.
    pub injection_threshold: f32,
    /// Block when the toxicity score is at or above this.
    pub toxicity_threshold: f32,
    /// Maximum input or output size in bytes (the "prompt length" bound).
    pub max_text_bytes: usize,
    /// Window size in bytes for scoring long text. Small, because the model
    /// normalises by length: a short injection inside a large window is
    /// diluted below the threshold. Windows overlap by half, so any attack
    /// of up to half a window lies wholly inside one of them.
    pub window_bytes: usize,
    /// Consult an attached external scorer only when a local score reaches
    /// this fraction of its threshold (0 consults it always).
    pub external_borderline: f32,
    /// Block when the external scorer fails, instead of keeping the local verdict.
    pub external_fail_closed: bool,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            enabled: true,
            injection_threshold: 0.35,
            toxicity_threshold: 0.4,
            max_text_bytes: 256 * 1024,
            window_bytes: 192,
            external_borderline: 0.5,
            external_fail_closed: false,
        }
    }
}

/// Injection and toxicity scores, each in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub injection: f32,
    pub toxicity: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Block,
}

/// The layer that decided; `None` when nothing objected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Pattern,
    Model,
    Bounds,
    External,
    None,
}

/// What the filter decided and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    /// Highest injection score over all scanned views. A pattern block does
    /// not run the model and reports 1.0 for the pattern's category.
    pub injection: f32,
    pub toxicity: f32,
    pub layer: Layer,
    /// Rule that decided, e.g. `ignore_previous_instructions`,
    /// `base64:ignore_previous_instructions`, `injection_score`, `prompt_length`.
    pub rule: Option<String>,
    /// At most [`EXCERPT_CHARS`] characters of the offending text, in its
    /// normalised form.
    pub excerpt: Option<String>,
}

impl Verdict {
    fn allow(scores: Scores) -> Self {
        Verdict {
            decision: Decision::Allow,
            injection: scores.injection,
            toxicity: scores.toxicity,
            layer: Layer::None,
            rule: None,
            excerpt: None,
        }
    }

    fn block(scores: Scores, layer: Layer, rule: String, excerpt: Option<String>) -> Self {
        Verdict {
            decision: Decision::Block,
            injection: scores.injection,
            toxicity: scores.toxicity,
            layer,
            rule: Some(rule),
            excerpt,
        }
    }

    /// A verdict for a resource bound that was exceeded.
    pub fn from_bound(violation: &BoundViolation) -> Self {
        Verdict::block(
            Scores::default(),
            Layer::Bounds,
            violation.rule().to_owned(),
            None,
        )
    }

    pub fn is_block(&self) -> bool {
        self.decision == Decision::Block
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(EXCERPT_CHARS).collect()
}

/// Up to [`EXCERPT_CHARS`] characters of `text` around the byte range
/// `start..end`, starting a little before the match.
fn excerpt_around(text: &str, start: usize) -> String {
    let mut from = start.saturating_sub(40);
    while from > 0 && !text.is_char_boundary(from) {
        from -= 1;
    }
    text.get(from..).map(excerpt).unwrap_or_default()
}

/// The content-safety filter. Cheap to share: scanning takes `&self`.
#[derive(Clone)]
pub struct Filter {
    cfg: SafetyConfig,
    external: Option<Arc<dyn ExternalScorer>>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("cfg", &self.cfg)
            .field("external", &self.external.is_some())
            .finish()
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter::new(SafetyConfig::default())
    }
}

impl Filter {
    pub fn new(cfg: SafetyConfig) -> Self {
        Filter {
            cfg,
            external: None,
        }
    }

    /// Attaches an external scorer, consulted by [`Filter::scan_async`].
    pub fn with_external(mut self, scorer: Arc<dyn ExternalScorer>) -> Self {
        self.external = Some(scorer);
        self
    }

    pub fn config(&self) -> &SafetyConfig {
        &self.cfg
    }

    /// Scans one text through bounds, patterns and model.
    pub fn scan(&self, text: &str) -> Verdict {
        if !self.cfg.enabled {
            return Verdict::allow(Scores::default());
        }
        if let Err(v) = check_prompt_length(text.len(), self.cfg.max_text_bytes) {
            return Verdict::from_bound(&v);
        }
        let segs = segments(text);
        let toks: Vec<Vec<String>> = segs.iter().map(|s| tokens_cleaned(&s.text)).collect();

        for (seg, toks) in segs.iter().zip(&toks) {
            let folded = toks.join(" ");
            if let Some(hit) = patterns::check(&folded) {
                let scores = match hit.kind {
                    Kind::Injection => Scores {
                        injection: 1.0,
                        toxicity: 0.0,
                    },
                    Kind::Toxicity | Kind::Harmful | Kind::Request => Scores {
                        injection: 0.0,
                        toxicity: 1.0,
                    },
                };
                return Verdict::block(
                    scores,
                    Layer::Pattern,
                    format!("{}{}", seg.origin.prefix(), hit.rule),
                    Some(excerpt_around(&folded, hit.start)),
                );
            }
        }

        let mut best = Scores::default();
        let mut worst_inj: (&[String], Origin) = (&[], Origin::Text);
        let mut worst_tox: (&[String], Origin) = (&[], Origin::Text);
        for (seg, toks) in segs.iter().zip(&toks) {
            let wins = windows(toks, self.cfg.window_bytes);
            // Text of up to WHOLE_TEXT_BYTES is scored as a whole too, so
            // role-play set-ups that are obvious only as a whole are not
            // missed; past that the windows alone keep the cost linear and low.
            let whole =
                (wins.len() > 1 && seg.text.len() <= WHOLE_TEXT_BYTES).then_some(toks.as_slice());
            for w in whole.into_iter().chain(wins) {
                let s = model::score_tokens(w);
                if s.injection > best.injection {
                    best.injection = s.injection;
                    worst_inj = (w, seg.origin);
                }
                if s.toxicity > best.toxicity {
                    best.toxicity = s.toxicity;
                    worst_tox = (w, seg.origin);
                }
            }
        }
        // A few words carry too little evidence for the model to block on
        // its own ("continue", "system prompt"): it overwhelmingly flags
        // harmless short messages. Short text is blocked by patterns only.
        // Han and kana characters are tokens of their own; two count as a word.
        let words: usize = toks.iter().map(|t| word_count(t)).sum();
        if words < MIN_MODEL_WORDS {
            return Verdict::allow(best);
        }
        // Injection is checked first: it is the threat to the agent itself.
        if best.injection >= self.cfg.injection_threshold {
            let (w, origin) = worst_inj;
            return Verdict::block(
                best,
                Layer::Model,
                format!("{}injection_score", origin.prefix()),
                Some(excerpt(&w.join(" "))),
            );
        }
        if best.toxicity >= self.cfg.toxicity_threshold {
            let (w, origin) = worst_tox;
            return Verdict::block(
                best,
                Layer::Model,
                format!("{}toxicity_score", origin.prefix()),
                Some(excerpt(&w.join(" "))),
            );
        }
        Verdict::allow(best)
    }

    /// Scans every string in a JSON value, keys included, as one document
    /// (one string per line), so that short fields are read in their context
    /// and an attack split across fields is still seen whole. The total size
    /// of all strings counts against `max_text_bytes`.
    pub fn scan_json(&self, value: &serde_json::Value) -> Verdict {
        if !self.cfg.enabled {
            return Verdict::allow(Scores::default());
        }
        match self.json_document(value) {
            Ok(text) => self.scan(&text),
            Err(v) => v,
        }
    }

    /// [`Filter::scan_json`], then the external scorer (if attached) for a
    /// borderline document the local layers allowed.
    pub async fn scan_json_async(&self, value: &serde_json::Value) -> Verdict {
        if !self.cfg.enabled {
            return Verdict::allow(Scores::default());
        }
        match self.json_document(value) {
            Ok(text) => self.scan_async(&text).await,
            Err(v) => v,
        }
    }

    /// Every string of a JSON value, keys included, one per line; a bounds
    /// verdict if they are too long together.
    fn json_document(&self, value: &serde_json::Value) -> Result<String, Verdict> {
        let mut strings: Vec<&str> = Vec::new();
        // An explicit stack: a deeply nested value must not overflow ours.
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::String(s) => strings.push(s),
                serde_json::Value::Array(items) => stack.extend(items.iter().rev()),
                serde_json::Value::Object(map) => {
                    for (k, item) in map.iter().rev() {
                        strings.push(k);
                        stack.push(item);
                    }
                }
                _ => {}
            }
        }
        let total: usize = strings.iter().map(|s| s.len()).sum();
        check_prompt_length(total, self.cfg.max_text_bytes).map_err(|v| Verdict::from_bound(&v))?;
        Ok(strings.join("\n"))
    }

    /// [`Filter::scan`], then the external scorer (if attached) for
    /// borderline text that the local layers allowed.
    pub async fn scan_async(&self, text: &str) -> Verdict {
        let local = self.scan(text);
        let Some(ext) = &self.external else {
            return local;
        };
        let c = &self.cfg;
        let borderline = local.injection >= c.injection_threshold * c.external_borderline
            || local.toxicity >= c.toxicity_threshold * c.external_borderline;
        if local.is_block() || !c.enabled || !borderline {
            return local;
        }
        match ext.score(text).await {
            Ok(s) => {
                let merged = Scores {
                    injection: local.injection.max(s.injection),
                    toxicity: local.toxicity.max(s.toxicity),
                };
                if s.injection >= c.injection_threshold {
                    Verdict::block(
                        merged,
                        Layer::External,
                        "external_injection".into(),
                        Some(excerpt(text)),
                    )
                } else if s.toxicity >= c.toxicity_threshold {
                    Verdict::block(
                        merged,
                        Layer::External,
                        "external_toxicity".into(),
                        Some(excerpt(text)),
                    )
                } else {
                    Verdict::allow(merged)
                }
            }
            Err(_) if c.external_fail_closed => Verdict::block(
                Scores {
                    injection: local.injection,
                    toxicity: local.toxicity,
                },
                Layer::External,
                "external_unavailable".into(),
                None,
            ),
            Err(_) => local,
        }
    }
}
