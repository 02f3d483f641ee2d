//! The second-stage injection scorer for borderline views: a small network over the fast models' hashed features; no thresholds or decisions here.
//!
//! The fast models are linear: they add evidence up. The second stage folds
//! the same hashed features into 2^16 buckets, sums one 32-dimensional
//! embedding row per bucket weighted by the L2-normalised counts, applies a
//! ReLU and a logistic output, so it can weigh combinations (an order
//! addressed to a model together with an exfiltration target) that a linear
//! model cannot. It runs only on views whose fast injection score lies in
//! the borderline band (see `lib.rs`), so its cost is paid rarely; it is
//! cheap anyway (32 integer multiply-adds per feature).
//!
//! `model/second-stage.bin` is written by `training/train.py`
//! (`training/second_stage.py`): the magic `TZSEC001`, `u32` bucket bits,
//! `u32` hidden size H, then H `f32` scales, H `f32` hidden biases, H `f32`
//! output weights, an `f32` output bias, and 2^bits rows of H `i8`, all
//! little-endian. Sums are integers and the float steps run in the order
//! the Python side uses, so both agree to rounding of the final `exp`.

use std::sync::OnceLock;

use crate::features::Features;

const WEIGHTS: &[u8] = include_bytes!("../model/second-stage.bin");
const MAGIC: &[u8] = b"TZSEC001";
const BITS: u32 = 16;
const HIDDEN: usize = 32;

#[derive(Debug)]
pub(crate) struct Net {
    scale: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: f64,
    rows: Vec<i8>,
}

fn f32_at(bytes: &[u8], at: usize) -> Option<f64> {
    Some(f64::from(f32::from_le_bytes(
        bytes.get(at..at + 4)?.try_into().ok()?,
    )))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn parse(bytes: &[u8]) -> Option<Net> {
    if bytes.get(..8)? != MAGIC
        || u32_at(bytes, 8)? != BITS
        || u32_at(bytes, 12)? as usize != HIDDEN
    {
        return None;
    }
    let vec_at = |at: usize| -> Option<Vec<f64>> {
        (0..HIDDEN).map(|k| f32_at(bytes, at + 4 * k)).collect()
    };
    let mut at = 16;
    let scale = vec_at(at)?;
    at += 4 * HIDDEN;
    let b1 = vec_at(at)?;
    at += 4 * HIDDEN;
    let w2 = vec_at(at)?;
    at += 4 * HIDDEN;
    let b2 = f32_at(bytes, at)?;
    at += 4;
    let n = (1usize << BITS) * HIDDEN;
    let body = bytes.get(at..at + n)?;
    if bytes.len() != at + n {
        return None;
    }
    Some(Net {
        scale,
        b1,
        w2,
        b2,
        rows: body.iter().map(|b| i8::from_le_bytes([*b])).collect(),
    })
}

pub(crate) fn net() -> Option<&'static Net> {
    static NET: OnceLock<Option<Net>> = OnceLock::new();
    NET.get_or_init(|| parse(WEIGHTS)).as_ref()
}

impl Net {
    /// The network's logit for a view's features.
    pub(crate) fn logit(&self, f: &Features) -> f64 {
        let mut acc = [0i64; HIDDEN];
        if f.norm != 0.0 {
            let mask = (1usize << BITS) - 1;
            // Sums in 32 bits, which the compiler turns into vector
            // instructions, moved into the 64-bit sums before they could
            // overflow: a feature adds at most 128 * |count| to a unit, so
            // a run of features whose |counts| sum to at most
            // i32::MAX / 128 cannot, whatever the text's length.
            const BUDGET: i64 = i32::MAX as i64 / 128;
            let mut part = [0i32; HIDDEN];
            let mut used = 0i64;
            for (b, c) in &f.counts {
                let weight = i64::from(*c).abs();
                if used + weight > BUDGET {
                    for (a, p) in acc.iter_mut().zip(&mut part) {
                        *a += i64::from(std::mem::take(p));
                    }
                    used = 0;
                }
                let at = (*b as usize & mask) * HIDDEN;
                let Some(row) = self.rows.get(at..at + HIDDEN) else {
                    continue;
                };
                if weight > BUDGET {
                    // One count too large for 32 bits on its own.
                    for (a, w) in acc.iter_mut().zip(row) {
                        *a += i64::from(*w) * i64::from(*c);
                    }
                    continue;
                }
                used += weight;
                for (a, w) in part.iter_mut().zip(row) {
                    *a += i32::from(*w) * *c;
                }
            }
            for (a, p) in acc.iter_mut().zip(part) {
                *a += i64::from(p);
            }
        }
        let mut out = self.b2;
        let units = acc.iter().zip(&self.b1).zip(&self.scale).zip(&self.w2);
        for (((a, b1), scale), w2) in units {
            let h = if f.norm != 0.0 {
                b1 + scale * *a as f64 / f.norm
            } else {
                *b1
            };
            if h > 0.0 {
                out += w2 * h;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The logit with 64-bit sums throughout, as the training script
    /// computes it.
    fn reference(net: &Net, f: &Features) -> f64 {
        let mut acc = [0i64; HIDDEN];
        for (b, c) in &f.counts {
            let at = (*b as usize & ((1 << BITS) - 1)) * HIDDEN;
            for (a, w) in acc.iter_mut().zip(&net.rows[at..at + HIDDEN]) {
                *a += i64::from(*w) * i64::from(*c);
            }
        }
        let mut out = net.b2;
        for (k, a) in acc.iter().enumerate() {
            let h = net.b1[k] + net.scale[k] * *a as f64 / f.norm;
            if h > 0.0 {
                out += net.w2[k] * h;
            }
        }
        out
    }

    #[test]
    fn sums_are_exact_for_any_count() {
        let net = net().expect("weights parse");
        let cases: [Vec<(u32, i32)>; 3] = [
            (0..2000).map(|b| (b * 31, (b as i32 % 7) - 3)).collect(),
            // Counts that overflow 32-bit sums within a few features.
            (0..64)
                .map(|b| (b * 977, if b % 2 == 0 { 40_000_000 } else { -9_000_000 }))
                .collect(),
            (0..600).map(|b| (b * 13, 3_000_000)).collect(),
        ];
        for counts in cases {
            let sq: f64 = counts.iter().map(|(_, c)| f64::from(*c).powi(2)).sum();
            let f = Features {
                counts,
                norm: sq.sqrt(),
            };
            assert_eq!(net.logit(&f), reference(net, &f));
        }
    }

    #[test]
    fn weights_parse() {
        assert!(net().is_some());
        assert!(parse(b"TZSEC001").is_none());
        assert!(parse(&WEIGHTS[..WEIGHTS.len() - 1]).is_none());
    }
}
