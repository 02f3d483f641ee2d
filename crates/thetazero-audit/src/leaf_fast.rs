//! A single-pass check that bytes are a valid, canonical `tz.audit.v1` leaf,
//! for verifying a million leaves without building them. It walks the one
//! byte layout canonical encoding allows; it may refuse what the full parser
//! accepts (the caller then asks the full parser), but must never accept
//! what the full parser refuses, and must never panic.

use crate::leaf::{is_rfc3339_utc, label_ok, MAX_LEAF_BYTES, MAX_SAFE_INTEGER, MAX_SUMMARY_BYTES};

/// True only if `bytes` is a leaf `AuditLeaf::from_bytes` accepts.
pub(crate) fn is_canonical_leaf(bytes: &[u8]) -> bool {
    if bytes.len() > MAX_LEAF_BYTES || std::str::from_utf8(bytes).is_err() {
        return false;
    }
    let mut c = Cursor { b: bytes, pos: 0 };
    check(&mut c).is_some() && c.pos == bytes.len()
}

fn check(c: &mut Cursor<'_>) -> Option<()> {
    c.lit(b"{\"account_id\":")?;
    c.int()?;
    c.lit(b",\"action_category\":")?;
    c.label()?;
    c.lit(b",\"action_type\":")?;
    c.label()?;
    c.lit(b",\"agent_id\":")?;
    c.opt_int()?;
    c.lit(b",\"decision\":")?;
    if !(c.try_lit(b"\"allow\"") || c.try_lit(b"\"deny\"") || c.try_lit(b"\"none\"")) {
        return None;
    }
    c.lit(b",\"execution_id\":")?;
    c.opt_int()?;
    c.lit(b",\"input_digest\":")?;
    c.opt_digest()?;
    c.lit(b",\"is_violation\":")?;
    if !(c.try_lit(b"true") || c.try_lit(b"false")) {
        return None;
    }
    c.lit(b",\"key_id\":")?;
    c.opt_int()?;
    c.lit(b",\"output_digest\":")?;
    c.opt_digest()?;
    c.lit(b",\"payload_commitment\":")?;
    c.digest()?;
    c.lit(b",\"permission_state\":")?;
    c.label()?;
    c.lit(b",\"summary\":")?;
    let (_, decoded_len) = c.string()?;
    if decoded_len > MAX_SUMMARY_BYTES {
        return None;
    }
    c.lit(b",\"time\":")?;
    let (raw, _) = c.string()?;
    // A valid time has no escapes, so the raw bytes are the value.
    if !is_rfc3339_utc(std::str::from_utf8(raw).ok()?) {
        return None;
    }
    c.lit(b",\"type\":\"tz.audit.v1\"}")
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn try_lit(&mut self, lit: &[u8]) -> bool {
        if self.b.get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        self.try_lit(lit).then_some(())
    }

    /// A canonical non-negative integer no larger than 2^53-1: `0` or a
    /// digit string without leading zeros.
    fn int(&mut self) -> Option<()> {
        let start = self.pos;
        while self.peek().is_some_and(|d| d.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.b.get(start..self.pos)?;
        if digits.is_empty() || digits.len() > 16 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        let mut v: i64 = 0;
        for d in digits {
            v = v * 10 + i64::from(d - b'0');
        }
        (v <= MAX_SAFE_INTEGER).then_some(())
    }

    fn opt_int(&mut self) -> Option<()> {
        if self.try_lit(b"null") {
            Some(())
        } else {
            self.int()
        }
    }

    fn digest(&mut self) -> Option<()> {
        self.lit(b"\"")?;
        let hex = self.b.get(self.pos..self.pos + 64)?;
        if !hex
            .iter()
            .all(|&h| h.is_ascii_digit() || (b'a'..=b'f').contains(&h))
        {
            return None;
        }
        self.pos += 64;
        self.lit(b"\"")
    }

    fn opt_digest(&mut self) -> Option<()> {
        if self.try_lit(b"null") {
            Some(())
        } else {
            self.digest()
        }
    }

    /// A string in the escaping canonical JSON uses: `\"`, `\\`, the short
    /// forms `\b \f \n \r \t`, and `\u00xx` (lowercase) for the other
    /// control characters; nothing else escaped, no raw control characters.
    /// Returns the raw content and the length of the decoded value.
    fn string(&mut self) -> Option<(&'a [u8], usize)> {
        self.lit(b"\"")?;
        let start = self.pos;
        let mut decoded = 0usize;
        loop {
            let b = self.peek()?;
            match b {
                b'"' => break,
                b'\\' => {
                    self.pos += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 1,
                        b'u' => {
                            let esc = self.b.get(self.pos + 1..self.pos + 5)?;
                            let lower_hex =
                                |h: u8| h.is_ascii_digit() || (b'a'..=b'f').contains(&h);
                            if esc[0] != b'0'
                                || esc[1] != b'0'
                                || !lower_hex(esc[2])
                                || !lower_hex(esc[3])
                            {
                                return None;
                            }
                            // Only control characters without a short form.
                            let v = hex_val(esc[2]) * 16 + hex_val(esc[3]);
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.pos += 5;
                        }
                        _ => return None,
                    }
                    decoded += 1;
                }
                0x00..=0x1f => return None,
                _ => {
                    self.pos += 1;
                    decoded += 1;
                }
            }
        }
        let raw = self.b.get(start..self.pos)?;
        self.pos += 1;
        Some((raw, decoded))
    }

    /// A label string: lowercase snake_case, so never escaped.
    fn label(&mut self) -> Option<()> {
        let (raw, _) = self.string()?;
        label_ok(std::str::from_utf8(raw).ok()?).then_some(())
    }
}

fn hex_val(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        _ => h - b'a' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::{tests::sample, AuditLeaf};

    fn check(input: &str, expected: bool) {
        assert_eq!(is_canonical_leaf(input.as_bytes()), expected, "{input}");
        // Never more lenient than the full parser.
        if expected {
            assert!(AuditLeaf::from_bytes(input.as_bytes()).is_ok(), "{input}");
        }
    }

    #[test]
    fn cases() {
        let good = String::from_utf8(sample(1).to_bytes().unwrap()).unwrap();
        check(&good, true);
        let with = |summary: &str| {
            let mut l = sample(1);
            l.summary = summary.into();
            String::from_utf8(l.to_bytes().unwrap()).unwrap()
        };
        check(
            &with("tab\there \"quoted\" back\\slash \u{1} \u{7f} é 日本"),
            true,
        );
        check(&with(&"é".repeat(256)), true);
        check(
            &good.replace("\"account_id\":7", "\"account_id\":07"),
            false,
        );
        check(
            &good.replace("\"account_id\":7", "\"account_id\":-7"),
            false,
        );
        check(
            &good.replace("\"account_id\":7", "\"account_id\":9007199254740992"),
            false,
        );
        check(
            &good.replace("\"account_id\":7", "\"account_id\":9007199254740991"),
            true,
        );
        check(&good.replace("\"agent_id\":42", "\"agent_id\":null"), true);
        check(&good.replace("\"allow\"", "\"Allow\""), false);
        check(&good.replace("GET", "G\\u0045T"), false);
        check(&good.replace("GET", "G\\/T"), false);
        check(&good.replace("GET", "G\\u000aT"), false);
        check(&good.replace("GET", "G\\u001FT"), false);
        check(&good.replace("GET", "G\\u001fT"), true);
        check(&good.replace("GET", "G\tT"), false);
        check(&good.replace("api_call", "api\\u005fcall"), false);
        check(&good.replace(".123Z", ".123z"), false);
        check(&good.replace("tz.audit.v1", "tz.audit.v2"), false);
        check(&format!("{good} "), false);
        check(&good[..good.len() - 1], false);
        check("", false);
        check("{", false);
        let mut bad_utf8 = good.clone().into_bytes();
        let at = bad_utf8.iter().position(|&b| b == b'G').unwrap();
        bad_utf8[at] = 0xff;
        assert!(!is_canonical_leaf(&bad_utf8));
    }
}
