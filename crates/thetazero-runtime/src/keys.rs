//! API keys as their owners manage them: the use cases behind `/api/v1/keys`
//! (create, revoke, change scopes) and `/api/v1/accounts` (an account with
//! its owner key), and the key format itself. A key is
//! `tzk_` and 32 random bytes in unpadded URL-safe base64; only its SHA-256 is
//! stored. Keys carry 256 bits of entropy, so a fast hash is enough: there is
//! nothing to brute-force. A key hands out only scopes it holds itself, only
//! an owner key revokes an owner key, and every change is audited once, in
//! the store's transaction with the change.

use base64::Engine;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use thetazero_core::audit::{AuditAction, AuditEvent};
use thetazero_core::model::{Account, AccountId, ApiKey, KeyId, NewKey};
use thetazero_core::store::StoreError;
use thetazero_core::KeyScope;

use crate::Runtime;

pub const KEY_PREFIX: &str = "tzk_";
/// Characters of the secret kept for display: the prefix and 8 more.
const DISPLAY_LEN: usize = 12;

/// A new key's secret, display prefix and stored hash.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

impl GeneratedKey {
    /// An owner key of `account` with this secret's prefix and hash (an
    /// account id of 0 is filled in by a store that creates the account).
    pub fn owner(&self, account: AccountId, name: &str) -> NewKey {
        NewKey {
            account_id: account,
            name: name.into(),
            prefix: self.prefix.clone(),
            hash: self.hash,
            scopes: vec![],
            is_owner: true,
            created_by: None,
        }
    }
}

pub fn generate_key() -> GeneratedKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    GeneratedKey {
        prefix: secret[..DISPLAY_LEN].to_string(),
        hash: hash_key(&secret),
        secret,
    }
}

pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Why a key use case refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No such key in the caller's account.
    #[error("API key not found")]
    NotFound,
    /// The scopes asked for are not a valid list (the message names why).
    #[error("{0}")]
    InvalidScopes(String),
    /// The caller's key does not hold a scope it tried to hand out.
    #[error("this API key lacks the scope {0}, so it cannot grant it")]
    CannotGrant(&'static str),
    #[error("only an owner key may revoke an owner key")]
    OwnerOnly,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Scopes `holder` may grant from `raw`: known, at least one, each held by
/// the holder itself; sorted, without repeats.
pub fn grantable_scopes(holder: &ApiKey, raw: &[String]) -> Result<Vec<KeyScope>, KeyError> {
    if raw.is_empty() {
        return Err(KeyError::InvalidScopes(
            "field \"scopes\" must name at least one scope".into(),
        ));
    }
    let mut scopes = Vec::new();
    for name in raw {
        let scope = KeyScope::parse(name).ok_or_else(|| {
            KeyError::InvalidScopes(format!(
                "field \"scopes\": unknown scope {name:?}; expected one of {}",
                KeyScope::ALL.map(|s| s.as_str()).join(", ")
            ))
        })?;
        // A key can only hand out what it holds itself.
        if !holder.has_scope(scope) {
            return Err(KeyError::CannotGrant(scope.as_str()));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.sort();
    Ok(scopes)
}

fn scope_names(k: &ApiKey) -> Vec<&'static str> {
    k.scopes.iter().map(|s| s.as_str()).collect()
}

impl Runtime {
    /// Creates an account and its owner key, on behalf of `creator` (a key of
    /// the deployment's first account; the route's access rule checks that).
    /// Audited in both accounts. The answer holds the owner key's secret.
    pub async fn create_account(
        &self,
        creator: &ApiKey,
        name: &str,
    ) -> Result<(Account, ApiKey, String), KeyError> {
        let generated = generate_key();
        let owner = generated.owner(AccountId::new(0), "owner");
        let (by_account, by) = (creator.account_id, Some(creator.id));
        let (account, key) = self
            .store
            .create_account_audited(
                name,
                Some(owner),
                Box::new(move |(account, _)| {
                    vec![
                        AuditEvent::new(
                            by_account,
                            AuditAction::AccountCreated,
                            format!("account {} created", account.name),
                        )
                        .key(by)
                        .payload(json!({"created_account_id": account.id})),
                        AuditEvent::new(
                            account.id,
                            AuditAction::AccountCreated,
                            format!("account {} created by the deployment owner", account.name),
                        ),
                    ]
                }),
            )
            .await?;
        let key = key.ok_or_else(|| {
            KeyError::Store(StoreError::Internal("the owner key was not created".into()))
        })?;
        Ok((account, key, generated.secret))
    }

    /// Creates a key in `holder`'s account with scopes `holder` holds; the
    /// answer holds its secret, which nothing else ever will.
    pub async fn create_key(
        &self,
        holder: &ApiKey,
        name: String,
        scopes: &[String],
    ) -> Result<(ApiKey, String), KeyError> {
        let scopes = grantable_scopes(holder, scopes)?;
        let generated = generate_key();
        let (account, by) = (holder.account_id, Some(holder.id));
        let key = self
            .store
            .create_key_audited(
                NewKey {
                    account_id: account,
                    name,
                    prefix: generated.prefix,
                    hash: generated.hash,
                    scopes,
                    is_owner: false,
                    created_by: by,
                },
                Box::new(move |key| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::KeyCreated,
                        format!("API key {} ({}) created", key.name, key.prefix),
                    )
                    .key(by)
                    .payload(json!({"created_key_id": key.id, "scopes": scope_names(key)}))]
                }),
            )
            .await?;
        Ok((key, generated.secret))
    }

    /// Revokes a key of `holder`'s account: it stops working at once and
    /// stays listed, marked revoked. Revoking it again changes nothing and
    /// is not audited again.
    pub async fn revoke_key(&self, holder: &ApiKey, id: KeyId) -> Result<ApiKey, KeyError> {
        let account = holder.account_id;
        let target = self
            .store
            .get_key(account, id)
            .await?
            .ok_or(KeyError::NotFound)?;
        if target.is_owner && !holder.is_owner {
            return Err(KeyError::OwnerOnly);
        }
        let (by, already) = (Some(holder.id), target.revoked_at.is_some());
        self.store
            .revoke_key_audited(
                account,
                id,
                Box::new(move |key| {
                    if already {
                        return Vec::new();
                    }
                    vec![AuditEvent::new(
                        account,
                        AuditAction::KeyRevoked,
                        format!("API key {} ({}) revoked", key.name, key.prefix),
                    )
                    .key(by)
                    .payload(json!({"revoked_key_id": key.id}))]
                }),
            )
            .await?
            .ok_or(KeyError::NotFound)
    }

    /// Replaces a key's scopes with ones `holder` holds. The store refuses
    /// an owner key's change and the loss of the account's last key manager.
    pub async fn set_key_scopes(
        &self,
        holder: &ApiKey,
        id: KeyId,
        scopes: &[String],
    ) -> Result<ApiKey, KeyError> {
        let scopes = grantable_scopes(holder, scopes)?;
        let (account, by) = (holder.account_id, Some(holder.id));
        self.store
            .set_key_scopes_audited(
                account,
                id,
                scopes,
                Box::new(move |(before, after)| {
                    vec![AuditEvent::new(
                        account,
                        AuditAction::KeyScopesChanged,
                        format!(
                            "API key {} ({}) scopes changed to {}",
                            after.name,
                            after.prefix,
                            scope_names(after).join(" ")
                        ),
                    )
                    .key(by)
                    .payload(json!({"changed_key_id": after.id, "scopes_before": scope_names(before), "scopes": scope_names(after)}))]
                }),
            )
            .await?
            .ok_or(KeyError::NotFound)
    }
}
