//! A precise timer for the open model. Tokio's timer has a 1 ms granularity and wakes late,
//! never early: a request due at t was sent up to a millisecond after t, and that lag was
//! charged to the server as latency. This timer is one thread that sleeps with the operating
//! system's sub-millisecond precision until shortly before the earliest due time, waits out
//! the rest, and wakes every request due by then at once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

/// How long before a due time the thread stops sleeping and waits actively: the operating
/// system's timer slack (50 µs on Linux) plus a margin.
const SPIN: Duration = Duration::from_micros(200);
/// How long before its due time an alarm rings: more than it takes a worker thread to wake
/// and poll the waiting task (30 to 100 µs measured). The task then gives way to others
/// until it is due (see `wait_until`).
const LEAD: Duration = Duration::from_micros(150);
/// At most one active wait per this interval: at high rates the alarms ring early instead
/// and their tasks wait out the rest, so the timer thread never takes more than about 5 %
/// of a core (SPIN − LEAD per millisecond).
const SPIN_BUDGET: Duration = Duration::from_millis(1);

struct Alarm {
    due: Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
}

/// A handle to the timer thread; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct PreciseTimer {
    alarms: Sender<Alarm>,
}

impl PreciseTimer {
    /// Starts the timer thread; `None` when the thread cannot be started.
    pub fn start() -> Option<Self> {
        let (alarms, requests) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("peregrine-load-timer".into())
            .spawn(move || serve(&requests))
            .ok()?;
        Some(Self { alarms })
    }

    /// Completes at `due`, within tens of microseconds; at once when the timer is gone.
    pub async fn wait_until(&self, due: Instant) {
        let (wake, woken) = oneshot::channel();
        if self.alarms.send(Alarm { due, wake }).is_ok() {
            let _ = woken.await;
        }
        // Rung up to LEAD early: give way to other tasks until it is time.
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
    }
}

fn serve(requests: &Receiver<Alarm>) {
    let mut pending: BinaryHeap<Reverse<Alarm>> = BinaryHeap::new();
    let mut last_spin: Option<Instant> = None;
    loop {
        let next = pending.peek().map(|Reverse(alarm)| alarm.due);
        let received = match next {
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => requests.recv_deadline(due.checked_sub(SPIN).unwrap_or(due)),
        };
        match received {
            Ok(alarm) => pending.push(Reverse(alarm)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if pending.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(due) = next {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
        }
        ring_due(&mut pending, &mut last_spin);
    }
}

/// Rings every alarm due within [`LEAD`], first waiting actively until the earliest is
/// (within the [`SPIN_BUDGET`]; beyond it, alarms within [`SPIN`] ring at once).
fn ring_due(pending: &mut BinaryHeap<Reverse<Alarm>>, last_spin: &mut Option<Instant>) {
    let Some(Reverse(first)) = pending.peek() else {
        return;
    };
    let ring_at = first.due.checked_sub(LEAD).unwrap_or(first.due);
    let now = Instant::now();
    if ring_at > now + SPIN {
        return;
    }
    let may_spin = last_spin.is_none_or(|at| now.saturating_duration_since(at) >= SPIN_BUDGET);
    let horizon = if may_spin {
        *last_spin = Some(now);
        while Instant::now() < ring_at {
            std::hint::spin_loop();
        }
        Instant::now() + LEAD
    } else {
        now + SPIN + LEAD
    };
    while pending.peek().is_some_and(|Reverse(a)| a.due <= horizon) {
        if let Some(Reverse(alarm)) = pending.pop() {
            let _ = alarm.wake.send(());
        }
    }
}
