//! When to anchor: pure scheduling over each log's last anchor attempt, with
//! an injectable clock. Must not touch a database, sleep, or call anchors;
//! the caller loads the state, runs what is due and records the outcome.

use std::time::{Duration, SystemTime};

/// Where "now" comes from, so schedules are testable without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The outcome of the last anchor attempt for a log, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorStatus {
    /// Started and not finished (or the process died before recording).
    Pending,
    Confirmed,
    /// `consecutive_failures` counts failures since the last confirmation,
    /// this one included; `retryable` is [`crate::AnchorError::is_retryable`].
    Failed {
        consecutive_failures: u32,
        retryable: bool,
    },
}

/// The last attempt: when it started and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at: SystemTime,
    pub status: AnchorStatus,
}

/// What the heartbeat needs to know about one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogAnchorState {
    pub origin: String,
    /// Size of the latest signed checkpoint.
    pub latest_size: u64,
    /// Size this anchor last confirmed, 0 if none.
    pub confirmed_size: u64,
    pub last: Option<Attempt>,
}

/// Why a log is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// Never anchored.
    First,
    /// The interval passed and the tree grew.
    Grown,
    /// The interval passed and nothing changed: anchoring again keeps
    /// silence visible.
    Unchanged,
    /// The last attempt failed and its backoff passed.
    Retry,
    /// An attempt stayed pending past the pending timeout.
    StalePending,
    /// The last attempt is dated after now: the clock went backwards.
    /// Anchoring now is safer than staying silent until it catches up.
    ClockSkew,
}

/// One anchor to run now: the latest checkpoint of `origin`, from the size
/// last confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub origin: String,
    pub size: u64,
    pub previous_size: u64,
    pub reason: DueReason,
}

/// The schedule. Only for anchors that confirm something
/// ([`crate::Anchor::confirms`]); the `none` kind has nothing to schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Anchor each log this often, changed or not (default 5 minutes).
    pub interval: Duration,
    /// First retry delay after a retryable failure (default 10 s); it
    /// doubles with each consecutive failure up to `interval`. Permanent
    /// failures wait a full interval: retrying them sooner cannot help.
    pub retry_initial: Duration,
    /// How long a pending attempt may stay pending before it is retried.
    pub pending_timeout: Duration,
    /// At most this many anchors per tick, most overdue first.
    pub max_per_tick: usize,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new(Duration::from_secs(300))
    }
}

impl Heartbeat {
    pub fn new(interval: Duration) -> Self {
        Heartbeat {
            interval,
            retry_initial: Duration::from_secs(10).min(interval),
            // Longer than the longest anchor timeout the config accepts
            // (10 minutes), so a slow attempt is not started twice.
            pending_timeout: (interval * 3).max(Duration::from_secs(15 * 60)),
            max_per_tick: 64,
        }
    }

    /// The delay after `failures` consecutive retryable failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.retry_initial
            .checked_mul(factor)
            .unwrap_or(self.interval)
            .min(self.interval)
    }

    /// When this log is next due and why; `None` if there is nothing to
    /// anchor (an empty log).
    pub fn next_at(&self, s: &LogAnchorState) -> Option<(SystemTime, DueReason)> {
        if s.latest_size == 0 {
            return None;
        }
        let Some(last) = s.last else {
            return Some((SystemTime::UNIX_EPOCH, DueReason::First));
        };
        let (delay, reason) = match last.status {
            AnchorStatus::Pending => (self.pending_timeout, DueReason::StalePending),
            AnchorStatus::Confirmed if s.latest_size > s.confirmed_size => {
                (self.interval, DueReason::Grown)
            }
            AnchorStatus::Confirmed => (self.interval, DueReason::Unchanged),
            AnchorStatus::Failed {
                consecutive_failures,
                retryable: true,
            } => (self.backoff(consecutive_failures), DueReason::Retry),
            AnchorStatus::Failed {
                retryable: false, ..
            } => (self.interval, DueReason::Retry),
        };
        let at = last.at.checked_add(delay).unwrap_or(last.at);
        Some((at, reason))
    }

    fn due_one(&self, now: SystemTime, s: &LogAnchorState) -> Option<(SystemTime, Due)> {
        let (at, mut reason) = self.next_at(s)?;
        let skewed = s.last.is_some_and(|l| l.at > now);
        if skewed {
            reason = DueReason::ClockSkew;
        } else if at > now {
            return None;
        }
        Some((
            at,
            Due {
                origin: s.origin.clone(),
                size: s.latest_size,
                previous_size: s.confirmed_size,
                reason,
            },
        ))
    }

    /// The anchors to run at `now`, most overdue first, at most
    /// `max_per_tick`.
    pub fn due(&self, now: SystemTime, logs: &[LogAnchorState]) -> Vec<Due> {
        let mut due: Vec<(SystemTime, Due)> =
            logs.iter().filter_map(|s| self.due_one(now, s)).collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.origin.cmp(&b.1.origin)));
        due.into_iter()
            .take(self.max_per_tick)
            .map(|(_, d)| d)
            .collect()
    }

    /// [`Heartbeat::due`] at the clock's time.
    pub fn tick(&self, clock: &dyn Clock, logs: &[LogAnchorState]) -> Vec<Due> {
        self.due(clock.now(), logs)
    }

    /// When the caller should look again: the earliest time any log becomes
    /// due (`now` if one already is), `None` if none ever will.
    pub fn next_wake(&self, now: SystemTime, logs: &[LogAnchorState]) -> Option<SystemTime> {
        logs.iter()
            .filter_map(|s| {
                if self.due_one(now, s).is_some() {
                    return Some(now);
                }
                self.next_at(s).map(|(at, _)| at)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A clock the test moves by hand.
    struct ManualClock(Mutex<SystemTime>);

    impl ManualClock {
        fn at(secs: u64) -> Self {
            ManualClock(Mutex::new(t(secs)))
        }
        fn advance(&self, d: Duration) {
            let mut now = self.0.lock().unwrap();
            *now += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_800_000_000;

    fn state(latest: u64, confirmed: u64, last: Option<(u64, AnchorStatus)>) -> LogAnchorState {
        LogAnchorState {
            origin: "log".into(),
            latest_size: latest,
            confirmed_size: confirmed,
            last: last.map(|(secs, status)| Attempt {
                at: t(secs),
                status,
            }),
        }
    }

    fn failed(n: u32, retryable: bool) -> AnchorStatus {
        AnchorStatus::Failed {
            consecutive_failures: n,
            retryable,
        }
    }

    /// Checks whether `s` is due `after` seconds past T0, and why.
    fn check(s: LogAnchorState, after: u64, want: Option<DueReason>) {
        let hb = Heartbeat::default();
        let got = hb.due(t(T0 + after), std::slice::from_ref(&s));
        assert_eq!(got.first().map(|d| d.reason), want, "{s:?} at +{after}s");
        if let Some(d) = got.first() {
            assert_eq!((d.size, d.previous_size), (s.latest_size, s.confirmed_size));
        }
    }

    #[test]
    fn schedule_cases() {
        use AnchorStatus::*;
        check(state(0, 0, None), 0, None);
        check(state(5, 0, None), 0, Some(DueReason::First));
        // Confirmed: wait the full interval, grown or not.
        check(state(5, 5, Some((T0, Confirmed))), 299, None);
        check(
            state(5, 5, Some((T0, Confirmed))),
            300,
            Some(DueReason::Unchanged),
        );
        check(state(9, 5, Some((T0, Confirmed))), 299, None);
        check(
            state(9, 5, Some((T0, Confirmed))),
            300,
            Some(DueReason::Grown),
        );
        // Retryable failures back off 10, 20, 40 ... capped at 300 s.
        check(state(9, 5, Some((T0, failed(1, true)))), 9, None);
        check(
            state(9, 5, Some((T0, failed(1, true)))),
            10,
            Some(DueReason::Retry),
        );
        check(state(9, 5, Some((T0, failed(2, true)))), 19, None);
        check(
            state(9, 5, Some((T0, failed(2, true)))),
            20,
            Some(DueReason::Retry),
        );
        check(state(9, 5, Some((T0, failed(5, true)))), 159, None);
        check(
            state(9, 5, Some((T0, failed(5, true)))),
            160,
            Some(DueReason::Retry),
        );
        check(state(9, 5, Some((T0, failed(6, true)))), 299, None);
        check(
            state(9, 5, Some((T0, failed(6, true)))),
            300,
            Some(DueReason::Retry),
        );
        check(
            state(9, 5, Some((T0, failed(u32::MAX, true)))),
            300,
            Some(DueReason::Retry),
        );
        // Permanent failures wait a whole interval.
        check(state(9, 5, Some((T0, failed(1, false)))), 299, None);
        check(
            state(9, 5, Some((T0, failed(1, false)))),
            300,
            Some(DueReason::Retry),
        );
        // Pending: left alone until it is stale.
        check(state(9, 5, Some((T0, Pending))), 899, None);
        check(
            state(9, 5, Some((T0, Pending))),
            900,
            Some(DueReason::StalePending),
        );
        // The clock went back before the last attempt: anchor now.
        check(
            state(9, 5, Some((T0 + 3600, Confirmed))),
            0,
            Some(DueReason::ClockSkew),
        );
        check(
            state(9, 5, Some((T0 + 3600, Pending))),
            0,
            Some(DueReason::ClockSkew),
        );
    }

    #[test]
    fn backoff_doubles_to_the_interval() {
        let hb = Heartbeat::default();
        let got: Vec<u64> = (0..8).map(|n| hb.backoff(n).as_secs()).collect();
        assert_eq!(got, [10, 10, 20, 40, 80, 160, 300, 300]);
        let short = Heartbeat::new(Duration::from_secs(4));
        assert_eq!(short.backoff(1), Duration::from_secs(4));
    }

    #[test]
    fn ticks_with_an_injected_clock() {
        let clock = ManualClock::at(T0);
        let hb = Heartbeat::default();
        let mut a = state(10, 10, Some((T0, AnchorStatus::Confirmed)));
        a.origin = "a".into();
        let mut b = state(20, 12, Some((T0 - 100, AnchorStatus::Confirmed)));
        b.origin = "b".into();
        let mut c = state(3, 0, Some((T0 - 50, failed(3, true))));
        c.origin = "c".into();
        let empty = LogAnchorState {
            origin: "empty".into(),
            ..state(0, 0, None)
        };
        let logs = vec![a, b, c, empty];

        // c's 40 s backoff ended 10 s ago; the rest are not due.
        let due = hb.tick(&clock, &logs);
        assert_eq!(origins(&due), ["c"]);
        assert_eq!(hb.next_wake(clock.now(), &logs), Some(clock.now()));

        // Without c, the next wake is b's interval (T0 - 100 + 300).
        assert_eq!(hb.next_wake(clock.now(), &logs[..2]), Some(t(T0 + 200)));
        clock.advance(Duration::from_secs(200));
        let due = hb.tick(&clock, &logs);
        assert_eq!(origins(&due), ["c", "b"]);
        assert_eq!(
            (due[1].size, due[1].previous_size, due[1].reason),
            (20, 12, DueReason::Grown)
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(origins(&hb.tick(&clock, &logs)), ["c", "b", "a"]);

        let capped = Heartbeat {
            max_per_tick: 2,
            ..Heartbeat::default()
        };
        assert_eq!(origins(&capped.tick(&clock, &logs)), ["c", "b"]);
        assert_eq!(hb.next_wake(clock.now(), &logs[3..]), None);
    }

    fn origins(d: &[Due]) -> Vec<&str> {
        d.iter().map(|d| d.origin.as_str()).collect()
    }
}
