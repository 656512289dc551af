//! The one JSON line printed at the end of a run, and the measuring window
//! that fills its CPU figures: wall time, this process's CPU time, and the
//! server's CPU time and RSS when its pid was given.

use std::time::Instant;

use serde::Serialize;

use crate::cli::Mode;
use crate::procfs::{self, Sample};
use crate::stats::{Percentiles, Step};

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) mode: Mode,
    pub(crate) clients: usize,
    pub(crate) polling_clients: usize,
    pub(crate) threads: usize,
    pub(crate) connected: u64,
    pub(crate) failed: u64,
    /// Sessions the server closed before the end of the run.
    pub(crate) lost: u64,
    pub(crate) connect_p50_ms: f64,
    pub(crate) connect_p99_ms: f64,
    /// Time from the first connect to the last client settled.
    pub(crate) connect_s: f64,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) loss: f64,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
    pub(crate) latency_p999_ms: f64,
    pub(crate) latency_max_ms: f64,
    pub(crate) malformed: u64,
    /// Deliveries per second over the measuring window.
    pub(crate) deliveries_per_s: f64,
    /// The measuring window: hold (idle), publish + drain (rooms), all steps
    /// (fanout).
    pub(crate) duration_s: f64,
    pub(crate) wall_s: f64,
    /// This process's user + system CPU seconds, whole run.
    pub(crate) loadgen_cpu_s: f64,
    /// The same during the measuring window, and as a fraction of it: near
    /// 1.0 per thread means the load generator was the bottleneck.
    pub(crate) loadgen_cpu_window_s: f64,
    pub(crate) loadgen_cpu_util: f64,
    /// This process's CPU per delivery: 1 / this is how many deliveries per
    /// second one core of load generator can take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) loadgen_cpu_us_per_delivery: Option<f64>,
    /// This process's RSS at the end of the measuring window.
    pub(crate) loadgen_rss_kib: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<ServerReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) steps: Vec<StepReport>,
}

/// Server figures, from `/proc/PID`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ServerReport {
    pub(crate) pids: Vec<u32>,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_connected_kib: u64,
    pub(crate) rss_end_kib: u64,
    /// (RSS connected − RSS before) / connected.
    pub(crate) rss_kib_per_connection: f64,
    pub(crate) cpu_connect_s: f64,
    pub(crate) cpu_us_per_connect: f64,
    pub(crate) cpu_window_s: f64,
    pub(crate) cpu_util: f64,
    /// Server CPU in the window per delivery; absent without deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_us_per_delivery: Option<f64>,
}

/// One `fanout` step (or the single publishing window of `rooms`).
#[derive(Debug, Serialize)]
pub(crate) struct StepReport {
    pub(crate) rate: f64,
    pub(crate) sent: u64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) loss: f64,
    #[serde(flatten)]
    pub(crate) latency: Percentiles,
    pub(crate) deliveries_per_s: f64,
    /// Publishing time; `window_s` adds the drain.
    pub(crate) duration_s: f64,
    pub(crate) window_s: f64,
    pub(crate) loadgen_cpu_util: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) loadgen_cpu_us_per_delivery: Option<f64>,
    /// `loadgen` or `server` when that side used over 90 % of a core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limited_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_util: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_us_per_delivery: Option<f64>,
}

/// A measured stretch of the run.
pub(crate) struct Window {
    start: Instant,
    me: Sample,
    server_pids: Vec<u32>,
    server: Option<Sample>,
}

/// What happened during a [`Window`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) wall_s: f64,
    pub(crate) loadgen_cpu_s: f64,
    pub(crate) loadgen_rss_kib: u64,
    pub(crate) server_cpu_s: Option<f64>,
    pub(crate) server_end: Option<Sample>,
}

impl Measured {
    pub(crate) fn loadgen_util(&self) -> f64 {
        ratio(self.loadgen_cpu_s, self.wall_s)
    }

    pub(crate) fn loadgen_us_per(&self, deliveries: u64) -> Option<f64> {
        (deliveries > 0).then(|| ratio(self.loadgen_cpu_s * 1e6, deliveries as f64))
    }
}

impl Window {
    pub(crate) fn open(server_pids: &[u32]) -> Self {
        Self {
            start: Instant::now(),
            me: procfs::sample(None).unwrap_or_default(),
            server_pids: server_pids.to_vec(),
            server: sample_servers(server_pids),
        }
    }

    pub(crate) fn server_start(&self) -> Option<Sample> {
        self.server
    }

    pub(crate) fn close(&self) -> Measured {
        let me = procfs::sample(None).unwrap_or_default();
        let server_end = sample_servers(&self.server_pids);
        Measured {
            wall_s: self.start.elapsed().as_secs_f64(),
            loadgen_cpu_s: me.cpu_s - self.me.cpu_s,
            loadgen_rss_kib: me.rss_kib,
            server_cpu_s: match (self.server, server_end) {
                (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
                _ => None,
            },
            server_end,
        }
    }
}

fn sample_servers(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    procfs::sample_all(pids).ok()
}

pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl StepReport {
    pub(crate) fn new(rate: f64, step: &Step, publish_s: f64, measured: &Measured) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let delivered = step.delivered.load(Relaxed);
        Self {
            rate,
            sent: step.sent.load(Relaxed),
            expected: step.expected.load(Relaxed),
            delivered,
            loss: step.loss(),
            latency: step.latency(),
            deliveries_per_s: ratio(delivered as f64, publish_s),
            duration_s: publish_s,
            window_s: measured.wall_s,
            loadgen_cpu_util: measured.loadgen_util(),
            loadgen_cpu_us_per_delivery: measured.loadgen_us_per(delivered),
            limited_by: limited_by(measured),
            server_cpu_util: measured.server_cpu_s.map(|s| ratio(s, measured.wall_s)),
            server_cpu_us_per_delivery: measured.server_cpu_s.map(|s| ratio(s * 1e6, delivered as f64)),
        }
    }
}

/// Which side, if any, ran out of CPU during a window (over 90 % of the one
/// core each is pinned to).
fn limited_by(m: &Measured) -> Option<&'static str> {
    const BUSY: f64 = 0.9;
    if m.loadgen_util() > BUSY {
        Some("loadgen")
    } else if m.server_cpu_s.is_some_and(|s| ratio(s, m.wall_s) > BUSY) {
        Some("server")
    } else {
        None
    }
}

impl Report {
    pub(crate) fn print(&self) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string(self)?);
        Ok(())
    }
}
