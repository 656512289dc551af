//! What the cluster tests share: one cluster at a time, room members that
//! keep what they receive, publishers that record every acknowledgement,
//! the tally of lost and duplicated messages, and the reconnection a
//! `socket.io-client` makes when its gateway dies.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{AckError, Cluster, ClusterOptions, ConnectError, Event, TestClient};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The binary under test; `SB_SWITCHBOARD_BIN` names another (a release
/// build, to tell the server's cost from the test's own).
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// How long an emit waits for its acknowledgement before the test counts it
/// as silently dropped.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One cluster at a time in this test binary (`cargo test` runs tests on
/// threads; nextest runs them one at a time through `.config/nextest.toml`):
/// five processes per cluster on a small machine, and tests that measure
/// recovery times.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// A cluster that holds the one-at-a-time lock until it is dropped (the
/// cluster first: fields drop in order).
pub(crate) struct Harness {
    cluster: Cluster,
    _serial: MutexGuard<'static, ()>,
}

impl Deref for Harness {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// Two routers, three gateways, the binary under test.
pub(crate) fn options() -> ClusterOptions {
    ClusterOptions::new(std::env::var("SB_SWITCHBOARD_BIN").unwrap_or_else(|_| BIN.to_owned()))
}

pub(crate) async fn start(options: ClusterOptions) -> Harness {
    let serial = SERIAL.lock().await;
    Harness { cluster: Cluster::start(options).await, _serial: serial }
}

pub(crate) async fn join(client: &TestClient, room: &str) {
    assert_eq!(client.ack("room:join", json!(room)).await, json!({"ok": true}), "{} joins {room}", client.id());
}

/// `room:message` events of `room` sent by publisher `from`: their `n`.
fn numbers(events: &[Event], room: &str, from: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.name == "room:message" && e.data()["roomId"] == room && e.data()["from"] == from)
        .filter_map(|e| e.data()["n"].as_u64())
        .collect()
}

/// What became of one emit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// `{ok: true}`.
    Acked,
    /// An ack with `{error}`.
    Refused(String),
    /// No ack within [`ACK_TIMEOUT`], or the connection closed first.
    NoAck(AckError),
}

#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) n: u64,
    pub(crate) sent_at: Instant,
    pub(crate) answered_at: Instant,
    pub(crate) outcome: Outcome,
}

/// Everything one publisher emitted to one room.
#[derive(Debug, Clone)]
pub(crate) struct PublishLog {
    pub(crate) room: String,
    pub(crate) from: String,
    pub(crate) sent: Vec<Sent>,
}

impl PublishLog {
    pub(crate) fn acked(&self) -> BTreeSet<u64> {
        self.sent.iter().filter(|s| s.outcome == Outcome::Acked).map(|s| s.n).collect()
    }

    pub(crate) fn refused(&self) -> Vec<&Sent> {
        self.sent.iter().filter(|s| matches!(s.outcome, Outcome::Refused(_))).collect()
    }

    pub(crate) fn unanswered(&self) -> Vec<&Sent> {
        self.sent.iter().filter(|s| matches!(s.outcome, Outcome::NoAck(_))).collect()
    }

    /// Refusals whose reason is not `unavailable`, for messages.
    pub(crate) fn other_refusals(&self) -> Vec<(u64, String)> {
        self.sent
            .iter()
            .filter_map(|s| match &s.outcome {
                Outcome::Refused(reason) if reason != "unavailable" => Some((s.n, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// The longest stretch after `since` without an acknowledged emit: from
    /// `since` (or the ack before, if later) to the next ack. That is how
    /// long broadcasts to the room stopped, whether emits were refused or
    /// held meanwhile. `None` if nothing was acknowledged after `since`.
    pub(crate) fn longest_gap_after(&self, since: Instant) -> Option<Duration> {
        let mut acks: Vec<Instant> =
            self.sent.iter().filter(|s| s.outcome == Outcome::Acked).map(|s| s.answered_at).collect();
        acks.sort();
        let mut previous = since;
        let mut longest = None::<Duration>;
        for at in acks.into_iter().filter(|at| *at > since) {
            let gap = at - previous;
            longest = Some(longest.map_or(gap, |l| l.max(gap)));
            previous = at;
        }
        longest
    }
}

/// A member that emits `room:message {roomId, from, n}` to its room every
/// `every` (each after the previous one's answer) until stopped, recording
/// each answer.
pub(crate) struct Publisher {
    task: JoinHandle<(Member, PublishLog)>,
    last_ack: watch::Receiver<Option<Instant>>,
}

impl Publisher {
    pub(crate) fn start(member: Member, every: Duration, stop: CancellationToken) -> Publisher {
        let (last_ack_tx, last_ack) = watch::channel(None);
        let mut log = PublishLog { room: member.room.clone(), from: member.user.clone(), sent: Vec::new() };
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0.. {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let payload = json!({"roomId": log.room, "from": log.from, "n": n});
                let sent_at = Instant::now();
                let answer = member.client.try_emit_with_ack("room:message", &[payload], ACK_TIMEOUT).await;
                let outcome = match answer {
                    Ok(args) => match args.first() {
                        Some(ack) if ack == &json!({"ok": true}) => Outcome::Acked,
                        Some(ack) => {
                            Outcome::Refused(ack["error"].as_str().map_or_else(|| ack.to_string(), str::to_owned))
                        }
                        None => Outcome::Refused("an empty ack".into()),
                    },
                    Err(error) => Outcome::NoAck(error),
                };
                let answered_at = Instant::now();
                if outcome == Outcome::Acked {
                    last_ack_tx.send_replace(Some(answered_at));
                }
                log.sent.push(Sent { n, sent_at, answered_at, outcome });
            }
            (member, log)
        });
        Publisher { task, last_ack }
    }

    /// Stops waiting for the task: its member (with the client) and its log.
    /// The caller cancels the stop token first.
    pub(crate) async fn finish(self) -> (Member, PublishLog) {
        joined(self.task).await
    }
}

/// Stops every publisher: their members (with the clients) and their logs.
pub(crate) async fn stop_publishers(
    publishers: Vec<Publisher>,
    stop: &CancellationToken,
) -> (Vec<Member>, Vec<PublishLog>) {
    stop.cancel();
    let mut members = Vec::new();
    let mut logs = Vec::new();
    for publisher in publishers {
        let (member, log) = publisher.finish().await;
        members.push(member);
        logs.push(log);
    }
    (members, logs)
}

/// Waits (at most `within` after `since`) until every publisher had an emit
/// acknowledged after `since`; how long after `since` that was (to the
/// 20 ms of the polling), or `None` when time ran out.
pub(crate) async fn acked_after(publishers: &[Publisher], since: Instant, within: Duration) -> Option<Duration> {
    let deadline = since + within;
    loop {
        if publishers.iter().all(|p| p.last_ack.borrow().is_some_and(|at| at > since)) {
            return Some(since.elapsed());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The task's result, or its panic (with its message) in this test.
pub(crate) async fn joined<T>(task: JoinHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("task: {error}"),
    }
}

/// Lost, duplicated and reordered acknowledged messages at one member.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) lost: usize,
    pub(crate) dup: usize,
    pub(crate) reordered: usize,
    /// Messages whose emit was refused or unanswered, delivered anyway.
    pub(crate) unacked_delivered: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.lost += other.lost;
        self.dup += other.dup;
        self.reordered += other.reordered;
        self.unacked_delivered += other.unacked_delivered;
    }
}

/// A room member and every event it received so far (across reconnections).
pub(crate) struct Member {
    pub(crate) user: String,
    pub(crate) room: String,
    pub(crate) gateway: usize,
    pub(crate) client: TestClient,
    pub(crate) seen: Vec<Event>,
    /// Where in `seen` each later connection's events start (after a
    /// reconnection), for failure messages.
    pub(crate) reconnected_at: Vec<usize>,
}

impl Member {
    pub(crate) async fn connect(cluster: &Cluster, gateway: usize, user: &str, room: &str) -> Member {
        let client = cluster.connect(gateway, "/", user).await;
        join(&client, room).await;
        let (user, room) = (user.to_owned(), room.to_owned());
        Member { user, room, gateway, client, seen: Vec::new(), reconnected_at: Vec::new() }
    }

    /// Moves what the client received into `seen`.
    pub(crate) async fn drain(&mut self, wait: Duration) {
        self.seen.extend(self.client.collect("room:message", wait).await);
    }

    /// True when every acknowledged message of `logs` for this member's room
    /// is in `seen`.
    fn complete(&self, logs: &[PublishLog]) -> bool {
        logs.iter().filter(|l| l.room == self.room).all(|log| {
            let got: BTreeSet<u64> = numbers(&self.seen, &log.room, &log.from).into_iter().collect();
            log.acked().is_subset(&got)
        })
    }

    pub(crate) fn tally(&self, logs: &[PublishLog]) -> Tally {
        let mut tally = Tally::default();
        for log in logs.iter().filter(|l| l.room == self.room) {
            let got = numbers(&self.seen, &log.room, &log.from);
            let mut counts = BTreeMap::<u64, usize>::new();
            for n in &got {
                *counts.entry(*n).or_default() += 1;
            }
            let acked = log.acked();
            tally.lost += acked.iter().filter(|n| !counts.contains_key(n)).count();
            tally.dup += counts.values().map(|c| c - 1).sum::<usize>();
            tally.reordered += got.windows(2).filter(|w| w[1] < w[0]).count();
            tally.unacked_delivered += counts.keys().filter(|n| !acked.contains(n)).count();
        }
        tally
    }

    /// A line for failure messages: what is missing or doubled.
    pub(crate) fn describe(&self, logs: &[PublishLog]) -> String {
        let mut out = format!("{} (gateway {}, room {}):", self.user, self.gateway + 1, self.room);
        for log in logs.iter().filter(|l| l.room == self.room) {
            let got = numbers(&self.seen, &log.room, &log.from);
            let set: BTreeSet<u64> = got.iter().copied().collect();
            let missing: Vec<u64> = log.acked().difference(&set).copied().collect();
            out.push_str(&format!(" from {}: {} received, missing {missing:?}", log.from, got.len()));
            if set.len() != got.len() {
                out.push_str(&format!("; doubled (n, connection, offset): {:?}", self.doubled(log)));
            }
            if got.windows(2).any(|w| w[1] < w[0]) {
                out.push_str(&format!("; received in this order: {got:?}"));
            }
        }
        out
    }

    /// Each copy of a message received more than once: its `n`, the
    /// connection it came on (0 = the first, 1 = after the first
    /// reconnection, ...) and its offset argument.
    fn doubled(&self, log: &PublishLog) -> Vec<(u64, usize, String)> {
        let copies: Vec<(u64, usize, String)> = self
            .seen
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == "room:message" && e.data()["roomId"] == log.room && e.data()["from"] == log.from)
            .filter_map(|(i, e)| {
                let n = e.data()["n"].as_u64()?;
                let connection = self.reconnected_at.iter().filter(|start| **start <= i).count();
                let offset = e.args.get(1).map_or_else(|| "none".to_owned(), Value::to_string);
                Some((n, connection, offset))
            })
            .collect();
        copies.iter().filter(|(n, ..)| copies.iter().filter(|(m, ..)| m == n).count() > 1).cloned().collect()
    }
}

/// Waits (at most `within`, for all together) until every member has every
/// acknowledged message of its room, then a little longer for duplicates.
pub(crate) async fn settle(members: &mut [Member], logs: &[PublishLog], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        for member in members.iter_mut() {
            member.drain(Duration::from_millis(10)).await;
        }
        if members.iter().all(|m| m.complete(logs)) || Instant::now() >= deadline {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for member in members.iter_mut() {
        member.drain(Duration::ZERO).await;
    }
}

/// The sum of the tallies of `members`, and the failure message.
pub(crate) fn tally_all<'a>(members: impl IntoIterator<Item = &'a Member>, logs: &[PublishLog]) -> (Tally, String) {
    let mut total = Tally::default();
    let mut details = String::new();
    for member in members {
        let tally = member.tally(logs);
        if tally != Tally::default() {
            details.push_str(&format!("\n  {tally:?} {}", member.describe(logs)));
        }
        total += tally;
    }
    (total, details)
}

/// How a member came back after its gateway died.
pub(crate) struct Reconnection {
    pub(crate) member: Member,
    /// From the kill to the CONNECT reply.
    pub(crate) took: Duration,
    /// `socket.recovered` of socket.io-client: the server kept our pid.
    pub(crate) recovered: bool,
    pub(crate) same_id: bool,
    /// Attempts that failed before (no answer, or an error).
    pub(crate) failed_attempts: usize,
}

/// What `socket.io-client` does when its transport closes: try again, with
/// `{token, pid, offset}` in the CONNECT auth, here on the other gateways in
/// turn (`candidates`, their addresses), every 100 ms, for at most 10 s.
/// `since` is when the gateway was killed.
pub(crate) fn reconnect_elsewhere(
    member: Member,
    token: String,
    candidates: Vec<(usize, std::net::SocketAddr)>,
    since: Instant,
) -> JoinHandle<Reconnection> {
    reconnect_elsewhere_within(member, token, candidates, since, Duration::from_secs(5), Duration::from_secs(10))
}

/// [`reconnect_elsewhere`] that waits at most `close` for the transport to
/// close and `retry` for a gateway to take the reconnection.
pub(crate) fn reconnect_elsewhere_within(
    mut member: Member,
    token: String,
    candidates: Vec<(usize, std::net::SocketAddr)>,
    since: Instant,
    close: Duration,
    retry: Duration,
) -> JoinHandle<Reconnection> {
    tokio::spawn(async move {
        let reason = member.client.wait_disconnect_within(close).await;
        assert_eq!(reason, "transport close", "{}: its gateway was killed", member.user);
        member.drain(Duration::ZERO).await;
        let old_id = member.client.id().to_owned();
        let pid = member.client.pid().unwrap_or_else(|| panic!("{}: no pid (recovery is on by default)", member.user));
        let offset = member.client.last_offset();
        let auth = json!({"token": token, "pid": pid, "offset": offset.map_or(Value::Null, Value::String)});
        let deadline = Instant::now() + retry;
        let mut failed_attempts = 0;
        for (gateway, addr) in candidates.iter().cycle() {
            match TestClient::connect(*addr, "/", auth.clone()).await {
                Ok(client) => {
                    let took = since.elapsed();
                    member.reconnected_at.push(member.seen.len());
                    let recovered = client.pid().as_deref() == Some(pid.as_str());
                    let same_id = client.id() == old_id;
                    member.client = client;
                    member.gateway = *gateway;
                    return Reconnection { member, took, recovered, same_id, failed_attempts };
                }
                Err(ConnectError::Refused { message, data }) => {
                    panic!("{}: reconnection refused by gateway {gateway}: {message} {data}", member.user);
                }
                Err(error) => {
                    failed_attempts += 1;
                    assert!(
                        Instant::now() < deadline,
                        "{}: no gateway took the reconnection within {retry:?}; last: {error:?}",
                        member.user
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        unreachable!("candidates is not empty")
    })
}

/// Milliseconds, for the CLUSTER-FAULT lines.
pub(crate) fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

/// Every failed check of a test, reported together at the end, so that one
/// run shows all that went wrong (a lost message and a readiness that never
/// turned, say), not only the first.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<String>);

impl Problems {
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    /// Panics with every problem, one per line.
    pub(crate) fn finish(self) {
        assert!(self.0.is_empty(), "{} problem(s):\n- {}", self.0.len(), self.0.join("\n- "));
    }
}

/// Polls `/readyz` of every gateway together until each is `ready` (or not),
/// for at most `within`; whether each got there.
pub(crate) async fn gateways_reach(cluster: &Cluster, ready: bool, within: Duration) -> Vec<bool> {
    let deadline = Instant::now() + within;
    let count = cluster.count(switchboard_testkit::Role::Gateway);
    let mut reached = vec![false; count];
    loop {
        for (i, done) in reached.iter_mut().enumerate() {
            if !*done {
                *done = cluster.is_ready(switchboard_testkit::Role::Gateway, i).await == ready;
            }
        }
        if reached.iter().all(|d| *d) || Instant::now() >= deadline {
            return reached;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
