//! Resource bounds as pure checks on numbers; they know nothing of agents, stores or clocks.
//!
//! Prompt length is the maximum input and output size; cost delta vs parent
//! means a child execution may not get more budget than its parent has
//! left; evolution rate is the maximum number of agent code updates per
//! hour. Callers count; these functions only compare.

use thiserror::Error;

/// A resource bound that a request would exceed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BoundViolation {
    #[error("text is {len} bytes, more than the maximum of {max}")]
    PromptLength { len: usize, max: usize },
    #[error("child asks for a budget of {requested}, more than the {parent_remaining} its parent has left")]
    CostDelta {
        requested: u64,
        parent_remaining: u64,
    },
    #[error(
        "{updates_last_hour} code updates in the last hour; at most {max_per_hour} are allowed"
    )]
    EvolutionRate {
        updates_last_hour: u32,
        max_per_hour: u32,
    },
}

impl BoundViolation {
    /// Stable rule name used in verdicts and audit records.
    pub fn rule(&self) -> &'static str {
        match self {
            BoundViolation::PromptLength { .. } => "prompt_length",
            BoundViolation::CostDelta { .. } => "cost_delta",
            BoundViolation::EvolutionRate { .. } => "evolution_rate",
        }
    }
}

/// An input or output of `len` bytes is allowed when it is at most `max`.
pub fn check_prompt_length(len: usize, max: usize) -> Result<(), BoundViolation> {
    if len > max {
        return Err(BoundViolation::PromptLength { len, max });
    }
    Ok(())
}

/// A child may be given at most what its parent has left. Budgets are in
/// the smallest cost unit the caller uses, so the comparison is exact.
pub fn check_cost_delta(requested: u64, parent_remaining: u64) -> Result<(), BoundViolation> {
    if requested > parent_remaining {
        return Err(BoundViolation::CostDelta {
            requested,
            parent_remaining,
        });
    }
    Ok(())
}

/// One more code update is allowed when fewer than `max_per_hour` happened
/// in the last hour (the update being checked would be number
/// `updates_last_hour + 1`).
pub fn check_evolution_rate(
    updates_last_hour: u32,
    max_per_hour: u32,
) -> Result<(), BoundViolation> {
    if updates_last_hour >= max_per_hour {
        return Err(BoundViolation::EvolutionRate {
            updates_last_hour,
            max_per_hour,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(got: Result<(), BoundViolation>, expected: Option<&str>) {
        assert_eq!(
            got.as_ref().err().map(BoundViolation::rule),
            expected,
            "{got:?}"
        );
    }

    #[test]
    fn prompt_length() {
        check(check_prompt_length(0, 0), None);
        check(check_prompt_length(10, 10), None);
        check(check_prompt_length(11, 10), Some("prompt_length"));
        check(
            check_prompt_length(usize::MAX, usize::MAX - 1),
            Some("prompt_length"),
        );
    }

    #[test]
    fn cost_delta() {
        check(check_cost_delta(0, 0), None);
        check(check_cost_delta(500, 500), None);
        check(check_cost_delta(501, 500), Some("cost_delta"));
        check(check_cost_delta(1, 0), Some("cost_delta"));
    }

    #[test]
    fn evolution_rate() {
        check(check_evolution_rate(0, 1), None);
        check(check_evolution_rate(9, 10), None);
        check(check_evolution_rate(10, 10), Some("evolution_rate"));
        check(check_evolution_rate(0, 0), Some("evolution_rate"));
    }

    #[test]
    fn messages_name_the_numbers() {
        let e = check_cost_delta(7, 3).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("child asks for a budget of 7, more than the 3 its parent has left")
        );
    }
}
