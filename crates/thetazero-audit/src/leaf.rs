//! The audit leaf: its fields and its exact bytes (RFC 8785 canonical JSON).
//! Verifiers hash the stored bytes and never re-serialize; parsing here must
//! be strict (one accepted spelling per leaf) and must never panic.

use std::borrow::Cow;
use std::fmt;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::encoding::{hex, hex_into, unhex32};

/// The type tag every leaf carries, so that a future layout is never
/// mistaken for this one.
pub const LEAF_TYPE: &str = "tz.audit.v1";

/// Largest leaf we produce or accept. Real leaves are a few hundred bytes;
/// the bound keeps hostile input from costing memory or time.
pub const MAX_LEAF_BYTES: usize = 4096;

/// Largest summary, in bytes of UTF-8.
pub const MAX_SUMMARY_BYTES: usize = 512;

/// Largest short string field (action type, category, permission state).
pub const MAX_LABEL_BYTES: usize = 64;

/// Integers must survive a round trip through an IEEE double, which is what
/// RFC 8785 and every JavaScript client assume.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LeafError {
    #[error("leaf is {0} bytes, more than the {MAX_LEAF_BYTES} allowed")]
    TooLarge(usize),
    #[error("leaf is not valid JSON for {LEAF_TYPE}: {0}")]
    Malformed(String),
    #[error("leaf bytes are not in canonical (RFC 8785) form")]
    NotCanonical,
    #[error("leaf type is {0:?}, expected {LEAF_TYPE:?}")]
    WrongType(String),
    #[error("field {field} is invalid: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("canonical encoding failed: {0}")]
    Encode(String),
}

/// A SHA-256 digest written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        unhex32(s).map(Digest)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // On the stack: leaves are encoded and re-encoded by the million.
        let mut buf = [0u8; 64];
        hex_into(&self.0, &mut buf);
        match std::str::from_utf8(&buf) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("hex is ASCII")),
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 lowercase hex characters")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Digest, E> {
                Digest::from_hex(s).ok_or_else(|| E::custom("expected 64 lowercase hex characters"))
            }
        }
        d.deserialize_str(V)
    }
}

/// The random salt of a payload commitment. It is stored beside the payload,
/// never in the leaf, and is deleted with the payload on erasure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; 32]);

impl Salt {
    pub fn random() -> Self {
        let mut s = [0u8; 32];
        OsRng.fill_bytes(&mut s);
        Salt(s)
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        unhex32(s).map(Salt)
    }
}

impl fmt::Debug for Salt {
    // The salt is what keeps a small payload from being guessed from its
    // commitment, so it stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

/// `SHA-256(salt || payload)`.
pub fn payload_commitment(salt: &Salt, payload: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(salt.0);
    h.update(payload);
    Digest(h.finalize().into())
}

/// Makes a fresh salt and the commitment to `payload` under it.
pub fn commit_payload(payload: &[u8]) -> (Salt, Digest) {
    let salt = Salt::random();
    let c = payload_commitment(&salt, payload);
    (salt, c)
}

/// Whether `payload` and `salt` are what `commitment` commits to.
pub fn check_payload(payload: &[u8], salt: &Salt, commitment: &Digest) -> bool {
    payload_commitment(salt, payload) == *commitment
}

/// Whether `bytes` passes the single-pass canonical leaf check alone. It is
/// exposed so tests can hold it to the full parser; use
/// [`AuditLeaf::check_bytes`].
#[doc(hidden)]
pub fn is_canonical_fast(bytes: &[u8]) -> bool {
    crate::leaf_fast::is_canonical_leaf(bytes)
}

/// Cuts `s` to at most `MAX_SUMMARY_BYTES` bytes on a char boundary, so a
/// summary never grows a leaf past its bound and is never invalid UTF-8.
pub fn bounded_summary(s: &str) -> String {
    if s.len() <= MAX_SUMMARY_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_SUMMARY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    None,
}

/// One audit event as committed to the log. Field names are the wire names.
///
/// Fields are declared in RFC 8785 key order (all keys are ASCII, so that is
/// byte order) and hold only integers, strings, booleans and nulls. For such
/// a struct, compact `serde_json` output is already the canonical form, which
/// is several times faster than a general JCS serializer; a property test
/// checks it against `serde_jcs` byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLeaf {
    pub account_id: i64,
    pub action_category: String,
    pub action_type: String,
    pub agent_id: Option<i64>,
    pub decision: Decision,
    pub execution_id: Option<i64>,
    pub input_digest: Option<Digest>,
    pub is_violation: bool,
    pub key_id: Option<i64>,
    pub output_digest: Option<Digest>,
    /// Hex `SHA-256(salt || payload)`; see [`commit_payload`].
    pub payload_commitment: Digest,
    pub permission_state: String,
    /// At most 512 bytes; see [`bounded_summary`].
    pub summary: String,
    /// RFC 3339 UTC with `Z` and 3 or 6 fractional digits.
    pub time: String,
    /// Always [`LEAF_TYPE`].
    #[serde(rename = "type")]
    pub leaf_type: String,
}

impl AuditLeaf {
    /// The exact leaf bytes: canonical JSON, after checking every field.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LeafError> {
        let view = self.view();
        view.validate()?;
        let bytes = serde_json::to_vec(&view).map_err(|e| LeafError::Encode(e.to_string()))?;
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(LeafError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Parses leaf bytes strictly: valid fields, no unknown or duplicate
    /// keys, and byte-for-byte canonical, so two different byte strings never
    /// parse to the same leaf.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LeafError> {
        Ok(LeafView::parse(bytes)?.into_owned())
    }

    /// The same checks as [`AuditLeaf::from_bytes`] without building the
    /// leaf; the bundle verifier runs this on every entry.
    pub fn check_bytes(bytes: &[u8]) -> Result<(), LeafError> {
        // The single-pass check accepts only what the full parser accepts;
        // when it refuses, the full parser decides and names the error.
        if crate::leaf_fast::is_canonical_leaf(bytes) {
            return Ok(());
        }
        LeafView::parse(bytes).map(|_| ())
    }

    pub fn validate(&self) -> Result<(), LeafError> {
        self.view().validate()
    }

    fn view(&self) -> LeafView<'_> {
        LeafView {
            account_id: self.account_id,
            action_category: Cow::Borrowed(&self.action_category),
            action_type: Cow::Borrowed(&self.action_type),
            agent_id: self.agent_id,
            decision: self.decision,
            execution_id: self.execution_id,
            input_digest: self.input_digest,
            is_violation: self.is_violation,
            key_id: self.key_id,
            output_digest: self.output_digest,
            payload_commitment: self.payload_commitment,
            permission_state: Cow::Borrowed(&self.permission_state),
            summary: Cow::Borrowed(&self.summary),
            time: Cow::Borrowed(&self.time),
            leaf_type: Cow::Borrowed(&self.leaf_type),
        }
    }
}

/// The one encoder and decoder of leaf bytes. It borrows strings from the
/// input (copying only those with escapes), so checking a leaf allocates
/// nothing in the common case. Same fields, order and names as
/// [`AuditLeaf`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafView<'a> {
    account_id: i64,
    #[serde(borrow)]
    action_category: Cow<'a, str>,
    #[serde(borrow)]
    action_type: Cow<'a, str>,
    agent_id: Option<i64>,
    decision: Decision,
    execution_id: Option<i64>,
    input_digest: Option<Digest>,
    is_violation: bool,
    key_id: Option<i64>,
    output_digest: Option<Digest>,
    payload_commitment: Digest,
    #[serde(borrow)]
    permission_state: Cow<'a, str>,
    #[serde(borrow)]
    summary: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    leaf_type: Cow<'a, str>,
}

impl<'a> LeafView<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, LeafError> {
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(LeafError::TooLarge(bytes.len()));
        }
        let view: LeafView<'a> =
            serde_json::from_slice(bytes).map_err(|e| LeafError::Malformed(e.to_string()))?;
        view.validate()?;
        // Re-encode into a writer that compares as it goes, instead of
        // building a second copy of the bytes.
        let mut cmp = SameAs {
            want: bytes,
            pos: 0,
        };
        let same = serde_json::to_writer(&mut cmp, &view).is_ok() && cmp.pos == bytes.len();
        if !same {
            return Err(LeafError::NotCanonical);
        }
        Ok(view)
    }

    fn validate(&self) -> Result<(), LeafError> {
        if self.leaf_type != LEAF_TYPE {
            return Err(LeafError::WrongType(self.leaf_type.to_string()));
        }
        check_int("account_id", Some(self.account_id))?;
        check_int("agent_id", self.agent_id)?;
        check_int("execution_id", self.execution_id)?;
        check_int("key_id", self.key_id)?;
        check_label("action_type", &self.action_type)?;
        check_label("action_category", &self.action_category)?;
        check_label("permission_state", &self.permission_state)?;
        if !is_rfc3339_utc(&self.time) {
            return Err(LeafError::InvalidField {
                field: "time",
                reason: "expected RFC 3339 UTC like 2026-01-31T12:00:00.000Z",
            });
        }
        if self.summary.len() > MAX_SUMMARY_BYTES {
            return Err(LeafError::InvalidField {
                field: "summary",
                reason: "longer than 512 bytes (use bounded_summary)",
            });
        }
        Ok(())
    }

    fn into_owned(self) -> AuditLeaf {
        AuditLeaf {
            account_id: self.account_id,
            action_category: self.action_category.into_owned(),
            action_type: self.action_type.into_owned(),
            agent_id: self.agent_id,
            decision: self.decision,
            execution_id: self.execution_id,
            input_digest: self.input_digest,
            is_violation: self.is_violation,
            key_id: self.key_id,
            output_digest: self.output_digest,
            payload_commitment: self.payload_commitment,
            permission_state: self.permission_state.into_owned(),
            summary: self.summary.into_owned(),
            time: self.time.into_owned(),
            leaf_type: self.leaf_type.into_owned(),
        }
    }
}

/// A writer that accepts exactly the bytes of `want`, in order.
struct SameAs<'a> {
    want: &'a [u8],
    pos: usize,
}

impl std::io::Write for SameAs<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.pos + buf.len();
        if self.want.get(self.pos..end) != Some(buf) {
            return Err(std::io::Error::other("differs"));
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_int(field: &'static str, v: Option<i64>) -> Result<(), LeafError> {
    match v {
        Some(n) if !(0..=MAX_SAFE_INTEGER).contains(&n) => Err(LeafError::InvalidField {
            field,
            reason: "must be between 0 and 2^53-1",
        }),
        _ => Ok(()),
    }
}

/// Labels are snake_case identifiers: they end up in CSV cells, SQL filters
/// and dashboards, so anything else is refused at the source.
fn check_label(field: &'static str, v: &str) -> Result<(), LeafError> {
    if label_ok(v) {
        Ok(())
    } else {
        Err(LeafError::InvalidField {
            field,
            reason: "must be 1 to 64 bytes of lowercase snake_case",
        })
    }
}

pub(crate) fn label_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LABEL_BYTES
        && v.as_bytes()[0].is_ascii_lowercase()
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` or `...ffffffZ`, with a real calendar date.
/// One accepted shape keeps the leaf bytes canonical.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let frac = match b.len() {
        24 => 3,
        27 => 6,
        _ => return false,
    };
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
        }
        Some(v)
    };
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if seps.iter().any(|&(i, c)| b[i] != c) || b[20 + frac] != b'Z' {
        return false;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec), Some(_)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
        digits(20..20 + frac),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d) && h < 24 && mi < 60 && sec < 60
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(i: i64) -> AuditLeaf {
        AuditLeaf {
            leaf_type: LEAF_TYPE.into(),
            account_id: 7,
            agent_id: Some(42),
            execution_id: Some(1000 + i),
            action_type: "api_call".into(),
            action_category: "network".into(),
            time: "2026-01-31T12:00:00.123Z".into(),
            permission_state: "granted".into(),
            decision: Decision::Allow,
            is_violation: false,
            key_id: Some(3),
            input_digest: Some(Digest::of(b"in")),
            output_digest: None,
            summary: format!("GET https://api.example.com/{i}"),
            payload_commitment: Digest::of(b"payload"),
        }
    }

    #[test]
    fn canonical_bytes_are_sorted_and_compact() {
        let bytes = sample(1).to_bytes().unwrap();
        let s = String::from_utf8(bytes).unwrap();
        assert!(s.starts_with(r#"{"account_id":7,"action_category":"network","action_type":"api_call","agent_id":42,"#), "{s}");
        assert!(s.contains(r#""output_digest":null"#));
        assert!(s.ends_with(r#""type":"tz.audit.v1"}"#));
        assert_eq!(AuditLeaf::from_bytes(s.as_bytes()).unwrap(), sample(1));
    }

    fn check_parse(input: &str, expected: Result<(), &str>) {
        let got = AuditLeaf::from_bytes(input.as_bytes()).map(|_| ());
        match (got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(want)) => assert!(
                format!("{e:?}").contains(want),
                "input {input:?}: error {e:?} does not mention {want:?}"
            ),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn strict_parsing() {
        let good = String::from_utf8(sample(1).to_bytes().unwrap()).unwrap();
        check_parse(&good, Ok(()));
        check_parse("", Err("Malformed"));
        check_parse("null", Err("Malformed"));
        check_parse("[]", Err("Malformed"));
        check_parse("{}", Err("Malformed"));
        check_parse(&format!(" {good}"), Err("NotCanonical"));
        check_parse(&format!("{good}\n"), Err("NotCanonical"));
        check_parse(
            &good.replace(r#""account_id":7,"#, r#""account_id":7, "#),
            Err("NotCanonical"),
        );
        check_parse(
            &good.replace(r#"{"account_id":7,"#, r#"{"account_id":7,"x":1,"#),
            Err("unknown field"),
        );
        check_parse(
            &good.replace(r#"{"account_id":7,"#, r#"{"account_id":7,"account_id":8,"#),
            Err("duplicate field"),
        );
        check_parse(
            &good.replace(r#""output_digest":null,"#, ""),
            Err("NotCanonical"),
        );
        check_parse(
            &good.replace(r#""account_id":7"#, r#""account_id":7.0"#),
            Err("Malformed"),
        );
        check_parse(
            &good.replace(r#""account_id":7"#, r#""account_id":-7"#),
            Err("account_id"),
        );
        check_parse(
            &good.replace(r#""account_id":7"#, r#""account_id":9007199254740992"#),
            Err("account_id"),
        );
        check_parse(
            &good.replace("tz.audit.v1", "tz.audit.v2"),
            Err("WrongType"),
        );
        check_parse(&good.replace("\"allow\"", "\"maybe\""), Err("Malformed"));
        check_parse(&good.replace("api_call", "Api Call"), Err("action_type"));
        check_parse(&good.replace(".123Z", ".123+00:00"), Err("time"));
        check_parse(&good.replace("01-31T", "02-30T"), Err("time"));
        check_parse(
            &good.replace(
                &Digest::of(b"in").to_hex(),
                &Digest::of(b"in").to_hex().to_uppercase(),
            ),
            Err("hex"),
        );
        check_parse(&"x".repeat(MAX_LEAF_BYTES + 1), Err("TooLarge"));
        check_parse(&"[".repeat(4000), Err("Malformed"));
    }

    fn check_time(s: &str, ok: bool) {
        assert_eq!(is_rfc3339_utc(s), ok, "{s}");
    }

    #[test]
    fn times() {
        check_time("2026-01-31T12:00:00.123Z", true);
        check_time("2026-01-31T12:00:00.123456Z", true);
        check_time("2024-02-29T23:59:59.999Z", true);
        check_time("2023-02-29T23:59:59.999Z", false);
        check_time("2026-01-31T24:00:00.000Z", false);
        check_time("2026-01-31T12:00:60.000Z", false);
        check_time("2026-13-01T12:00:00.000Z", false);
        check_time("2026-01-31T12:00:00Z", false);
        check_time("2026-01-31T12:00:00.1234Z", false);
        check_time("2026-01-31 12:00:00.123Z", false);
        check_time("2026-01-31T12:00:00.123z", false);
        check_time("２026-01-31T12:00:00.12Z", false);
    }

    #[test]
    fn summary_bound_respects_char_boundaries() {
        let s = "é".repeat(400); // 800 bytes
        let b = bounded_summary(&s);
        assert!(b.len() <= MAX_SUMMARY_BYTES && b.len() >= MAX_SUMMARY_BYTES - 1);
        assert!(s.starts_with(&b));
        assert_eq!(bounded_summary("short"), "short");
        let mut leaf = sample(0);
        leaf.summary = s;
        assert!(matches!(
            leaf.to_bytes(),
            Err(LeafError::InvalidField {
                field: "summary",
                ..
            })
        ));
    }

    #[test]
    fn payload_commitments() {
        let (salt, c) = commit_payload(b"secret payload");
        assert!(check_payload(b"secret payload", &salt, &c));
        assert!(!check_payload(b"secret payloaD", &salt, &c));
        assert!(!check_payload(b"secret payload", &Salt([0; 32]), &c));
        let (salt2, c2) = commit_payload(b"secret payload");
        assert_ne!(salt2.0, salt.0, "salts must be fresh");
        assert_ne!(c2, c);
        assert_eq!(format!("{salt:?}"), "Salt(..)");
    }
}
