//! Small, strict text encodings shared by the modules (base64 of hashes,
//! lowercase hex). Must not accept more than one spelling of a value.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::merkle::Hash;

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard padded base64. The engine rejects non-canonical trailing
/// bits, so each value has one accepted spelling.
pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

pub(crate) fn hash_b64(h: &Hash) -> String {
    b64(&h.0)
}

pub(crate) fn hash_from_b64(s: &str) -> Option<Hash> {
    // A hash is 44 characters of base64; refuse anything longer before
    // decoding so a huge string costs nothing.
    if s.len() != 44 {
        return None;
    }
    let bytes = unb64(s)?;
    let arr: [u8; 32] = bytes.try_into().ok()?;
    Some(Hash(arr))
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Lowercase hex of 32 bytes into a fixed buffer.
pub(crate) fn hex_into(bytes: &[u8; 32], out: &mut [u8; 64]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Decodes lowercase hex only: uppercase would give a second spelling of the
/// same digest, which canonical leaves must not have.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    let raw = s.as_bytes();
    if raw.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let bytes = [0xabu8; 32];
        let s = hex(&bytes);
        assert_eq!(unhex32(&s), Some(bytes));
        assert_eq!(unhex32(&s.to_uppercase()), None);
        assert_eq!(unhex32(&s[..62]), None);
        assert_eq!(unhex32(&format!("{}zz", &s[..62])), None);
    }

    #[test]
    fn hash_b64_strictness() {
        let h = Hash([7u8; 32]);
        let s = hash_b64(&h);
        assert_eq!(hash_from_b64(&s), Some(h));
        assert_eq!(hash_from_b64(&s[..43]), None);
        assert_eq!(
            hash_from_b64("not base64 at all, but forty-four chars long"),
            None
        );
    }
}
