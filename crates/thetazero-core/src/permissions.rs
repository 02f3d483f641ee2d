//! Agent permissions (the spec's ten scopes and six presets) and API key scopes.
//!
//! Two separate vocabularies that must never be confused: an agent's permissions
//! decide what its code may do inside the sandbox; a key's scopes decide what a
//! caller may do through the API. Nothing is granted by default in either.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the spec's ten agent permission scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    ComputeRead,
    ComputeWrite,
    InferenceCall,
    DataRead,
    DataWrite,
    NetworkOutbound,
    StorageRead,
    StorageWrite,
    AgentsRead,
    AgentsWrite,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::ComputeRead,
        Scope::ComputeWrite,
        Scope::InferenceCall,
        Scope::DataRead,
        Scope::DataWrite,
        Scope::NetworkOutbound,
        Scope::StorageRead,
        Scope::StorageWrite,
        Scope::AgentsRead,
        Scope::AgentsWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ComputeRead => "compute:read",
            Scope::ComputeWrite => "compute:write",
            Scope::InferenceCall => "inference:call",
            Scope::DataRead => "data:read",
            Scope::DataWrite => "data:write",
            Scope::NetworkOutbound => "network:outbound",
            Scope::StorageRead => "storage:read",
            Scope::StorageWrite => "storage:write",
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spec's named permission presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Readonly,
    Writer,
    Researcher,
    Coder,
    Analyst,
    Full,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Readonly,
        Preset::Writer,
        Preset::Researcher,
        Preset::Coder,
        Preset::Analyst,
        Preset::Full,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Readonly => "READONLY",
            Preset::Writer => "WRITER",
            Preset::Researcher => "RESEARCHER",
            Preset::Coder => "CODER",
            Preset::Analyst => "ANALYST",
            Preset::Full => "FULL",
        }
    }

    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The scopes a preset grants. CODER is quoted verbatim by the spec; the
    /// others follow its one-line descriptions, erring on the side of less.
    pub fn scopes(self) -> &'static [Scope] {
        use Scope::*;
        match self {
            // "safest": observe only, no outbound effects at all.
            Preset::Readonly => &[ComputeRead, DataRead, StorageRead],
            // "inference + data:read only"
            Preset::Writer => &[InferenceCall, DataRead],
            // "network + inference, no cross-agent write"
            Preset::Researcher => &[NetworkOutbound, InferenceCall, DataRead, AgentsRead],
            // Quoted by the spec.
            Preset::Coder => &[
                ComputeRead,
                ComputeWrite,
                InferenceCall,
                DataRead,
                NetworkOutbound,
            ],
            // "broadest data access": every read and write of data and storage,
            // reading other agents, but no network and no spawning.
            Preset::Analyst => &[
                ComputeRead,
                InferenceCall,
                DataRead,
                DataWrite,
                StorageRead,
                StorageWrite,
                AgentsRead,
            ],
            Preset::Full => &Scope::ALL,
        }
    }
}

/// An agent's granted permissions, remembering the form they were given in so
/// the API can answer with what the author wrote (`"CODER"` stays `"CODER"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Permissions {
    /// Absent: nothing granted.
    #[default]
    None,
    Preset(Preset),
    Scopes(BTreeSet<Scope>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionsError {
    #[error("unknown permission preset {0:?}; expected one of READONLY, WRITER, RESEARCHER, CODER, ANALYST, FULL")]
    UnknownPreset(String),
    #[error("unknown permission scope {0:?}; expected one of compute:read, compute:write, inference:call, data:read, data:write, network:outbound, storage:read, storage:write, agents:read, agents:write")]
    UnknownScope(String),
    #[error("permissions must be a preset name or a list of scope strings")]
    WrongType,
}

impl Permissions {
    /// Parses the JSON form: `null`, a preset name, or a list of scopes.
    pub fn from_json(value: &serde_json::Value) -> Result<Permissions, PermissionsError> {
        match value {
            serde_json::Value::Null => Ok(Permissions::None),
            serde_json::Value::String(s) => Preset::parse(s)
                .map(Permissions::Preset)
                .ok_or_else(|| PermissionsError::UnknownPreset(s.clone())),
            serde_json::Value::Array(items) => {
                let mut scopes = BTreeSet::new();
                for item in items {
                    let s = item.as_str().ok_or(PermissionsError::WrongType)?;
                    let scope =
                        Scope::parse(s).ok_or_else(|| PermissionsError::UnknownScope(s.into()))?;
                    scopes.insert(scope);
                }
                Ok(Permissions::Scopes(scopes))
            }
            _ => Err(PermissionsError::WrongType),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Permissions::None => serde_json::Value::Array(vec![]),
            Permissions::Preset(p) => serde_json::Value::String(p.name().into()),
            Permissions::Scopes(s) => s.iter().map(|s| s.as_str()).collect::<Vec<_>>().into(),
        }
    }

    /// The effective set of granted scopes.
    pub fn granted(&self) -> BTreeSet<Scope> {
        match self {
            Permissions::None => BTreeSet::new(),
            Permissions::Preset(p) => p.scopes().iter().copied().collect(),
            Permissions::Scopes(s) => s.clone(),
        }
    }

    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Permissions::None => false,
            Permissions::Preset(p) => p.scopes().contains(&scope),
            Permissions::Scopes(s) => s.contains(&scope),
        }
    }

    pub fn is_full(&self) -> bool {
        self.granted().len() == Scope::ALL.len()
    }
}

/// What an API key may do through the API. An owner key holds all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyScope {
    #[serde(rename = "agents:read")]
    AgentsRead,
    #[serde(rename = "agents:write")]
    AgentsWrite,
    #[serde(rename = "agents:execute")]
    AgentsExecute,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "approvals")]
    Approvals,
    #[serde(rename = "killswitch")]
    Killswitch,
    #[serde(rename = "compliance")]
    Compliance,
    #[serde(rename = "keys")]
    Keys,
    /// Read the deployment's Prometheus metrics on the main listener (keys
    /// of the deployment's first account only).
    #[serde(rename = "metrics")]
    Metrics,
}

impl KeyScope {
    pub const ALL: [KeyScope; 9] = [
        KeyScope::AgentsRead,
        KeyScope::AgentsWrite,
        KeyScope::AgentsExecute,
        KeyScope::AuditRead,
        KeyScope::Approvals,
        KeyScope::Killswitch,
        KeyScope::Compliance,
        KeyScope::Keys,
        KeyScope::Metrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::AgentsRead => "agents:read",
            KeyScope::AgentsWrite => "agents:write",
            KeyScope::AgentsExecute => "agents:execute",
            KeyScope::AuditRead => "audit:read",
            KeyScope::Approvals => "approvals",
            KeyScope::Killswitch => "killswitch",
            KeyScope::Compliance => "compliance",
            KeyScope::Keys => "keys",
            KeyScope::Metrics => "metrics",
        }
    }

    pub fn parse(s: &str) -> Option<KeyScope> {
        KeyScope::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: serde_json::Value, expected: Result<&[&str], &str>) {
        let got = Permissions::from_json(&input);
        match (got, expected) {
            (Ok(p), Ok(want)) => {
                let names: Vec<&str> = p.granted().iter().map(|s| s.as_str()).collect();
                let mut want = want.to_vec();
                want.sort_by_key(|w| Scope::parse(w).map(|s| s as u8));
                assert_eq!(names, want, "input {input}");
            }
            (Err(e), Err(fragment)) => {
                assert!(e.to_string().contains(fragment), "{e} lacks {fragment}")
            }
            (got, want) => panic!("input {input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_presets_and_lists() {
        check(json!(null), Ok(&[]));
        check(json!([]), Ok(&[]));
        check(
            json!("CODER"),
            Ok(&[
                "compute:read",
                "compute:write",
                "inference:call",
                "data:read",
                "network:outbound",
            ]),
        );
        check(
            json!(["inference:call", "data:read"]),
            Ok(&["inference:call", "data:read"]),
        );
        check(json!(["data:read", "data:read"]), Ok(&["data:read"]));
        check(json!("coder"), Err("unknown permission preset"));
        check(json!(["data:delete"]), Err("unknown permission scope"));
        check(json!([1]), Err("preset name or a list"));
        check(json!({"a": 1}), Err("preset name or a list"));
    }

    #[test]
    fn full_holds_all_and_none_holds_nothing() {
        assert!(Permissions::Preset(Preset::Full).is_full());
        for scope in Scope::ALL {
            assert!(!Permissions::None.allows(scope));
            assert!(Permissions::Preset(Preset::Full).allows(scope));
        }
        assert!(!Permissions::Preset(Preset::Readonly).allows(Scope::NetworkOutbound));
        assert!(!Permissions::Preset(Preset::Researcher).allows(Scope::AgentsWrite));
    }

    #[test]
    fn preset_form_round_trips() {
        for preset in Preset::ALL {
            let p = Permissions::from_json(&json!(preset.name())).unwrap();
            assert_eq!(p.to_json(), json!(preset.name()));
        }
    }
}

/// What a permission request may ask for, validated; the grant an approval
/// lays over the agent while it lasts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grant {
    /// Config fields, as an `AgentConfig` patch.
    pub config: crate::AgentConfig,
    /// Scopes added to the agent's own.
    pub scopes: BTreeSet<Scope>,
}

impl Grant {
    /// Parses `{allow_network, allow_external_apis, max_api_calls_per_run,
    /// max_api_calls_per_minute, memory_limit_mb, cpu_time_limit_ms,
    /// allowed_domains, scopes}`; anything else is refused, naming it.
    pub fn from_json(
        value: &serde_json::Value,
        ceilings: &crate::Ceilings,
    ) -> Result<Grant, String> {
        let map = value.as_object().ok_or("permissions must be an object")?;
        if map.is_empty() {
            return Err("permissions must ask for something".into());
        }
        let mut config = serde_json::Map::new();
        let mut scopes = BTreeSet::new();
        for (key, v) in map {
            match key.as_str() {
                "allow_network"
                | "max_api_calls_per_run"
                | "max_api_calls_per_minute"
                | "memory_limit_mb"
                | "cpu_time_limit_ms"
                | "allowed_domains" => {
                    config.insert(key.clone(), v.clone());
                }
                // The spec's "external APIs" are outbound HTTPS: the scope and
                // the switch together.
                "allow_external_apis" => {
                    if v.as_bool().ok_or("allow_external_apis must be a boolean")? {
                        scopes.insert(Scope::NetworkOutbound);
                        config.insert("allow_network".into(), serde_json::Value::Bool(true));
                    }
                }
                "scopes" => {
                    let list = v.as_array().ok_or("scopes must be a list")?;
                    for s in list {
                        let name = s.as_str().ok_or("scopes must be strings")?;
                        scopes.insert(
                            Scope::parse(name).ok_or_else(|| format!("unknown scope {name:?}"))?,
                        );
                    }
                }
                other => return Err(format!("unknown permission {other:?}")),
            }
        }
        if config.get("allow_network") == Some(&serde_json::Value::Bool(true)) {
            scopes.insert(Scope::NetworkOutbound);
        }
        let config = crate::AgentConfig::from_json(&serde_json::Value::Object(config), ceilings)
            .map_err(|e| e.to_string())?;
        Ok(Grant { config, scopes })
    }

    /// The agent's permissions with the grant's scopes added.
    pub fn widen(&self, permissions: &Permissions) -> Permissions {
        if self.scopes.is_empty() {
            return permissions.clone();
        }
        let mut all = permissions.granted();
        all.extend(self.scopes.iter().copied());
        Permissions::Scopes(all)
    }
}
