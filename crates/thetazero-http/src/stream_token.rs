//! Short-lived, read-only stream tokens for browsers, whose `EventSource`
//! cannot send an Authorization header: `base64url(account.key.expiry)` and
//! an HMAC-SHA256 over it, keyed by a secret every replica derives from the
//! deployment's signing key. They open one account's audit stream and nothing
//! else, and only while the key that minted them is live and may read the
//! audit log.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thetazero_core::model::{AccountId, KeyId};

type HmacSha256 = Hmac<Sha256>;

/// How long a token may be used to open a stream.
pub const TTL_SECS: i64 = 300;

fn mac(secret: &[u8; 32], body: &str) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(b"thetazero stream token v2\0");
    mac.update(body.as_bytes());
    Some(mac)
}

/// A token for `account`, minted by `key`, valid until `expires` (Unix
/// seconds).
pub fn issue(secret: &[u8; 32], account: AccountId, key: KeyId, expires: i64) -> String {
    let body = URL_SAFE_NO_PAD.encode(format!("{account}.{key}.{expires}"));
    let tag = mac(secret, &body)
        .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{body}.{tag}")
}

/// The account a valid, unexpired token opens, and the key that minted it.
pub fn verify(secret: &[u8; 32], token: &str) -> Option<(AccountId, KeyId)> {
    verify_at(
        secret,
        token,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
}

fn verify_at(secret: &[u8; 32], token: &str, now: i64) -> Option<(AccountId, KeyId)> {
    if token.len() > 256 {
        return None;
    }
    let (body, tag) = token.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    // verify_slice compares in constant time.
    mac(secret, body)?.verify_slice(&tag).ok()?;
    let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    let mut parts = plain.split('.');
    let (account, key, expires) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (account, key, expires): (AccountId, KeyId, i64) = (
        AccountId::new(account.parse().ok()?),
        KeyId::new(key.parse().ok()?),
        expires.parse().ok()?,
    );
    (now <= expires).then_some((account, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_one_account_until_they_expire() {
        let secret = [7u8; 32];
        let (account, key) = (AccountId::new(42), KeyId::new(5));
        let token = issue(&secret, account, key, 1_000);
        assert_eq!(verify_at(&secret, &token, 999), Some((account, key)));
        assert_eq!(verify_at(&secret, &token, 1_000), Some((account, key)));
        assert_eq!(verify_at(&secret, &token, 1_001), None, "expired");
        assert_eq!(
            verify_at(&[8u8; 32], &token, 999),
            None,
            "another deployment's secret"
        );
        let (body, tag) = token.split_once('.').unwrap();
        for (forged, why) in [
            ("43.5.1000", "another account"),
            ("42.6.1000", "another key"),
            ("42.5.999999", "a later expiry"),
            ("42.1000", "the old two-part form"),
        ] {
            let forged = URL_SAFE_NO_PAD.encode(forged);
            assert_eq!(
                verify_at(&secret, &format!("{forged}.{tag}"), 999),
                None,
                "{why}"
            );
        }
        for junk in [
            "",
            ".",
            "a.b",
            &format!("{body}."),
            &"x".repeat(300),
            "tzk_abc",
        ] {
            assert_eq!(verify_at(&secret, junk, 0), None, "{junk:?}");
        }
    }
}
