//! Command-line options. Everything the scenarios read comes from [`Args`];
//! parsing of compound values (rate lists) lives here, addresses in
//! `target.rs`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Socket.IO v5 / Engine.IO v4 load generator.
///
/// Prints progress to stderr and exactly one JSON line to stdout at the end.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub(crate) struct Args {
    /// What to run.
    #[arg(value_enum)]
    pub(crate) mode: Mode,

    /// Base URL of the server (http://, ws:// or host:port); loopback only.
    /// Several, comma-separated (the gateways of a cluster): client i uses
    /// the (i mod n)-th.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub(crate) url: String,

    /// Engine.IO path.
    #[arg(long, default_value = "/socket.io/")]
    pub(crate) path: String,

    /// Socket.IO namespace to connect to.
    #[arg(long, default_value = "/")]
    pub(crate) namespace: String,

    /// Number of clients.
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,

    /// Members per room (`rooms`; `fanout` puts every client in one room).
    #[arg(long, default_value_t = 10)]
    pub(crate) room_size: usize,

    /// Publishers per room (`rooms`; `fanout` always has one).
    #[arg(long, default_value_t = 1)]
    pub(crate) publishers: usize,

    /// Messages per second per publisher (`rooms`).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) rate: f64,

    /// Publisher rates for the steps of `fanout`, messages per second.
    #[arg(long, value_delimiter = ',', default_value = "100,200,400,800,1200,1600,2400,3200")]
    pub(crate) rates: Vec<f64>,

    /// Seconds to hold (`idle`), publish (`rooms`) or each step (`fanout`).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,

    /// Connections started per second.
    #[arg(long, default_value_t = 2000.0)]
    pub(crate) ramp: f64,

    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 512)]
    pub(crate) max_inflight: usize,

    /// Seconds one client may take to connect (and join its room).
    #[arg(long, default_value_t = 15.0)]
    pub(crate) connect_timeout: f64,

    /// Seconds to wait for the last deliveries after publishing stops.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) drain: f64,

    /// HS256 secret: mint one token per client (sub "u<index>").
    #[arg(long, env = "LOADGEN_JWT_SECRET", conflicts_with = "token")]
    pub(crate) jwt_secret: Option<String>,

    /// One fixed token for every client.
    #[arg(long)]
    pub(crate) token: Option<String>,

    /// Source addresses to bind client sockets to, round-robin
    /// (e.g. 127.0.0.2-127.0.0.20 or 127.0.0.2,127.0.0.3).
    #[arg(long)]
    pub(crate) source_addrs: Option<String>,

    /// Bytes of padding added to every published message.
    #[arg(long, default_value_t = 0)]
    pub(crate) payload_bytes: usize,

    /// WebSocket read buffer per client, bytes. Larger means fewer reads
    /// when the server coalesces frames (fan-out), and more memory per idle
    /// client (it is zero-filled before every read, so it is resident).
    #[arg(long, default_value_t = 2048)]
    pub(crate) read_buffer: usize,

    /// Fraction of clients that use HTTP long-polling instead of WebSocket.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) polling_fraction: f64,

    /// `fanout` stops after the first step with more loss than this.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) max_loss: f64,

    /// `fanout` stops after the first step with a p99 above this (ms).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) max_p99_ms: f64,

    /// Tokio worker threads (default: CPUs this process may run on).
    #[arg(long)]
    pub(crate) threads: Option<usize>,

    /// Pid of the server: its CPU time and RSS are sampled at phase
    /// boundaries and added to the report. Several, comma-separated, are
    /// summed (the processes of a cluster, Redis included).
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Connect N clients and hold them.
    Idle,
    /// N clients in rooms of S, P publishers per room at R msgs/s.
    Rooms,
    /// One room of N, one publisher, rate stepped until deliveries fall behind.
    Fanout,
}

impl Args {
    pub(crate) fn duration(&self) -> Duration {
        secs(self.duration)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        secs(self.connect_timeout)
    }

    pub(crate) fn drain(&self) -> Duration {
        secs(self.drain)
    }

    /// Checks the values no type can: counts, fractions and rates in range.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.clients > 0, "--clients must be at least 1");
        anyhow::ensure!(self.room_size > 0, "--room-size must be at least 1");
        anyhow::ensure!((0.0..=1.0).contains(&self.polling_fraction), "--polling-fraction must be within 0..=1");
        anyhow::ensure!(self.ramp > 0.0, "--ramp must be positive");
        anyhow::ensure!(self.max_inflight > 0, "--max-inflight must be at least 1");
        anyhow::ensure!(self.duration >= 0.0 && self.duration <= 86_400.0, "--duration must be within 0..=86400 s");
        anyhow::ensure!(self.rate > 0.0 && self.rate <= 100_000.0, "--rate must be within (0, 100000]");
        anyhow::ensure!(!self.rates.is_empty() && self.rates.len() <= 64, "--rates takes 1 to 64 values");
        anyhow::ensure!(
            self.rates.iter().all(|r| *r > 0.0 && *r <= 1_000_000.0),
            "--rates must be within (0, 1000000]"
        );
        anyhow::ensure!(
            self.namespace.starts_with('/') && !self.namespace.contains(','),
            "--namespace must start with / and hold no comma"
        );
        anyhow::ensure!(self.payload_bytes <= 1 << 20, "--payload-bytes is at most 1 MiB");
        anyhow::ensure!((256..=1 << 20).contains(&self.read_buffer), "--read-buffer must be within 256..=1048576");
        Ok(())
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}
