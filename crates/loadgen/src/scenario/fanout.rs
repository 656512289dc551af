//! `fanout`: every client in one room (`room-0`), client 0 publishing, the
//! rate stepped through `--rates`. Each step publishes for D seconds, then
//! drains; the run stops after the first step that falls behind (loss over
//! `--max-loss` or p99 over `--max-p99-ms`). The top-level figures are those
//! of the fastest step that kept up.

use crate::cli::Args;
use crate::fleet::{Fleet, Phase, Role};
use crate::report::{Report, StepReport, Window};

pub(super) async fn run(args: &Args, threads: usize) -> anyhow::Result<Report> {
    let fleet = Fleet::new(args, 1, args.rates.len())?;
    let setup = super::connect(args, &fleet, |i| Role { room: Some(0), publisher: i == 0 }).await;
    let all = Window::open(&args.server_pid);
    let mut steps = Vec::new();
    let mut best: Option<usize> = None;
    for (k, &rate) in args.rates.iter().enumerate() {
        let window = Window::open(&args.server_pid);
        fleet.stats.start_step(k);
        fleet.set_phase(Phase::Publish { rate });
        tokio::time::sleep(args.duration()).await;
        fleet.set_phase(Phase::Pause);
        let step = fleet.stats.step(k);
        super::drain(step, args.drain()).await;
        let report = StepReport::new(rate, step, args.duration, &window.close());
        eprintln!(
            "loadgen: fanout rate {rate} sent {} delivered {}/{} loss {:.4} p99 {:.1} ms \
             {:.0} deliveries/s loadgen cpu {:.2} ({:.2} us/delivery) server cpu {}",
            report.sent,
            report.delivered,
            report.expected,
            report.loss,
            report.latency.p99_ms,
            report.deliveries_per_s,
            report.loadgen_cpu_util,
            report.loadgen_cpu_us_per_delivery.unwrap_or(0.0),
            report.server_cpu_util.map_or_else(|| "-".into(), |u| format!("{u:.2}")),
        );
        let kept_up = report.loss <= args.max_loss && report.latency.p99_ms <= args.max_p99_ms;
        steps.push(report);
        if !kept_up {
            break;
        }
        best = Some(k);
    }
    let measured = all.close();
    let mut out = super::report(args, threads, &fleet, &setup, &measured);
    let shown = best.unwrap_or(0);
    super::fill_messages(&mut out, fleet.stats.step(shown), args.duration);
    if let (Some(server), Some(k)) = (out.server.as_mut(), best) {
        server.cpu_us_per_delivery = steps[k].server_cpu_us_per_delivery;
    }
    out.deliveries_per_s = best.map_or(0.0, |k| steps[k].deliveries_per_s);
    out.loadgen_cpu_us_per_delivery = steps.get(shown).and_then(|s| s.loadgen_cpu_us_per_delivery);
    out.steps = steps;
    fleet.shutdown(setup.tasks).await;
    Ok(out)
}
