//! The clients of one run and what they share: where to connect, tokens,
//! counters, the current [`Phase`] (a watch channel every client follows),
//! and the members joined per room. Launching ramps connections at a given
//! rate with a bound on handshakes in flight; shutting down is bounded in
//! time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::cli::Args;
use crate::stats::Stats;
use crate::target::Target;
use crate::token::Tokens;

/// What the clients are doing; set by the scenario, followed by every client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Phase {
    /// Connecting and joining; nobody publishes.
    Setup,
    /// Publishers send at `rate` messages/s; messages are counted in the
    /// step their `sentAt` falls in (see `Stats::start_step`).
    Publish { rate: f64 },
    /// Publishing stopped; deliveries drain.
    Pause,
    /// Close and exit.
    Done,
}

/// The part a client plays.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Role {
    pub(crate) room: Option<usize>,
    pub(crate) publisher: bool,
}

pub(crate) struct Fleet {
    pub(crate) target: Target,
    pub(crate) tokens: Tokens,
    pub(crate) namespace: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) payload_bytes: usize,
    pub(crate) read_buffer: usize,
    polling_fraction: f64,
    pub(crate) stats: Stats,
    pub(crate) phase: watch::Sender<Phase>,
    /// Members that completed `room:join`, per room.
    rooms: Vec<AtomicU64>,
    pub(crate) handshakes: Semaphore,
    errors_logged: AtomicU64,
}

/// Reasons printed for the first failures only.
const ERRORS_TO_LOG: u64 = 10;

impl Fleet {
    pub(crate) fn new(args: &Args, rooms: usize, steps: usize) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            target: Target::new(&args.url, &args.path, args.source_addrs.as_deref())?,
            tokens: Tokens::new(args.jwt_secret.as_deref(), args.token.as_deref()),
            namespace: args.namespace.clone(),
            connect_timeout: args.connect_timeout(),
            payload_bytes: args.payload_bytes,
            read_buffer: args.read_buffer,
            polling_fraction: args.polling_fraction,
            stats: Stats::new(steps),
            phase: watch::Sender::new(Phase::Setup),
            rooms: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
            handshakes: Semaphore::new(args.max_inflight),
            errors_logged: AtomicU64::new(0),
        }))
    }

    /// Whether client `index` uses long-polling: spread evenly over indexes.
    pub(crate) fn polling(&self, index: usize) -> bool {
        let f = self.polling_fraction;
        ((index + 1) as f64 * f).floor() > (index as f64 * f).floor()
    }

    pub(crate) fn polling_clients(&self, clients: usize) -> usize {
        (0..clients).filter(|i| self.polling(*i)).count()
    }

    pub(crate) fn joined(&self, room: usize) {
        if let Some(r) = self.rooms.get(room) {
            r.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn left(&self, room: usize) {
        if let Some(r) = self.rooms.get(room) {
            r.fetch_sub(1, Relaxed);
        }
    }

    pub(crate) fn members(&self, room: usize) -> u64 {
        self.rooms.get(room).map_or(0, |r| r.load(Relaxed))
    }

    pub(crate) fn log_error(&self, index: usize, what: &str, err: &anyhow::Error) {
        if self.errors_logged.fetch_add(1, Relaxed) < ERRORS_TO_LOG {
            eprintln!("loadgen: client {index}: {what}: {err:#}");
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Starts `clients` clients at `ramp` per second and waits until every
    /// one has connected (and joined) or failed.
    pub(crate) async fn launch(
        self: &Arc<Self>,
        clients: usize,
        ramp: f64,
        role: impl Fn(usize) -> Role,
    ) -> JoinSet<()> {
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        let mut last_report = started;
        for index in 0..clients {
            let due = started + Duration::from_secs_f64(index as f64 / ramp);
            tokio::time::sleep_until(due.into()).await;
            tasks.spawn(crate::client::run(self.clone(), index, role(index)));
            if last_report.elapsed() >= Duration::from_secs(2) {
                last_report = Instant::now();
                self.progress(started, index + 1);
            }
        }
        // Every client settles within its connect timeout once it holds a
        // handshake permit, so the wait ends when nobody settled for longer
        // than that (or after an hour, whatever happens).
        let stall = self.connect_timeout + Duration::from_secs(5);
        let hard_deadline = Instant::now() + Duration::from_secs(3600);
        let (mut settled, mut last_change) = (self.stats.settled(), Instant::now());
        while settled < clients as u64 && last_change.elapsed() < stall && Instant::now() < hard_deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now_settled = self.stats.settled();
            if now_settled != settled {
                (settled, last_change) = (now_settled, Instant::now());
            }
            if last_report.elapsed() >= Duration::from_secs(2) {
                last_report = Instant::now();
                self.progress(started, clients);
            }
        }
        self.progress(started, clients);
        tasks
    }

    fn progress(&self, started: Instant, launched: usize) {
        eprintln!(
            "loadgen: {:>6.1}s launched {launched} connected {} failed {}",
            started.elapsed().as_secs_f64(),
            self.stats.connected.load(Relaxed),
            self.stats.failed.load(Relaxed),
        );
    }

    /// Tells every client to close, waits a bounded time, aborts the rest.
    pub(crate) async fn shutdown(&self, mut tasks: JoinSet<()>) {
        self.set_phase(Phase::Done);
        let wait = Duration::from_secs(10);
        let _ = tokio::time::timeout(wait, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
    }
}
