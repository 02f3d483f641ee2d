//! Framework catalogs: one JSON data file per framework, embedded in the
//! binary, each identified in every output by its version and SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use thetazero_core::frameworks::{validate_ids, UnknownFramework, FRAMEWORKS};

/// How much of a requirement the platform's checks evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// The checks evidence the whole requirement.
    Automated,
    /// The checks evidence part of it; the customer supplies the rest.
    Partial,
    /// Nothing the platform can check: the customer supplies it all.
    Organizational,
    NotApplicable,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Coverage::Automated => "automated",
            Coverage::Partial => "partial",
            Coverage::Organizational => "organizational",
            Coverage::NotApplicable => "not_applicable",
        }
    }

    /// Whether checks decide a result for it.
    pub fn assessed(self) -> bool {
        matches!(self, Coverage::Automated | Coverage::Partial)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub id: String,
    /// A short title written for this catalog (never a copyrighted text).
    pub title: String,
    pub coverage: Coverage,
    /// Ids of the platform checks that evidence it (see `checks::CHECKS`).
    pub checks: Vec<String>,
    /// Suggested actions a companion profile lists under this requirement
    /// (NIST AI 600-1 under the AI RMF subcategories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// What the customer must supply where the platform does not cover it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_supplies: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One suggested action of a companion profile, by identifier only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub id: String,
    /// The platform checks that evidence part of it, a subset of its
    /// requirement's; empty: the action is organizational.
    #[serde(default)]
    pub checks: Vec<String>,
    /// What part the checks evidence, and what stays with the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub framework: String,
    pub title: String,
    pub catalog_version: String,
    /// The edition the identifiers were transcribed from.
    pub edition: String,
    /// How they were transcribed.
    pub transcription: String,
    pub attribution: String,
    pub requirements: Vec<Requirement>,
    /// Hex SHA-256 of the catalog file as embedded.
    #[serde(skip)]
    pub sha256: String,
}

/// The embedded data file of a framework.
pub fn source(framework: &str) -> Option<&'static str> {
    Some(match framework {
        "eu_ai_act" => include_str!("../catalogs/eu_ai_act.json"),
        "soc2" => include_str!("../catalogs/soc2.json"),
        "nist_ai_rmf" => include_str!("../catalogs/nist_ai_rmf.json"),
        "iso_42001" => include_str!("../catalogs/iso_42001.json"),
        "owasp_llm_top10" => include_str!("../catalogs/owasp_llm_top10.json"),
        _ => return None,
    })
}

/// Parses a framework's catalog.
pub fn catalog(framework: &str) -> Result<Catalog, UnknownFramework> {
    let text = source(framework).ok_or_else(|| UnknownFramework(framework.to_string()))?;
    let mut catalog: Catalog = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("embedded catalog {framework} is malformed: {e}"));
    catalog.sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    Ok(catalog)
}

/// The catalogs of `ids` in the order given, duplicates dropped; an empty
/// list means every framework.
pub fn catalogs(ids: &[String]) -> Result<Vec<Catalog>, UnknownFramework> {
    let mut seen = Vec::new();
    let wanted: Vec<&str> = if ids.is_empty() {
        FRAMEWORKS.to_vec()
    } else {
        ids.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for id in wanted {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        out.push(catalog(id)?);
    }
    Ok(out)
}
