//! The counters behind Triton's statistics extension (`GET /v2/models/{m}/stats`): how many
//! predictions succeeded and failed and how long they took, step by step, kept like the
//! Prometheus metrics are: relaxed atomic adds on the request path, no lock, no allocation;
//! read only when asked for.
//!
//! A prediction is any request to the model's prediction routes (`/predict`, V2 `infer`,
//! V1 `:predict`) once its model is known to be this one and loaded. Its steps, as Triton
//! names them: `queue` (waiting for a worker slot), `compute_input` (decoding the body into
//! tensors and checking them), `compute_infer` (the model's run), `compute_output`
//! (encoding the answer); `success` and `fail` cover the whole request, from its head
//! arriving to its answer being ready.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A count and a total of nanoseconds.
#[derive(Default)]
struct Counter {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Counter {
    fn add(&self, took: Duration) {
        self.count.fetch_add(1, Relaxed);
        self.ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn read(&self) -> Total {
        Total {
            count: self.count.load(Relaxed),
            ns: self.ns.load(Relaxed),
        }
    }
}

/// What a counter holds: how many, and how many nanoseconds they took together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Total {
    pub count: u64,
    pub ns: u64,
}

#[derive(Default)]
pub struct PredictionStats {
    success: Counter,
    fail: Counter,
    queue: Counter,
    compute_input: Counter,
    compute_infer: Counter,
    compute_output: Counter,
    /// Rows predicted by successful requests (one per request for a model without a batch
    /// dimension), Triton's `inference_count`.
    rows: AtomicU64,
    /// Milliseconds since the Unix epoch of the last prediction, 0 before any.
    last_ms: AtomicU64,
}

/// When a successful prediction's steps began and ended.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// The request's head arrived.
    pub received: Instant,
    /// It started waiting for a worker slot, and got one.
    pub queued: Instant,
    pub admitted: Instant,
    /// The model's run began and ended.
    pub run_started: Instant,
    pub run_ended: Instant,
    /// The answer was ready.
    pub done: Instant,
    /// Rows in the request (1 for a model without a batch dimension).
    pub rows: u64,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub success: Total,
    pub fail: Total,
    pub queue: Total,
    pub compute_input: Total,
    pub compute_infer: Total,
    pub compute_output: Total,
    pub rows: u64,
    pub last_ms: u64,
}

impl PredictionStats {
    pub fn new() -> PredictionStats {
        PredictionStats::default()
    }

    /// Counts a prediction that was answered with the model's outputs.
    pub fn success(&self, t: &Timeline) {
        let between = |from: Instant, to: Instant| to.saturating_duration_since(from);
        self.success.add(between(t.received, t.done));
        self.queue.add(between(t.queued, t.admitted));
        self.compute_input.add(between(t.admitted, t.run_started));
        self.compute_infer.add(between(t.run_started, t.run_ended));
        self.compute_output.add(between(t.run_ended, t.done));
        self.rows.fetch_add(t.rows, Relaxed);
        self.touch();
    }

    /// Counts a prediction answered with an error, `took` after its head arrived.
    pub fn failure(&self, took: Duration) {
        self.fail.add(took);
        self.touch();
    }

    fn touch(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_ms.fetch_max(now, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            success: self.success.read(),
            fail: self.fail.read(),
            queue: self.queue.read(),
            compute_input: self.compute_input.read(),
            compute_infer: self.compute_infer.read(),
            compute_output: self.compute_output.read(),
            rows: self.rows.load(Relaxed),
            last_ms: self.last_ms.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_is_counted_with_its_duration() {
        let stats = PredictionStats::new();
        assert_eq!(stats.snapshot(), Snapshot::default());
        let received = Instant::now();
        let at = |ms: u64| received + Duration::from_millis(ms);
        stats.success(&Timeline {
            received,
            queued: at(1),
            admitted: at(3),
            run_started: at(4),
            run_ended: at(10),
            done: at(12),
            rows: 8,
        });
        stats.failure(Duration::from_millis(5));
        let s = stats.snapshot();
        let ms = |count, ms: u64| Total {
            count,
            ns: ms * 1_000_000,
        };
        assert_eq!(s.success, ms(1, 12));
        assert_eq!(s.queue, ms(1, 2));
        assert_eq!(s.compute_input, ms(1, 1));
        assert_eq!(s.compute_infer, ms(1, 6));
        assert_eq!(s.compute_output, ms(1, 2));
        assert_eq!(s.fail, ms(1, 5));
        assert_eq!(s.rows, 8);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(s.last_ms > 0 && s.last_ms <= now.as_millis() as u64);
    }
}
