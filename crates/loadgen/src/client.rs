//! One simulated Socket.IO client: connect (Engine.IO open, CONNECT with the
//! token, optional `room:join` with its ack awaited), then a session loop
//! that answers pings, records `room:message` latencies, and publishes at
//! the phase's rate when it is a publisher. Everything else the server sends
//! is ignored.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::engineio::PONG;
use crate::fleet::{Fleet, Phase, Role};
use crate::socketio::{self, Inbound};
use crate::stats::{Deliveries, now_us};
use crate::transport::Conn;

/// Most messages one publisher sends in one wake-up; beyond it the
/// publisher falls behind its rate, which the report shows as fewer sent.
const MAX_BATCH: u64 = 256;
/// Packets skipped while waiting for a CONNECT or join ack.
const MAX_SETUP_PACKETS: usize = 10_000;

pub(crate) async fn run(fleet: Arc<Fleet>, index: usize, role: Role) {
    let conn = {
        let Ok(_permit) = fleet.handshakes.acquire().await else {
            return;
        };
        // Boxed: the handshake's state is large and only needed briefly; the
        // task keeps just the session's state for its lifetime.
        let mut stage = "open";
        let result = timeout(fleet.connect_timeout, Box::pin(setup(&fleet, index, role, &mut stage))).await;
        match result {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                fleet.log_error(index, stage, &e);
                fleet.stats.failed.fetch_add(1, Relaxed);
                return;
            }
            Err(_) => {
                fleet.log_error(index, stage, &anyhow::anyhow!("timed out"));
                fleet.stats.failed.fetch_add(1, Relaxed);
                return;
            }
        }
    };
    session(&fleet, index, role, conn).await;
}

/// Connects, and joins the client's room; counts the connect latency.
/// `stage` names the step under way, for the error message.
async fn setup(fleet: &Fleet, index: usize, role: Role, stage: &mut &'static str) -> anyhow::Result<Conn> {
    let ns = fleet.namespace.as_str();
    let token = fleet.tokens.for_client(index)?;
    let started = Instant::now();
    let polling = fleet.polling(index);
    *stage = if polling { "polling open" } else { "websocket open" };
    let (mut conn, _open) = Conn::open(&fleet.target, index, polling, fleet.read_buffer).await?;
    *stage = "CONNECT";
    conn.send(socketio::connect(ns, token.as_deref())).await?;
    wait_for(&mut conn, ns, |p| match p {
        Inbound::Connected => Ok(true),
        Inbound::ConnectError(e) => bail!("CONNECT_ERROR {e:.120}"),
        _ => Ok(false),
    })
    .await?;
    let connect_us = started.elapsed().as_micros() as u64;
    if let Some(room) = role.room {
        const JOIN_ACK: u64 = 1;
        *stage = "room:join";
        conn.send(socketio::room_join(ns, JOIN_ACK, room)).await?;
        wait_for(&mut conn, ns, |p| Ok(*p == Inbound::Ack(JOIN_ACK))).await?;
        fleet.joined(room);
    }
    fleet.stats.record_connect(connect_us);
    Ok(conn)
}

/// Reads packets until `done` says so, answering pings on the way.
async fn wait_for(
    conn: &mut Conn,
    ns: &str,
    done: impl Fn(&Inbound<'_>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    for _ in 0..MAX_SETUP_PACKETS {
        let Some(packet) = conn.recv().await? else {
            bail!("closed by the server");
        };
        let inbound = socketio::classify(&packet, ns);
        match inbound {
            Inbound::Ping => conn.send(PONG.into()).await?,
            Inbound::Close | Inbound::Disconnected => bail!("closed by the server"),
            _ => {}
        }
        if done(&inbound)? {
            return Ok(());
        }
    }
    bail!("no answer in {MAX_SETUP_PACKETS} packets")
}

/// The next phase, and the receiver to wait for the one after; `None` when
/// the scenario is gone.
async fn next_phase(mut rx: watch::Receiver<Phase>) -> (Option<Phase>, watch::Receiver<Phase>) {
    let phase = match rx.changed().await {
        Ok(()) => Some(*rx.borrow_and_update()),
        Err(_) => None,
    };
    (phase, rx)
}

/// Publishing state for one step.
struct Publisher {
    rate: f64,
    start: Instant,
    sent: u64,
}

impl Publisher {
    fn new(rate: f64, index: usize) -> Self {
        // Spread publishers over one period so they do not fire together.
        let phase = (index as f64 * 0.618_033_988_75).fract();
        let offset = Duration::from_secs_f64(phase * (1.0 / rate).min(1.0));
        Self { rate, start: Instant::now() + offset, sent: 0 }
    }

    fn next_due(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.sent as f64 / self.rate)
    }

    /// How many messages are due now, marked as sent.
    fn take_due(&mut self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        let total = (now - self.start).as_secs_f64() * self.rate;
        let n = (total as u64 + 1).saturating_sub(self.sent).min(MAX_BATCH);
        self.sent += n;
        n
    }
}

async fn session(fleet: &Fleet, index: usize, role: Role, mut conn: Conn) {
    let ns = fleet.namespace.as_str();
    let stats = &fleet.stats;
    // Kept across iterations: re-creating `changed()` every time registers
    // and unregisters a waiter on every wake-up.
    let next = next_phase(fleet.phase.subscribe());
    tokio::pin!(next);
    let mut publisher: Option<Publisher> = None;
    let mut seq = 0u64;
    // Far enough to never fire unless reset by a publisher.
    let timer = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(timer);
    let lost = loop {
        // Biased: a phase change is seen before one more publishing batch.
        tokio::select! {
            biased;
            (phase, rx) = &mut next => {
                next.set(next_phase(rx));
                let Some(phase) = phase else {
                    break false;
                };
                publisher = match phase {
                    Phase::Done => break false,
                    Phase::Publish { rate } if role.publisher && rate > 0.0 => {
                        let p = Publisher::new(rate, index);
                        timer.as_mut().reset(p.next_due().into());
                        Some(p)
                    }
                    _ => None,
                };
            }
            () = &mut timer, if publisher.is_some() => {
                let (Some(p), Some(room)) = (publisher.as_mut(), role.room) else {
                    publisher = None;
                    continue;
                };
                let now = Instant::now();
                let n = p.take_due(now);
                let sent_at = now_us();
                let batch: Vec<String> = (0..n)
                    .map(|_| {
                        seq += 1;
                        socketio::room_message(ns, room, sent_at, seq, index, fleet.payload_bytes)
                    })
                    .collect();
                stats.record_sent(sent_at, n, fleet.members(room));
                // When behind, still let the receive branch run between batches.
                let next = p.next_due().max(now + Duration::from_micros(500));
                timer.as_mut().reset(next.into());
                if let Err(e) = conn.send_all(batch).await {
                    fleet.log_error(index, "publish", &e);
                    break true;
                }
            }
            packet = conn.recv() => {
                // Whatever else already arrived is handled in the same wake-up,
                // with one clock read and one histogram lock for the lot.
                let mut batch = Deliveries::default();
                let mut next = Some(packet);
                let mut end = false;
                for _ in 0..Deliveries::CAPACITY {
                    let packet = match next.take() {
                        Some(p) => p,
                        None => match conn.recv().now_or_never() {
                            Some(p) => p,
                            None => break,
                        },
                    };
                    let packet = match packet {
                        Ok(Some(packet)) => packet,
                        Ok(None) => {
                            end = true;
                            break;
                        }
                        Err(e) => {
                            fleet.log_error(index, "receive", &e);
                            end = true;
                            break;
                        }
                    };
                    match socketio::classify(&packet, ns) {
                        Inbound::RoomMessage(sent_at) => batch.push(sent_at),
                        Inbound::Ping => {
                            if let Err(e) = conn.send(PONG.into()).await {
                                fleet.log_error(index, "pong", &e);
                                end = true;
                                break;
                            }
                        }
                        Inbound::Close | Inbound::Disconnected => {
                            end = true;
                            break;
                        }
                        _ => {}
                    }
                }
                stats.record_deliveries(index, &batch, now_us());
                if end {
                    break true;
                }
            }
        }
    };
    if lost {
        stats.lost.fetch_add(1, Relaxed);
        if let Some(room) = role.room {
            fleet.left(room);
        }
    }
    let _ = timeout(Duration::from_secs(1), conn.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_keeps_its_rate() {
        let mut p = Publisher::new(100.0, 0);
        p.start = Instant::now() - Duration::from_millis(1000);
        // 1 s at 100/s: the message at t=0 plus 100 more are due.
        assert_eq!(p.take_due(Instant::now()), 101);
        assert_eq!(p.take_due(Instant::now()), 0);
        assert!(p.next_due() > Instant::now());
        let mut fast = Publisher::new(1e6, 0);
        fast.start = Instant::now() - Duration::from_secs(1);
        assert_eq!(fast.take_due(Instant::now()), MAX_BATCH);
    }
}
