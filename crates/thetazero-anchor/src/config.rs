//! The operator's anchor configuration (a small serde enum that reads from
//! TOML or JSON) and the constructor that turns it into an anchor. Must not
//! do IO: building an anchor neither connects nor runs anything.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Anchor, CommandAnchor, ConfigError, NoneAnchor, WitnessAnchor, WitnessKey};

/// Timeout used when the configuration gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Longest timeout accepted; anchoring runs every few minutes.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// `{kind = "none"}`, `{kind = "witness", url, key}` or
/// `{kind = "command", program, args, timeout_ms}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AnchorConfig {
    /// Signed checkpoints only; no network. A struct variant so that stray
    /// fields (a witness url under `kind = "none"`) are refused, not ignored.
    None {},
    /// A C2SP tlog-witness: `url` is its submission prefix, `key` its
    /// verifier key (type 0x04 for cosignature/v1, 0x01 for a plain note
    /// signature).
    Witness {
        url: String,
        key: String,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// A hook program, given by absolute path, run without a shell.
    Command {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
}

fn timeout(ms: Option<u64>) -> Result<Duration, ConfigError> {
    let ms = ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(ConfigError::BadTimeout {
            got: ms,
            max: MAX_TIMEOUT_MS,
        });
    }
    Ok(Duration::from_millis(ms))
}

impl Default for AnchorConfig {
    fn default() -> Self {
        AnchorConfig::None {}
    }
}

/// Builds the configured anchor.
pub fn build(cfg: &AnchorConfig) -> Result<Arc<dyn Anchor>, ConfigError> {
    match cfg {
        AnchorConfig::None {} => Ok(Arc::new(NoneAnchor)),
        AnchorConfig::Witness {
            url,
            key,
            timeout_ms,
        } => {
            let key = WitnessKey::parse(key)?;
            Ok(Arc::new(WitnessAnchor::new(
                url,
                key,
                timeout(*timeout_ms)?,
            )?))
        }
        AnchorConfig::Command {
            program,
            args,
            timeout_ms,
        } => {
            // A relative name would be looked up in PATH, which whoever
            // controls the environment could redirect.
            if !program.is_absolute() {
                return Err(ConfigError::BadProgram(program.display().to_string()));
            }
            Ok(Arc::new(CommandAnchor::new(
                program.clone(),
                args.clone(),
                timeout(*timeout_ms)?,
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::Engine as _;

    fn witness_key(alg: u8) -> String {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let mut raw = vec![alg];
        raw.extend_from_slice(&sk.verifying_key().to_bytes());
        let id = signed_note::key_id("w.example/1", &raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        format!("w.example/1+{id:08x}+{b64}")
    }

    fn check(toml_text: &str, want: Result<&str, &str>) {
        let got = toml::from_str::<AnchorConfig>(toml_text)
            .map_err(|e| e.to_string())
            .and_then(|c| build(&c).map_err(|e| e.to_string()));
        match (got, want) {
            (Ok(a), Ok(kind)) => assert_eq!(a.kind(), kind, "{toml_text}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{toml_text}: {e}"),
            (Ok(a), Err(part)) => panic!("{toml_text}: built {}, want error {part}", a.kind()),
            (Err(e), Ok(kind)) => panic!("{toml_text}: {e}, want {kind}"),
        }
    }

    #[test]
    fn configs() {
        check(r#"kind = "none""#, Ok("none"));
        check(r#"kind = "nothing""#, Err("unknown variant"));
        check(
            r#"kind = "none"
url = "x""#,
            Err("unknown field"),
        );
        let key = witness_key(4);
        let witness =
            |url: &str, key: &str| format!("kind = \"witness\"\nurl = \"{url}\"\nkey = \"{key}\"");
        check(&witness("https://w.example/sub", &key), Ok("witness"));
        check(
            &witness("http://127.0.0.1:9/", &witness_key(1)),
            Ok("witness"),
        );
        check(
            &witness("https://w.example/sub", &witness_key(2)),
            Err("key"),
        );
        check(
            &witness(
                "https://w.example/sub",
                &key.replace("w.example/1", "w.example/2"),
            ),
            Err("key"),
        );
        check(&witness("ftp://w.example/sub", &key), Err("url"));
        check(&witness("w.example/sub", &key), Err("url"));
        check(
            r#"kind = "witness"
url = "https://w.example""#,
            Err("missing field `key`"),
        );
        check(
            r#"kind = "command"
program = "/usr/local/bin/publish"
args = ["--chain", "test"]
timeout_ms = 30000"#,
            Ok("command"),
        );
        check(
            r#"kind = "command"
program = "publish""#,
            Err("absolute path"),
        );
        check(
            r#"kind = "command"
program = "/bin/x"
timeout_ms = 0"#,
            Err("timeout_ms"),
        );
        check(
            r#"kind = "command"
program = "/bin/x"
timeout_ms = 600001"#,
            Err("timeout_ms"),
        );
        assert_eq!(AnchorConfig::default(), AnchorConfig::None {});
        assert_eq!(
            serde_json::to_string(&AnchorConfig::default()).unwrap(),
            r#"{"kind":"none"}"#
        );
        let json: AnchorConfig =
            serde_json::from_str(r#"{"kind":"command","program":"/bin/x"}"#).unwrap();
        assert_eq!(
            json,
            AnchorConfig::Command {
                program: "/bin/x".into(),
                args: vec![],
                timeout_ms: None
            }
        );
    }
}
