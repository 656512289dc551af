//! `loadgen`: a Socket.IO v5 / Engine.IO v4 load generator for Switchboard
//! and its benchmark peers. It speaks the protocol itself (WebSocket through
//! tokio-tungstenite, long-polling through a minimal HTTP/1.1 client) so
//! that its own cost per message stays small and measurable.
//!
//! # Layout
//! - `cli.rs`: options; `target.rs`: loopback server and source addresses;
//!   `token.rs`: auth tokens.
//! - `engineio.rs`, `socketio.rs`: the packets, no I/O.
//! - `transport.rs` (+ `transport/`): one connection over WebSocket or
//!   polling; `client.rs`: one simulated client; `fleet.rs`: all of them.
//! - `stats.rs`: counters and latency histograms; `procfs.rs`, `report.rs`:
//!   CPU/RSS sampling and the final JSON line.
//! - `scenario.rs` (+ `scenario/`): the `idle`, `rooms` and `fanout` modes.

mod cli;
mod client;
mod engineio;
mod fleet;
mod procfs;
mod report;
mod scenario;
mod socketio;
mod stats;
mod target;
mod token;
mod transport;

use std::time::Instant;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    args.validate()?;
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).clamp(1, 256);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    let started = Instant::now();
    let mut report = runtime.block_on(scenario::run(&args, threads))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let me = procfs::sample(None).unwrap_or_default();
    report.wall_s = started.elapsed().as_secs_f64();
    report.loadgen_cpu_s = me.cpu_s;
    report.print()
}
