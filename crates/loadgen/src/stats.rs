//! What the clients count: connects, failures, and per measuring step the
//! messages sent, expected and delivered with their latency histogram.
//!
//! A delivery belongs to the step during which it was *sent*, found from its
//! `sentAt`, so late deliveries of one step never inflate the next.
//! Histograms are sharded by client so that worker threads rarely meet on a
//! lock; they are merged when a step is summarised.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

const SHARDS: usize = 4;
/// Latencies are recorded in µs up to 10 minutes, 3 significant digits.
const MAX_US: u64 = 600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds")
}

fn lock(m: &Mutex<Histogram<u64>>) -> std::sync::MutexGuard<'_, Histogram<u64>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Microseconds since the Unix epoch, as `sentAt` carries them.
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

pub(crate) struct Stats {
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Sessions the server ended before the run did.
    pub(crate) lost: AtomicU64,
    /// `room:message` events without a readable `sentAt`.
    pub(crate) malformed: AtomicU64,
    connect: Mutex<Histogram<u64>>,
    steps: Vec<Step>,
}

pub(crate) struct Step {
    /// First `sentAt` of this step; `u64::MAX` until it starts.
    start_us: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) expected: AtomicU64,
    pub(crate) delivered: AtomicU64,
    latency: [Mutex<Histogram<u64>>; SHARDS],
}

/// Latency percentiles of one histogram, in milliseconds.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

impl Stats {
    pub(crate) fn new(steps: usize) -> Self {
        Self {
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            connect: Mutex::new(histogram()),
            steps: (0..steps.max(1))
                .map(|_| Step {
                    start_us: AtomicU64::new(u64::MAX),
                    sent: AtomicU64::new(0),
                    expected: AtomicU64::new(0),
                    delivered: AtomicU64::new(0),
                    latency: std::array::from_fn(|_| Mutex::new(histogram())),
                })
                .collect(),
        }
    }

    pub(crate) fn record_connect(&self, micros: u64) {
        self.connected.fetch_add(1, Relaxed);
        lock(&self.connect).saturating_record(micros);
    }

    pub(crate) fn connect_percentiles(&self) -> Percentiles {
        Percentiles::of(&lock(&self.connect))
    }

    pub(crate) fn settled(&self) -> u64 {
        self.connected.load(Relaxed) + self.failed.load(Relaxed)
    }

    pub(crate) fn step(&self, step: usize) -> &Step {
        &self.steps[step.min(self.steps.len() - 1)]
    }

    /// Marks the start of `step`: messages sent from now on belong to it.
    pub(crate) fn start_step(&self, step: usize) {
        self.step(step).start_us.store(now_us(), Relaxed);
    }

    /// The step a message sent at `sent_at` (µs) belongs to. Senders and
    /// receivers both use this, so a message sent just after a step ended
    /// is counted on both sides in the next one.
    fn step_at(&self, sent_at: u64) -> &Step {
        let step = self.steps.iter().rposition(|s| s.start_us.load(Relaxed) <= sent_at).unwrap_or(0);
        &self.steps[step]
    }

    /// `messages` sent at `sent_at` (µs) to a room of `room_members`.
    pub(crate) fn record_sent(&self, sent_at: u64, messages: u64, room_members: u64) {
        let s = self.step_at(sent_at);
        s.sent.fetch_add(messages, Relaxed);
        s.expected.fetch_add(messages * room_members, Relaxed);
    }

    /// Deliveries seen together by client `client` at `now` (µs).
    pub(crate) fn record_deliveries(&self, client: usize, batch: &Deliveries, now: u64) {
        if batch.malformed > 0 {
            self.malformed.fetch_add(batch.malformed, Relaxed);
        }
        let mut sent = batch.sent_at[..batch.len].iter().copied().peekable();
        // Runs of the same step share one lock and one counter update.
        while let Some(first) = sent.next() {
            let step = self.step_at(first);
            let mut count = 1;
            let mut hist = lock(&step.latency[client % SHARDS]);
            hist.saturating_record(now.saturating_sub(first));
            while let Some(at) = sent.next_if(|at| std::ptr::eq(self.step_at(*at), step)) {
                hist.saturating_record(now.saturating_sub(at));
                count += 1;
            }
            drop(hist);
            step.delivered.fetch_add(count, Relaxed);
        }
    }
}

/// The `room:message` deliveries one client read in one wake-up.
pub(crate) struct Deliveries {
    sent_at: [u64; Deliveries::CAPACITY],
    len: usize,
    malformed: u64,
}

impl Default for Deliveries {
    fn default() -> Self {
        Self { sent_at: [0; Self::CAPACITY], len: 0, malformed: 0 }
    }
}

impl Deliveries {
    pub(crate) const CAPACITY: usize = 64;

    /// One `room:message` and its `sentAt`, if it had a readable one.
    pub(crate) fn push(&mut self, sent_at: Option<u64>) {
        match sent_at {
            Some(at) if self.len < Self::CAPACITY => {
                self.sent_at[self.len] = at;
                self.len += 1;
            }
            Some(_) => {}
            None => self.malformed += 1,
        }
    }
}

impl Step {
    pub(crate) fn behind(&self) -> bool {
        self.delivered.load(Relaxed) < self.expected.load(Relaxed)
    }

    pub(crate) fn latency(&self) -> Percentiles {
        let mut all = histogram();
        for shard in &self.latency {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*lock(shard));
        }
        Percentiles::of(&all)
    }

    /// Undelivered fraction of what was expected.
    pub(crate) fn loss(&self) -> f64 {
        let expected = self.expected.load(Relaxed);
        let delivered = self.delivered.load(Relaxed);
        if expected == 0 {
            return 0.0;
        }
        expected.saturating_sub(delivered) as f64 / expected as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_deliveries_to_the_step_they_were_sent_in() {
        let stats = Stats::new(2);
        stats.start_step(0);
        let t0 = now_us();
        stats.record_sent(t0, 1, 3);
        std::thread::sleep(std::time::Duration::from_millis(2));
        stats.start_step(1);
        let t1 = now_us();
        let mut late = Deliveries::default();
        late.push(Some(t0));
        stats.record_deliveries(0, &late, t1 + 5_000);
        let mut batch = Deliveries::default();
        batch.push(Some(t1));
        batch.push(None);
        stats.record_deliveries(1, &batch, t1 + 1_000);
        assert_eq!(stats.malformed.load(Relaxed), 1);
        assert_eq!(stats.step(0).delivered.load(Relaxed), 1);
        assert_eq!(stats.step(1).delivered.load(Relaxed), 1);
        assert!(stats.step(0).behind());
        assert!((stats.step(0).loss() - 2.0 / 3.0).abs() < 1e-9);
        let p = stats.step(1).latency();
        assert!((p.p50_ms - 1.0).abs() < 0.01, "{p:?}");
    }
}
