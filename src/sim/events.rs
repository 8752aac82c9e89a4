//! The sim's ground truth: every transition of a worker (and whatever the sim's Kubernetes API
//! records) as a timestamped event.
//!
//! Why: faultline measures detection and recovery from the outside; the sim knows exactly when a
//! worker died, when the router noticed and when it came back, so tests and rehearsals can check
//! the measured numbers against these. Events are kept in memory (for `GET /sim/events`), sent to
//! subscribers, and appended to `DIR/events.jsonl` as they happen so a crashed run keeps them.
//! Times come from one monotonic clock read under the log's lock, so the order of the events is
//! the order of their `t_s`.

use std::fs::File;
use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One ground-truth event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimEvent {
    /// Seconds since the sim started (monotonic).
    pub t_s: f64,
    /// Wall-clock time, for lining up with faultline's own records.
    pub unix_ms: u64,
    pub kind: String,
    pub worker: Option<usize>,
    pub detail: String,
}

pub(crate) struct EventLog {
    epoch: Instant,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<SimEvent>,
}

struct Inner {
    events: Vec<SimEvent>,
    file: Option<File>,
}

impl EventLog {
    /// A log starting at `epoch`, appending to `file` when given.
    pub fn new(epoch: Instant, file: Option<File>) -> Self {
        EventLog {
            epoch,
            inner: Mutex::new(Inner {
                events: Vec::new(),
                file,
            }),
            tx: broadcast::channel(1024).0,
        }
    }

    pub fn elapsed_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The instant `t_s` counts from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn record(&self, kind: &str, worker: Option<usize>, detail: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let event = SimEvent {
            t_s: self.elapsed_s(),
            unix_ms,
            kind: kind.to_string(),
            worker,
            detail: detail.to_string(),
        };
        tracing::info!(kind, ?worker, detail, "sim event");
        if let Some(f) = &mut inner.file {
            let mut line = serde_json::to_string(&event).expect("event serializes");
            line.push('\n');
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!("cannot append to the sim's events.jsonl: {e}");
            }
        }
        inner.events.push(event.clone());
        // Nobody listening is fine.
        let _ = self.tx.send(event);
    }

    pub fn events(&self) -> Vec<SimEvent> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.events.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_kept_in_order_and_appended_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::new(Instant::now(), Some(File::create(&path).unwrap()));
        let mut rx = log.subscribe();
        log.record("worker_failed", Some(1), "killed");
        log.record("policy_applied", None, "deny-all");
        let events = log.events();
        assert_eq!(events.len(), 2);
        assert!(events[0].t_s <= events[1].t_s);
        assert_eq!(rx.try_recv().unwrap(), events[0]);
        let lines: Vec<SimEvent> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, events);
    }
}
