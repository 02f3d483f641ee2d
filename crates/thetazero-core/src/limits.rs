//! Agent configuration, sandbox templates and resource limits.
//!
//! `AgentConfig` is what an author wrote (only the fields they gave); `Limits` is
//! what an execution actually gets after the template's defaults are applied and
//! the operator's ceilings are checked. Parsing is strict: an unknown or mistyped
//! field is an error naming the field, never silently ignored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The spec's three sandbox policy templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Template {
    Strict,
    #[default]
    Standard,
    Dev,
}

impl Template {
    pub fn name(self) -> &'static str {
        match self {
            Template::Strict => "STRICT",
            Template::Standard => "STANDARD",
            Template::Dev => "DEV",
        }
    }

    pub fn parse(s: &str) -> Option<Template> {
        match s {
            "STRICT" => Some(Template::Strict),
            "STANDARD" => Some(Template::Standard),
            "DEV" => Some(Template::Dev),
            _ => None,
        }
    }

    /// The limits an agent on this template gets when it overrides nothing.
    pub fn defaults(self) -> Limits {
        let base = Limits {
            memory_mb: 128,
            cpu_time_ms: 30_000,
            max_api_calls_per_run: 50,
            max_api_calls_per_minute: 60,
            stack_kb: 1024,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_log_entries: 1000,
            max_log_bytes: 256 << 10,
            http_timeout_ms: 10_000,
            max_http_request_bytes: 1 << 20,
            max_http_response_bytes: 5 << 20,
            max_redirects: 5,
        };
        match self {
            Template::Strict => Limits {
                memory_mb: 256,
                cpu_time_ms: 120_000,
                ..base
            },
            Template::Standard | Template::Dev => base,
        }
    }
}

/// The operator's ceilings: no agent override may go past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ceilings {
    pub memory_mb: u64,
    pub cpu_time_ms: u64,
    pub max_api_calls_per_run: u64,
    pub max_api_calls_per_minute: u64,
}

impl Ceilings {
    /// `limits` with every field the operator caps held to its ceiling: the
    /// effective limits of a run are never above them, whatever a template's
    /// defaults say.
    pub fn clip(&self, limits: Limits) -> Limits {
        Limits {
            memory_mb: limits.memory_mb.min(self.memory_mb),
            cpu_time_ms: limits.cpu_time_ms.min(self.cpu_time_ms),
            max_api_calls_per_run: limits.max_api_calls_per_run.min(self.max_api_calls_per_run),
            max_api_calls_per_minute: limits
                .max_api_calls_per_minute
                .min(self.max_api_calls_per_minute),
            ..limits
        }
    }

    /// No ceiling at all: for reading back values that were checked against
    /// the ceilings when they were written, so that lowering a ceiling later
    /// does not make them unreadable.
    pub const UNBOUNDED: Ceilings = Ceilings {
        memory_mb: u64::MAX,
        cpu_time_ms: u64::MAX,
        max_api_calls_per_run: u64::MAX,
        max_api_calls_per_minute: u64::MAX,
    };
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            memory_mb: 512,
            cpu_time_ms: 300_000,
            max_api_calls_per_run: 10_000,
            max_api_calls_per_minute: 6_000,
        }
    }
}

/// The resolved limits of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_mb: u64,
    pub cpu_time_ms: u64,
    pub max_api_calls_per_run: u64,
    pub max_api_calls_per_minute: u64,
    pub stack_kb: u64,
    pub max_input_bytes: u64,
    pub max_output_bytes: u64,
    pub max_log_entries: u64,
    pub max_log_bytes: u64,
    pub http_timeout_ms: u64,
    pub max_http_request_bytes: u64,
    pub max_http_response_bytes: u64,
    pub max_redirects: u64,
}

/// An agent's configuration as its author gave it. `None` means "not given":
/// the template decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentConfig {
    pub memory_limit_mb: Option<u64>,
    pub cpu_time_limit_ms: Option<u64>,
    pub max_api_calls_per_run: Option<u64>,
    pub max_api_calls_per_minute: Option<u64>,
    pub allow_network: Option<bool>,
    pub allow_filesystem: Option<bool>,
    pub sandbox_template: Option<Template>,
    pub allowed_domains: Option<Vec<String>>,
    pub content_safety: Option<bool>,
    pub allow_localhost: Option<bool>,
    /// When set, a host call the agent's permissions would refuse suspends
    /// the execution and asks a human (a permission request bound to the
    /// call's exact arguments), waiting at most this long.
    pub approval_timeout_ms: Option<u64>,
    /// Which host calls may be put to a human (names such as
    /// `http_request`); `None` is every call the permissions refuse.
    pub approval_calls: Option<Vec<String>>,
}

/// The host calls a human may approve mid-run: the counted ones.
pub const APPROVABLE_CALLS: [&str; 8] = [
    "read_context",
    "write_context",
    "http_request",
    "storage_get",
    "storage_put",
    "inference",
    "call_agent",
    "get_execution",
];

/// Bounds of `approval_timeout_ms`: a second to ten minutes.
pub const APPROVAL_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=600_000;

/// A configuration the API must refuse, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config must be a JSON object")]
    NotAnObject,
    #[error("unknown config field {field:?}")]
    UnknownField { field: String },
    #[error("config field {field:?} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("config field {field:?} is {value}, above the operator's ceiling of {ceiling}")]
    AboveCeiling {
        field: &'static str,
        value: u64,
        ceiling: u64,
    },
    #[error("config field {field:?} must be at least {minimum}")]
    BelowMinimum { field: &'static str, minimum: u64 },
    #[error("config field {field:?}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl ConfigError {
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::NotAnObject => None,
            ConfigError::UnknownField { field } => Some(field),
            ConfigError::WrongType { field, .. }
            | ConfigError::AboveCeiling { field, .. }
            | ConfigError::BelowMinimum { field, .. }
            | ConfigError::Invalid { field, .. } => Some(field),
        }
    }
}

const MAX_DOMAINS: usize = 256;

fn uint(map: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(ConfigError::WrongType {
            field,
            expected: "a non-negative integer",
        }),
    }
}

fn boolean(map: &Map<String, Value>, field: &'static str) -> Result<Option<bool>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or(ConfigError::WrongType {
            field,
            expected: "a boolean",
        }),
    }
}

impl AgentConfig {
    const FIELDS: [&'static str; 12] = [
        "memory_limit_mb",
        "cpu_time_limit_ms",
        "max_api_calls_per_run",
        "max_api_calls_per_minute",
        "allow_network",
        "allow_filesystem",
        "sandbox_template",
        "allowed_domains",
        "content_safety",
        "allow_localhost",
        "approval_timeout_ms",
        "approval_calls",
    ];

    /// Parses and validates a `config` object against the operator's ceilings.
    pub fn from_json(value: &Value, ceilings: &Ceilings) -> Result<AgentConfig, ConfigError> {
        let map = match value {
            Value::Null => return Ok(AgentConfig::default()),
            Value::Object(map) => map,
            _ => return Err(ConfigError::NotAnObject),
        };
        if let Some(unknown) = map.keys().find(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownField {
                field: unknown.clone(),
            });
        }
        let sandbox_template = match map.get("sandbox_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Template::parse(s).ok_or(ConfigError::Invalid {
                field: "sandbox_template",
                reason: format!("unknown template {s:?}; expected STRICT, STANDARD or DEV"),
            })?),
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "sandbox_template",
                    expected: "one of \"STRICT\", \"STANDARD\", \"DEV\"",
                })
            }
        };
        let allowed_domains = match map.get("allowed_domains") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                if items.len() > MAX_DOMAINS {
                    return Err(ConfigError::AboveCeiling {
                        field: "allowed_domains",
                        value: items.len() as u64,
                        ceiling: MAX_DOMAINS as u64,
                    });
                }
                let mut domains = Vec::with_capacity(items.len());
                for item in items {
                    let domain = item.as_str().ok_or(ConfigError::WrongType {
                        field: "allowed_domains",
                        expected: "a list of domain strings",
                    })?;
                    domains.push(normalize_domain_pattern(domain)?);
                }
                Some(domains)
            }
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "allowed_domains",
                    expected: "a list of domain strings",
                })
            }
        };
        let approval_calls = match map.get("approval_calls") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut calls = Vec::with_capacity(items.len());
                for item in items {
                    let name = item
                        .as_str()
                        .filter(|n| APPROVABLE_CALLS.contains(n))
                        .ok_or_else(|| ConfigError::Invalid {
                            field: "approval_calls",
                            reason: format!(
                                "{item} is not a host call a human can approve; expected some of {}",
                                APPROVABLE_CALLS.join(", ")
                            ),
                        })?;
                    if !calls.iter().any(|c| c == name) {
                        calls.push(name.to_string());
                    }
                }
                Some(calls)
            }
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "approval_calls",
                    expected: "a list of host call names",
                })
            }
        };
        let config = AgentConfig {
            memory_limit_mb: uint(map, "memory_limit_mb")?,
            cpu_time_limit_ms: uint(map, "cpu_time_limit_ms")?,
            max_api_calls_per_run: uint(map, "max_api_calls_per_run")?,
            max_api_calls_per_minute: uint(map, "max_api_calls_per_minute")?,
            allow_network: boolean(map, "allow_network")?,
            allow_filesystem: boolean(map, "allow_filesystem")?,
            sandbox_template,
            allowed_domains,
            content_safety: boolean(map, "content_safety")?,
            allow_localhost: boolean(map, "allow_localhost")?,
            approval_timeout_ms: uint(map, "approval_timeout_ms")?,
            approval_calls,
        };
        config.validate(ceilings)?;
        Ok(config)
    }

    fn validate(&self, ceilings: &Ceilings) -> Result<(), ConfigError> {
        let checks: [(&'static str, Option<u64>, u64, u64); 4] = [
            (
                "memory_limit_mb",
                self.memory_limit_mb,
                8,
                ceilings.memory_mb,
            ),
            (
                "cpu_time_limit_ms",
                self.cpu_time_limit_ms,
                10,
                ceilings.cpu_time_ms,
            ),
            (
                "max_api_calls_per_run",
                self.max_api_calls_per_run,
                0,
                ceilings.max_api_calls_per_run,
            ),
            (
                "max_api_calls_per_minute",
                self.max_api_calls_per_minute,
                1,
                ceilings.max_api_calls_per_minute,
            ),
        ];
        for (field, value, minimum, ceiling) in checks {
            if let Some(value) = value {
                if value > ceiling {
                    return Err(ConfigError::AboveCeiling {
                        field,
                        value,
                        ceiling,
                    });
                }
                if value < minimum {
                    return Err(ConfigError::BelowMinimum { field, minimum });
                }
            }
        }
        if let Some(ms) = self.approval_timeout_ms {
            if ms > *APPROVAL_TIMEOUT_MS.end() {
                return Err(ConfigError::AboveCeiling {
                    field: "approval_timeout_ms",
                    value: ms,
                    ceiling: *APPROVAL_TIMEOUT_MS.end(),
                });
            }
            if ms < *APPROVAL_TIMEOUT_MS.start() {
                return Err(ConfigError::BelowMinimum {
                    field: "approval_timeout_ms",
                    minimum: *APPROVAL_TIMEOUT_MS.start(),
                });
            }
        }
        let template = self.template();
        if self.content_safety == Some(false) && template != Template::Dev {
            return Err(ConfigError::Invalid {
                field: "content_safety",
                reason: format!(
                    "content safety is always on for {}; only DEV may turn it off",
                    template.name()
                ),
            });
        }
        if self.allow_localhost == Some(true) && template != Template::Dev {
            return Err(ConfigError::Invalid {
                field: "allow_localhost",
                reason: "only the DEV template may reach http://localhost".into(),
            });
        }
        if self.allow_filesystem == Some(true) {
            return Err(ConfigError::Invalid {
                field: "allow_filesystem",
                reason: "filesystem access is reserved and cannot be enabled".into(),
            });
        }
        Ok(())
    }

    /// Applies a partial update: fields present in `patch` replace ours.
    pub fn merged(
        &self,
        patch: &AgentConfig,
        ceilings: &Ceilings,
    ) -> Result<AgentConfig, ConfigError> {
        let merged = AgentConfig {
            memory_limit_mb: patch.memory_limit_mb.or(self.memory_limit_mb),
            cpu_time_limit_ms: patch.cpu_time_limit_ms.or(self.cpu_time_limit_ms),
            max_api_calls_per_run: patch.max_api_calls_per_run.or(self.max_api_calls_per_run),
            max_api_calls_per_minute: patch
                .max_api_calls_per_minute
                .or(self.max_api_calls_per_minute),
            allow_network: patch.allow_network.or(self.allow_network),
            allow_filesystem: patch.allow_filesystem.or(self.allow_filesystem),
            sandbox_template: patch.sandbox_template.or(self.sandbox_template),
            allowed_domains: patch
                .allowed_domains
                .clone()
                .or_else(|| self.allowed_domains.clone()),
            content_safety: patch.content_safety.or(self.content_safety),
            allow_localhost: patch.allow_localhost.or(self.allow_localhost),
            approval_timeout_ms: patch.approval_timeout_ms.or(self.approval_timeout_ms),
            approval_calls: patch
                .approval_calls
                .clone()
                .or_else(|| self.approval_calls.clone()),
        };
        merged.validate(ceilings)?;
        Ok(merged)
    }

    /// Whether this configuration asks for what only accounts the operator
    /// names may have: the DEV template or `allow_localhost`.
    pub fn needs_dev(&self) -> bool {
        self.template() == Template::Dev || self.allow_localhost == Some(true)
    }

    pub fn template(&self) -> Template {
        self.sandbox_template.unwrap_or_default()
    }

    pub fn allow_network(&self) -> bool {
        self.allow_network.unwrap_or(false)
    }

    pub fn content_safety(&self) -> bool {
        self.template() != Template::Dev || self.content_safety.unwrap_or(true)
    }

    pub fn allowed_domains(&self) -> &[String] {
        self.allowed_domains.as_deref().unwrap_or(&[])
    }

    /// The limits an execution of this agent gets.
    pub fn limits(&self) -> Limits {
        let d = self.template().defaults();
        Limits {
            memory_mb: self.memory_limit_mb.unwrap_or(d.memory_mb),
            cpu_time_ms: self.cpu_time_limit_ms.unwrap_or(d.cpu_time_ms),
            max_api_calls_per_run: self
                .max_api_calls_per_run
                .unwrap_or(d.max_api_calls_per_run),
            max_api_calls_per_minute: self
                .max_api_calls_per_minute
                .unwrap_or(d.max_api_calls_per_minute),
            ..d
        }
    }

    /// The effective configuration as the API shows it: every field, with the
    /// template's defaults filled in.
    pub fn to_json(&self) -> Value {
        let limits = self.limits();
        let mut shown = serde_json::json!({
            "memory_limit_mb": limits.memory_mb,
            "cpu_time_limit_ms": limits.cpu_time_ms,
            "max_api_calls_per_run": limits.max_api_calls_per_run,
            "max_api_calls_per_minute": limits.max_api_calls_per_minute,
            "allow_network": self.allow_network(),
            "allow_filesystem": false,
            "sandbox_template": self.template().name(),
            "allowed_domains": self.allowed_domains(),
            "content_safety": self.content_safety(),
            "allow_localhost": self.allow_localhost.unwrap_or(false),
        });
        // Shown only when set, so the spec's configuration shape is unchanged.
        if let (Some(ms), Value::Object(map)) = (self.approval_timeout_ms, &mut shown) {
            map.insert("approval_timeout_ms".into(), Value::from(ms));
            if let Some(calls) = &self.approval_calls {
                map.insert("approval_calls".into(), Value::from(calls.clone()));
            }
        }
        shown
    }

    /// The fields the author gave, for storage. Reading it back with
    /// `from_json` yields the same config.
    pub fn to_stored_json(&self) -> Value {
        let mut map = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                map.insert(k.to_string(), v);
            }
        };
        put("memory_limit_mb", self.memory_limit_mb.map(Value::from));
        put("cpu_time_limit_ms", self.cpu_time_limit_ms.map(Value::from));
        put(
            "max_api_calls_per_run",
            self.max_api_calls_per_run.map(Value::from),
        );
        put(
            "max_api_calls_per_minute",
            self.max_api_calls_per_minute.map(Value::from),
        );
        put("allow_network", self.allow_network.map(Value::from));
        put("allow_filesystem", self.allow_filesystem.map(Value::from));
        put(
            "sandbox_template",
            self.sandbox_template.map(|t| Value::from(t.name())),
        );
        put(
            "allowed_domains",
            self.allowed_domains
                .as_ref()
                .map(|d| Value::from(d.clone())),
        );
        put("content_safety", self.content_safety.map(Value::from));
        put("allow_localhost", self.allow_localhost.map(Value::from));
        put(
            "approval_timeout_ms",
            self.approval_timeout_ms.map(Value::from),
        );
        put(
            "approval_calls",
            self.approval_calls.as_ref().map(|c| Value::from(c.clone())),
        );
        Value::Object(map)
    }
}

/// Normalises an allow-list entry: lowercase, trailing dot removed, an optional
/// leading `*.` wildcard, and nothing that is not a plain host name.
pub fn normalize_domain_pattern(raw: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: "allowed_domains",
        reason,
    };
    let lower = raw.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    let (wildcard, host) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower),
    };
    if host.is_empty() || host.len() > 253 {
        return Err(invalid(format!("{raw:?} is not a domain name")));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(invalid(format!(
                "{raw:?} is not a domain name (write internationalised names in their xn-- form)"
            )));
        }
    }
    Ok(if wildcard {
        format!("*.{host}")
    } else {
        host.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Value, expected: Result<Value, &str>) {
        let got = AgentConfig::from_json(&input, &Ceilings::default());
        match (got, expected) {
            (Ok(c), Ok(want)) => {
                let shown = c.to_json();
                for (k, v) in want.as_object().unwrap() {
                    assert_eq!(&shown[k], v, "field {k} of {input}");
                }
                let again = AgentConfig::from_json(&c.to_stored_json(), &Ceilings::default());
                assert_eq!(again.as_ref(), Ok(&c), "stored form round-trips");
            }
            (Err(e), Err(fragment)) => {
                assert!(e.to_string().contains(fragment), "{e} lacks {fragment:?}")
            }
            (got, want) => panic!("input {input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn defaults_and_templates() {
        check(
            json!({}),
            Ok(
                json!({"memory_limit_mb": 128, "cpu_time_limit_ms": 30000, "max_api_calls_per_run": 50, "allow_network": false, "sandbox_template": "STANDARD"}),
            ),
        );
        check(
            json!({"sandbox_template": "STRICT"}),
            Ok(json!({"memory_limit_mb": 256, "cpu_time_limit_ms": 120000})),
        );
        check(
            json!({"sandbox_template": "STRICT", "memory_limit_mb": 512, "cpu_time_limit_ms": 180000}),
            Ok(json!({"memory_limit_mb": 512, "cpu_time_limit_ms": 180000})),
        );
        check(
            json!({"memory_limit_mb": 128, "cpu_time_limit_ms": 15000, "max_api_calls_per_run": 10, "allow_network": false}),
            Ok(
                json!({"memory_limit_mb": 128, "cpu_time_limit_ms": 15000, "max_api_calls_per_run": 10}),
            ),
        );
        check(json!(null), Ok(json!({"memory_limit_mb": 128})));
    }

    #[test]
    fn refusals_name_the_field() {
        check(
            json!({"memory_limit_mb": 513}),
            Err("\"memory_limit_mb\" is 513, above the operator's ceiling of 512"),
        );
        check(
            json!({"cpu_time_limit_ms": 300001}),
            Err("ceiling of 300000"),
        );
        check(
            json!({"memory_limit_mb": "128"}),
            Err("\"memory_limit_mb\" must be a non-negative integer"),
        );
        check(
            json!({"memory_limit_mb": -1}),
            Err("\"memory_limit_mb\" must be a non-negative integer"),
        );
        check(
            json!({"memory_limit_mb": 1.5}),
            Err("\"memory_limit_mb\" must be a non-negative integer"),
        );
        check(json!({"memory_limit_mb": 1}), Err("at least 8"));
        check(
            json!({"memry_limit_mb": 128}),
            Err("unknown config field \"memry_limit_mb\""),
        );
        check(
            json!({"allow_network": "yes"}),
            Err("\"allow_network\" must be a boolean"),
        );
        check(json!({"sandbox_template": "LAX"}), Err("unknown template"));
        check(
            json!({"content_safety": false}),
            Err("always on for STANDARD"),
        );
        check(
            json!({"sandbox_template": "STRICT", "content_safety": false}),
            Err("always on for STRICT"),
        );
        check(json!({"allow_filesystem": true}), Err("reserved"));
        check(
            json!({"allow_localhost": true}),
            Err("only the DEV template"),
        );
        check(
            json!({"allowed_domains": "example.com"}),
            Err("a list of domain strings"),
        );
        check(
            json!({"allowed_domains": ["exa mple.com"]}),
            Err("not a domain name"),
        );
        check(json!([1, 2]), Err("must be a JSON object"));
    }

    #[test]
    fn dev_may_turn_safety_off() {
        check(
            json!({"sandbox_template": "DEV", "content_safety": false, "allow_localhost": true}),
            Ok(json!({"content_safety": false, "allow_localhost": true})),
        );
    }

    #[test]
    fn domains_are_normalised() {
        for (raw, want) in [
            ("Example.COM.", "example.com"),
            ("*.Example.com", "*.example.com"),
            ("api.example.com", "api.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(normalize_domain_pattern(raw).unwrap(), want);
        }
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.com",
            "a_b.com",
            "https://a.com",
            "a.com/x",
            "*.*.a.com",
        ] {
            assert!(normalize_domain_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_replaces_given_fields_and_revalidates() {
        let base = AgentConfig::from_json(
            &json!({"sandbox_template": "DEV", "content_safety": false}),
            &Ceilings::default(),
        )
        .unwrap();
        let patch =
            AgentConfig::from_json(&json!({"memory_limit_mb": 256}), &Ceilings::default()).unwrap();
        let merged = base.merged(&patch, &Ceilings::default()).unwrap();
        assert_eq!(merged.limits().memory_mb, 256);
        assert!(!merged.content_safety());
        let to_standard = AgentConfig::from_json(
            &json!({"sandbox_template": "STANDARD"}),
            &Ceilings::default(),
        )
        .unwrap();
        assert!(
            base.merged(&to_standard, &Ceilings::default()).is_err(),
            "leaving DEV with safety off is refused"
        );
    }
}
