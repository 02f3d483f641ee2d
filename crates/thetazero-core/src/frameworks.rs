//! The compliance frameworks an agent can be assessed against, by id, and
//! where an agent's chosen frameworks are kept. The catalogs themselves are
//! data of the compliance crate; this is what the use cases that register
//! agents need to check and store a choice.

use crate::model::{AccountId, AgentId};

/// The framework ids the API, SDKs and CLI accept, in report order.
pub const FRAMEWORKS: [&str; 5] = [
    "eu_ai_act",
    "soc2",
    "nist_ai_rmf",
    "iso_42001",
    "owasp_llm_top10",
];

/// A framework id that is not one of [`FRAMEWORKS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compliance framework {0:?}; expected one of eu_ai_act, soc2, nist_ai_rmf, iso_42001, owasp_llm_top10")]
pub struct UnknownFramework(pub String);

/// Checks a list of framework ids, naming the first unknown one.
pub fn validate_ids(ids: &[String]) -> Result<(), UnknownFramework> {
    match ids.iter().find(|id| !FRAMEWORKS.contains(&id.as_str())) {
        Some(bad) => Err(UnknownFramework(bad.clone())),
        None => Ok(()),
    }
}

/// The deployment setting that holds the frameworks an agent was
/// registered with.
pub fn frameworks_setting(account: AccountId, agent: AgentId) -> String {
    format!("compliance.frameworks.{account}.{agent}")
}
