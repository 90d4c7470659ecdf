//! The scheduler: one loop per action that sleeps until the action is due, then delivers it,
//! unless its previous run is still going. Time comes from a [`Clock`] so tests can drive it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::spec::schedule::Schedule;

/// A source of time for the scheduler.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // Sleep in steps of at most a minute, so a changed wall clock is noticed.
            loop {
                let left = at - Utc::now();
                let Ok(left) = left.to_std() else { return };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
            }
        })
    }
}

/// What the scheduler did, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An action was due and was started.
    Fired {
        /// The action's id.
        id: String,
        /// When it was due.
        due: DateTime<Utc>,
    },
    /// An action was due while its previous run was still going: this firing was skipped.
    Skipped {
        /// The action's id.
        id: String,
        /// When it was due.
        due: DateTime<Utc>,
    },
}

/// One scheduled action: its id, its schedule, and how to run it once.
pub struct Job {
    /// The action's id.
    pub id: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Runs it once; resolves when the run is over.
    pub run: Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
}

/// Runs every job on its schedule, each in a loop of its own, until `stop` turns true; then
/// fires nothing more and returns once the runs in flight have finished.
pub async fn run(
    jobs: Vec<Job>,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
) {
    let start = clock.now();
    let mut loops = JoinSet::new();
    for job in jobs {
        let clock = clock.clone();
        let events = events.clone();
        loops.spawn(job_loop(job, clock, start, stop.clone(), events));
    }
    while loops.join_next().await.is_some() {}
}

async fn job_loop(
    job: Job,
    clock: Arc<dyn Clock>,
    start: DateTime<Utc>,
    mut stop: watch::Receiver<bool>,
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
) {
    let running = Arc::new(AtomicBool::new(false));
    let mut runs = JoinSet::new();
    let mut due = job.schedule.first_after(start);
    while let Some(at) = due {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            () = clock.sleep_until(at) => {}
            _ = stop.changed() => break,
        }
        while runs.try_join_next().is_some() {}
        let event = if running.swap(true, Ordering::AcqRel) {
            tracing::warn!(action = %job.id, due = %at, "action skipped: its previous run is still going");
            Event::Skipped {
                id: job.id.clone(),
                due: at,
            }
        } else {
            let run = (job.run)();
            let running = running.clone();
            runs.spawn(async move {
                run.await;
                running.store(false, Ordering::Release);
            });
            Event::Fired {
                id: job.id.clone(),
                due: at,
            }
        };
        if let Some(events) = &events {
            let _ = events.send(event);
        }
        // The next run after now: firings missed while this one was late are not replayed.
        let now = clock.now();
        let mut next = job.schedule.next_after(at);
        while let Some(n) = next.filter(|n| *n <= now) {
            next = job.schedule.next_after(n);
        }
        due = next;
    }
    while runs.join_next().await.is_some() {}
}

/// A clock that only moves when told to, for tests.
#[cfg(test)]
pub(crate) struct ManualClock {
    now: std::sync::Mutex<DateTime<Utc>>,
    moved: tokio::sync::Notify,
}

#[cfg(test)]
impl ManualClock {
    pub(crate) fn new(now: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            now: std::sync::Mutex::new(now),
            moved: tokio::sync::Notify::new(),
        })
    }

    pub(crate) fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap() = now;
        self.moved.notify_waiters();
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let moved = self.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                if self.now() >= at {
                    return;
                }
                moved.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{Semaphore, mpsc};

    use super::*;
    use crate::spec::schedule::tests::at;

    /// A job whose runs each wait for a permit, so a test decides when a run ends.
    fn gated_job(id: &str, schedule: &str, gate: Arc<Semaphore>) -> Job {
        Job {
            id: id.into(),
            schedule: Schedule::parse(schedule).unwrap(),
            run: Arc::new(move || {
                let gate = gate.clone();
                Box::pin(async move {
                    gate.acquire().await.unwrap().forget();
                })
            }),
        }
    }

    fn never_stop() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    /// Lets the spawned scheduler reach its first sleep before the test moves the clock.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event")
            .expect("the scheduler runs")
    }

    fn fired(id: &str, due: &str) -> Event {
        Event::Fired {
            id: id.into(),
            due: at(due),
        }
    }

    #[tokio::test]
    async fn fires_when_due_and_never_piles_up() {
        let clock = ManualClock::new(at("2026-11-28T10:03:20Z"));
        let gate = Arc::new(Semaphore::new(0));
        let (tx, mut events) = mpsc::unbounded_channel();
        let jobs = vec![gated_job("tidy", "1 minute", gate.clone())];
        let scheduler = tokio::spawn(run(jobs, clock.clone(), never_stop(), Some(tx)));
        settle().await;

        clock.set(at("2026-11-28T10:04:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            fired("tidy", "2026-11-28T10:04:00Z")
        );
        // Still running a minute later: that firing is skipped.
        clock.set(at("2026-11-28T10:05:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            Event::Skipped {
                id: "tidy".into(),
                due: at("2026-11-28T10:05:00Z")
            }
        );
        // Once the run ends, the next firing goes ahead.
        gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.set(at("2026-11-28T10:06:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            fired("tidy", "2026-11-28T10:06:00Z")
        );
        scheduler.abort();
    }

    #[tokio::test]
    async fn stopping_fires_nothing_more_and_waits_for_runs_in_flight() {
        let clock = ManualClock::new(at("2026-11-28T10:03:20Z"));
        let gate = Arc::new(Semaphore::new(0));
        let (tx, mut events) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let scheduler = tokio::spawn(run(
            vec![gated_job("tidy", "1 minute", gate.clone())],
            clock.clone(),
            stopped,
            Some(tx),
        ));
        settle().await;
        clock.set(at("2026-11-28T10:04:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            fired("tidy", "2026-11-28T10:04:00Z")
        );
        stop.send(true).unwrap();
        settle().await;
        assert!(!scheduler.is_finished(), "the run in flight is awaited");
        gate.add_permits(1);
        tokio::time::timeout(Duration::from_secs(5), scheduler)
            .await
            .unwrap()
            .unwrap();
        clock.set(at("2026-11-28T10:05:00Z"));
        settle().await;
        assert!(events.try_recv().is_err(), "nothing fires after stop");
    }

    #[tokio::test]
    async fn missed_firings_are_not_replayed() {
        let clock = ManualClock::new(at("2026-11-28T10:00:30Z"));
        let gate = Arc::new(Semaphore::new(100));
        let (tx, mut events) = mpsc::unbounded_channel();
        let scheduler = tokio::spawn(run(
            vec![gated_job("sync", "0/15 * * * *", gate)],
            clock.clone(),
            never_stop(),
            Some(tx),
        ));
        settle().await;
        // The clock jumps an hour: one firing for the first due time, then the next after now.
        clock.set(at("2026-11-28T11:01:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            fired("sync", "2026-11-28T10:15:00Z")
        );
        clock.set(at("2026-11-28T11:15:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            fired("sync", "2026-11-28T11:15:00Z")
        );
        scheduler.abort();
    }

    #[tokio::test]
    async fn each_action_runs_on_its_own_schedule() {
        let clock = ManualClock::new(at("2026-11-29T08:59:00Z"));
        let gate = Arc::new(Semaphore::new(100));
        let (tx, mut events) = mpsc::unbounded_channel();
        let jobs = vec![
            gated_job("weekly", "0 9 * * 1", gate.clone()),
            gated_job("hourly", "1 hour", gate),
        ];
        let scheduler = tokio::spawn(run(jobs, clock.clone(), never_stop(), Some(tx)));
        settle().await;
        clock.set(at("2026-11-29T09:00:00Z"));
        assert_eq!(
            next_event(&mut events).await,
            fired("hourly", "2026-11-29T09:00:00Z")
        );
        clock.set(at("2026-11-30T09:00:00Z"));
        let mut got = vec![next_event(&mut events).await, next_event(&mut events).await];
        got.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(
            got,
            vec![
                fired("hourly", "2026-11-29T10:00:00Z"),
                fired("weekly", "2026-11-30T09:00:00Z")
            ]
        );
        scheduler.abort();
    }
}
