//! Rate limits shared by every replica: the generic cell rate algorithm
//! (GCRA), which keeps one number per limited thing — the theoretical arrival
//! time (TAT) of its next event — instead of a window of counts. `limit`
//! events per `window` are admitted, at most `limit` of them at once, and a
//! steady caller gets one every `window / limit` after that. There is no
//! window boundary at which twice the limit gets through.
//!
//! SQLite keeps the TATs in the process (one process owns the file);
//! PostgreSQL keeps them in a table and applies the same rule in one
//! statement against the database's clock, so replicas share the counts.

use std::time::Duration;

/// What a limited thing is and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// The counter's name, e.g. `exec:key:12` or `evolve:agent:3`.
    pub key: String,
    /// Events admitted per window; 0 admits nothing.
    pub limit: u32,
    pub window: Duration,
}

/// The answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Admitted,
    /// Refused; the next event would be admitted after this long.
    Refused {
        retry_after: Duration,
    },
}

impl RateDecision {
    pub fn is_admitted(&self) -> bool {
        matches!(self, RateDecision::Admitted)
    }

    /// Whole seconds for a `Retry-After` header, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            RateDecision::Admitted => 0,
            RateDecision::Refused { retry_after } => {
                retry_after.as_micros().div_ceil(1_000_000).max(1) as u64
            }
        }
    }
}

/// The emission interval: how far one event moves the TAT, in microseconds.
pub fn interval_us(limit: u32, window: Duration) -> i64 {
    (window.as_micros() as i64 / i64::from(limit.max(1))).max(1)
}

/// One step of GCRA at `now_us` for a counter whose TAT is `tat_us` (None for
/// a counter never used). Returns the new TAT when the event is admitted, or
/// how many microseconds until it would be.
pub fn gcra(now_us: i64, tat_us: Option<i64>, limit: u32, window: Duration) -> Result<i64, i64> {
    if limit == 0 {
        return Err(window.as_micros() as i64);
    }
    let window_us = window.as_micros() as i64;
    let next = tat_us.unwrap_or(now_us).max(now_us) + interval_us(limit, window);
    if next - now_us <= window_us {
        Ok(next)
    } else {
        Err(next - window_us - now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_burst_up_to_the_limit_then_one_per_interval() {
        let mut tat = None;
        for i in 0..10 {
            tat = Some(gcra(0, tat, 10, MIN).unwrap_or_else(|_| panic!("event {i}")));
        }
        let wait = gcra(0, tat, 10, MIN).unwrap_err();
        assert_eq!(wait, 6_000_000, "one interval: 60 s / 10");
        assert!(gcra(wait - 1, tat, 10, MIN).is_err());
        let tat = Some(gcra(wait, tat, 10, MIN).unwrap());
        assert!(gcra(wait, tat, 10, MIN).is_err(), "only one more");
    }

    #[test]
    fn an_idle_counter_recovers_its_whole_burst_and_no_more() {
        let mut tat = None;
        for _ in 0..10 {
            tat = Some(gcra(0, tat, 10, MIN).unwrap());
        }
        let later = 3_600_000_000;
        let mut admitted = 0;
        while gcra(later, tat, 10, MIN).is_ok() {
            tat = Some(gcra(later, tat, 10, MIN).unwrap());
            admitted += 1;
        }
        assert_eq!(admitted, 10);
    }

    #[test]
    fn zero_admits_nothing_and_retry_after_rounds_up() {
        assert!(gcra(0, None, 0, MIN).is_err());
        let refused = RateDecision::Refused {
            retry_after: Duration::from_micros(1_000_001),
        };
        assert_eq!(refused.retry_after_secs(), 2);
        let tiny = RateDecision::Refused {
            retry_after: Duration::from_micros(1),
        };
        assert_eq!(tiny.retry_after_secs(), 1);
    }
}
