//! The three modes (`scenario/idle.rs`, `scenario/rooms.rs`,
//! `scenario/fanout.rs`) and what they share: the connect phase with its
//! measurements, draining, and filling the report.

mod fanout;
mod idle;
mod rooms;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::cli::{Args, Mode};
use crate::fleet::{Fleet, Role};
use crate::procfs::Sample;
use crate::report::{Measured, Report, ServerReport, Window, ratio};
use crate::stats::Step;

pub(crate) async fn run(args: &Args, threads: usize) -> anyhow::Result<Report> {
    match args.mode {
        Mode::Idle => idle::run(args, threads).await,
        Mode::Rooms => rooms::run(args, threads).await,
        Mode::Fanout => fanout::run(args, threads).await,
    }
}

/// The clients once connected, with what connecting cost.
struct Setup {
    tasks: JoinSet<()>,
    server_before: Option<Sample>,
    connect: Measured,
}

async fn connect(args: &Args, fleet: &Arc<Fleet>, role: impl Fn(usize) -> Role) -> Setup {
    let window = Window::open(&args.server_pid);
    let tasks = fleet.launch(args.clients, args.ramp, role).await;
    Setup { tasks, server_before: window.server_start(), connect: window.close() }
}

/// Waits until `step` has every expected delivery, or `max` passed. The
/// first 100 ms are always waited, so that a batch a publisher was sending
/// when publishing stopped is counted before the step is summarised.
async fn drain(step: &Step, max: Duration) {
    let deadline = Instant::now() + max;
    tokio::time::sleep(max.min(Duration::from_millis(100))).await;
    while step.behind() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sleeps `total`, printing a progress line every few seconds.
async fn hold(fleet: &Fleet, total: Duration, what: &str) {
    let start = Instant::now();
    let every = Duration::from_secs(5);
    while start.elapsed() < total {
        let left = total.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(every)).await;
        let s = &fleet.stats;
        eprintln!(
            "loadgen: {what} {:>6.1}s connected {} lost {} sent {} delivered {}",
            start.elapsed().as_secs_f64(),
            s.connected.load(Relaxed),
            s.lost.load(Relaxed),
            s.step(0).sent.load(Relaxed),
            s.step(0).delivered.load(Relaxed),
        );
    }
}

/// The report's common part; the scenario fills in message figures.
fn report(args: &Args, threads: usize, fleet: &Fleet, setup: &Setup, window: &Measured) -> Report {
    let stats = &fleet.stats;
    let connect = stats.connect_percentiles();
    let connected = stats.connected.load(Relaxed);
    let server = match (setup.server_before, setup.connect.server_end) {
        (Some(before), Some(after)) => Some(ServerReport {
            pids: args.server_pid.clone(),
            rss_before_kib: before.rss_kib,
            rss_connected_kib: after.rss_kib,
            rss_end_kib: window.server_end.map_or(0, |s| s.rss_kib),
            rss_kib_per_connection: ratio(after.rss_kib.saturating_sub(before.rss_kib) as f64, connected as f64),
            cpu_connect_s: setup.connect.server_cpu_s.unwrap_or(0.0),
            cpu_us_per_connect: ratio(setup.connect.server_cpu_s.unwrap_or(0.0) * 1e6, connected as f64),
            cpu_window_s: window.server_cpu_s.unwrap_or(0.0),
            cpu_util: ratio(window.server_cpu_s.unwrap_or(0.0), window.wall_s),
            cpu_us_per_delivery: None,
        }),
        _ => None,
    };
    Report {
        mode: args.mode,
        clients: args.clients,
        polling_clients: fleet.polling_clients(args.clients),
        threads,
        connected,
        failed: stats.failed.load(Relaxed),
        lost: stats.lost.load(Relaxed),
        connect_p50_ms: connect.p50_ms,
        connect_p99_ms: connect.p99_ms,
        connect_s: setup.connect.wall_s,
        sent: 0,
        delivered: 0,
        expected: 0,
        loss: 0.0,
        latency_p50_ms: 0.0,
        latency_p99_ms: 0.0,
        latency_p999_ms: 0.0,
        latency_max_ms: 0.0,
        malformed: stats.malformed.load(Relaxed),
        deliveries_per_s: 0.0,
        duration_s: window.wall_s,
        wall_s: 0.0,
        loadgen_cpu_s: 0.0,
        loadgen_cpu_window_s: window.loadgen_cpu_s,
        loadgen_cpu_util: window.loadgen_util(),
        loadgen_cpu_us_per_delivery: None,
        loadgen_rss_kib: window.loadgen_rss_kib,
        server,
        steps: Vec::new(),
    }
}

/// Copies one step's message figures into the report's top level.
fn fill_messages(report: &mut Report, step: &Step, publish_s: f64) {
    let latency = step.latency();
    report.sent = step.sent.load(Relaxed);
    report.delivered = step.delivered.load(Relaxed);
    report.expected = step.expected.load(Relaxed);
    report.loss = step.loss();
    report.latency_p50_ms = latency.p50_ms;
    report.latency_p99_ms = latency.p99_ms;
    report.latency_p999_ms = latency.p999_ms;
    report.latency_max_ms = latency.max_ms;
    report.deliveries_per_s = ratio(report.delivered as f64, publish_s);
    report.loadgen_cpu_us_per_delivery =
        (report.delivered > 0).then(|| ratio(report.loadgen_cpu_window_s * 1e6, report.delivered as f64));
    if let Some(server) = report.server.as_mut() {
        server.cpu_us_per_delivery =
            (report.delivered > 0).then(|| ratio(server.cpu_window_s * 1e6, report.delivered as f64));
    }
}
