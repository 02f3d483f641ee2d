//! One run's deadline: wall-clock time from admission, paused only while the run is entirely suspended on human approvals. It must never pause while any of the run's code is executing.

use std::sync::{Arc, Mutex};

use crate::Locked;
use std::time::{Duration, Instant};

/// Told when the pause starts (`true`) or ends (`false`); a worker forwards
/// these so that the server's watchdog pauses exactly when the worker does.
pub(crate) type PauseObserver = Box<dyn Fn(bool) + Send + Sync>;

/// Which run holds a worker's engine thread, and since when: what the
/// worker's sentinel reports so the server's watchdog blames the right run.
pub(crate) type OnThread = Arc<Mutex<Option<(u64, Instant)>>>;

struct State {
    started: Instant,
    /// Approval waits in progress.
    approvals: u32,
    /// Host calls in flight, approval waits included.
    calls: u32,
    /// The engine is being polled (agent code may be running).
    busy: bool,
    /// Set by a worker's report, on the server side (`mirror`).
    reported: bool,
    paused_since: Option<Instant>,
    paused_total: Duration,
}

/// The deadline of one run. In process the engine and the broker share one
/// clock; across a process boundary the worker's clock decides when the run
/// is paused and the server's clock mirrors it (`set_reported_pause`).
pub(crate) struct RunClock {
    limit: Duration,
    state: Mutex<State>,
    observer: Option<PauseObserver>,
    mirror: bool,
    thread_note: Option<(u64, OnThread)>,
}

impl RunClock {
    pub(crate) fn new(started: Instant, limit: Duration) -> Arc<RunClock> {
        Arc::new(RunClock {
            limit,
            state: Self::fresh(started),
            observer: None,
            mirror: false,
            thread_note: None,
        })
    }

    /// A worker's clock: its pauses are reported to `observer` as they begin
    /// and end, and the times the engine runs it are noted in `on_thread`.
    pub(crate) fn observed(
        started: Instant,
        limit: Duration,
        observer: PauseObserver,
        run: u64,
        on_thread: OnThread,
    ) -> Arc<Self> {
        Arc::new(RunClock {
            limit,
            state: Self::fresh(started),
            observer: Some(observer),
            mirror: false,
            thread_note: Some((run, on_thread)),
        })
    }

    /// The server's copy of a worker's clock: paused only when the worker says so.
    pub(crate) fn mirror(started: Instant, limit: Duration) -> Arc<RunClock> {
        Arc::new(RunClock {
            limit,
            state: Self::fresh(started),
            observer: None,
            mirror: true,
            thread_note: None,
        })
    }

    fn fresh(started: Instant) -> Mutex<State> {
        Mutex::new(State {
            started,
            approvals: 0,
            calls: 0,
            busy: false,
            reported: false,
            paused_since: None,
            paused_total: Duration::ZERO,
        })
    }

    pub(crate) fn started(&self) -> Instant {
        self.state.locked().started
    }

    /// Mirror only: the run really started now (the worker's engine took it).
    pub(crate) fn restart(&self, at: Instant) {
        self.state.locked().started = at;
    }

    /// The deadline, moved on by every moment the run was paused.
    pub(crate) fn deadline(&self) -> Instant {
        let s = self.state.locked();
        let running = s.paused_since.map_or(Duration::ZERO, |t| t.elapsed());
        s.started + self.limit + s.paused_total + running
    }

    /// Time spent paused so far.
    #[cfg(test)]
    pub(crate) fn paused(&self) -> Duration {
        let s = self.state.locked();
        s.paused_total + s.paused_since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Whether the run has used up its time (pauses not counted).
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut s = self.state.locked();
        change(&mut s);
        // Paused only while the run is entirely suspended on approvals: no
        // code running and every call in flight waiting for a human. The
        // server's copy also needs an approval its broker is waiting for, so
        // a worker cannot pause the server's clock by saying so.
        let on_approvals = s.approvals > 0 && s.approvals >= s.calls;
        let should_pause = if self.mirror {
            s.reported && on_approvals
        } else {
            on_approvals && !s.busy
        };
        let transition = match (should_pause, s.paused_since) {
            (true, None) => {
                s.paused_since = Some(Instant::now());
                Some(true)
            }
            (false, Some(since)) => {
                s.paused_total += since.elapsed();
                s.paused_since = None;
                Some(false)
            }
            _ => None,
        };
        drop(s);
        if let (Some(paused), Some(observer)) = (transition, &self.observer) {
            observer(paused);
        }
    }

    /// An approval wait of this run begins (`true`) or ends (`false`).
    pub(crate) fn approval(&self, waiting: bool) {
        self.update(|s| {
            if waiting {
                s.approvals += 1;
            } else {
                s.approvals = s.approvals.saturating_sub(1);
            }
        });
    }

    /// A host call of the run starts (`true`) or settles (`false`).
    pub(crate) fn call(&self, started: bool) {
        self.update(|s| {
            if started {
                s.calls += 1;
            } else {
                s.calls = s.calls.saturating_sub(1);
            }
        });
    }

    /// The engine starts (`true`) or stops (`false`) running this run's code.
    pub(crate) fn busy(&self, busy: bool) {
        if let Some((run, note)) = &self.thread_note {
            *note.locked() = busy.then(|| (*run, Instant::now()));
        }
        self.update(|s| s.busy = busy);
    }

    /// Mirror only: the worker reported that the run is paused or not.
    pub(crate) fn set_reported_pause(&self, paused: bool) {
        self.update(|s| s.reported = paused);
    }

    /// Resolves when the deadline has passed, however often it moved.
    pub(crate) async fn passed(&self) {
        loop {
            let deadline = self.deadline();
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            if Instant::now() >= self.deadline() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_only_while_idle_and_waiting_for_approval() {
        let clock = RunClock::new(Instant::now(), Duration::from_secs(1));
        let d0 = clock.deadline();
        // Waiting on an approval while code runs: no pause.
        clock.busy(true);
        clock.approval(true);
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.paused().is_zero());
        // Code stops: the pause starts.
        clock.busy(false);
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.paused() >= Duration::from_millis(20));
        assert!(clock.deadline() > d0);
        // The approval ends: the pause ends and stays counted.
        clock.approval(false);
        let p = clock.paused();
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(clock.paused(), p);
    }

    #[test]
    fn observer_hears_each_transition_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let note: OnThread = Arc::default();
        let clock = RunClock::observed(
            Instant::now(),
            Duration::from_secs(1),
            Box::new(move |p| s.lock().unwrap().push(p)),
            9,
            note.clone(),
        );
        clock.approval(true);
        clock.approval(true);
        clock.busy(true);
        assert_eq!(note.lock().unwrap().map(|(run, _)| run), Some(9));
        clock.busy(false);
        assert!(note.lock().unwrap().is_none());
        clock.approval(false);
        clock.approval(false);
        assert_eq!(*seen.lock().unwrap(), vec![true, false, true, false]);
    }

    #[test]
    fn mirror_follows_reports_only_while_its_broker_waits_for_a_human() {
        let clock = RunClock::mirror(Instant::now(), Duration::from_secs(1));
        // A report of a pause with no approval asked is not believed.
        clock.set_reported_pause(true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.paused().is_zero());
        clock.set_reported_pause(false);
        clock.approval(true);
        assert!(clock.paused().is_zero());
        clock.set_reported_pause(true);
        std::thread::sleep(Duration::from_millis(5));
        clock.set_reported_pause(false);
        assert!(clock.paused() >= Duration::from_millis(5));
    }

    #[test]
    fn another_call_in_flight_keeps_the_clock_running() {
        let clock = RunClock::new(Instant::now(), Duration::from_secs(1));
        clock.call(true);
        clock.call(true);
        clock.approval(true);
        // One call waits for a human, the other is still working.
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.paused().is_zero());
        clock.call(false);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!clock.paused().is_zero());
    }
}
