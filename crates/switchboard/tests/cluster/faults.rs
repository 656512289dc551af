//! Faults while rooms exchange acknowledged messages (docs/cluster.md,
//! "Failures"): `kill -9` of a gateway, `kill -9` of a router, Redis stopped
//! for 10 s. Each prints one `CLUSTER-FAULT <fault> key=value ...` line with
//! what it measured (run with `--nocapture` to see it under `cargo test`;
//! nextest shows it for failures, or with `--no-capture`).
//!
//! "Acknowledged" means an emit answered `{ok: true}`: the cluster took it,
//! so every member of the room must get it, once, in order. An emit answered
//! with an error may not be delivered; an emit with no answer at all within
//! 5 s is a silent drop, which the cluster must never do.

use std::time::{Duration, Instant};

use switchboard_testkit::Role;
use tokio_util::sync::CancellationToken;

use crate::support::{
    self, Member, Problems, PublishLog, Publisher, Tally, gateways_reach, joined, ms, reconnect_elsewhere, tally_all,
};

/// Sums over the publishers' logs: acknowledged, refused, unanswered.
fn outcomes(logs: &[PublishLog]) -> (usize, usize, usize) {
    logs.iter()
        .fold((0, 0, 0), |(a, r, u), log| (a + log.acked().len(), r + log.refused().len(), u + log.unanswered().len()))
}

/// Every emit was answered, and refusals say `unavailable` (the ack object of
/// the chat with the cluster's reason).
fn no_silent_drop(problems: &mut Problems, logs: &[PublishLog]) {
    for log in logs {
        let unanswered: Vec<_> = log.unanswered().iter().map(|s| (s.n, s.outcome.clone())).collect();
        problems.check(unanswered.is_empty(), || {
            format!("{} in {}: emits without an ack within 5 s: {unanswered:?}", log.from, log.room)
        });
        let other = log.other_refusals();
        problems.check(other.is_empty(), || {
            format!("{} in {}: refusals other than unavailable: {other:?}", log.from, log.room)
        });
    }
}

/// No acknowledged message lost, doubled or out of order at any member.
fn no_loss(problems: &mut Problems, tally: Tally, details: &str) {
    problems.check((tally.lost, tally.dup, tally.reordered) == (0, 0, 0), || {
        format!(
            "acknowledged messages lost {}, duplicated {}, out of order {} at the members:{details}",
            tally.lost, tally.dup, tally.reordered
        )
    });
}

/// `rooms` rooms, each with its publisher on one gateway (emitting every
/// `every` until `stop`) and a member on each of the other two.
async fn busy_rooms(
    cluster: &switchboard_testkit::Cluster,
    rooms: usize,
    every: Duration,
    stop: &CancellationToken,
) -> (Vec<Publisher>, Vec<Member>) {
    let (mut publishers, mut members) = (Vec::new(), Vec::new());
    for r in 0..rooms {
        let room = format!("room-{r}");
        let publisher = Member::connect(cluster, r % 3, &format!("pub-{r}"), &room).await;
        for k in 1..3 {
            members.push(Member::connect(cluster, (r + k) % 3, &format!("m{r}-{k}"), &room).await);
        }
        publishers.push(Publisher::start(publisher, every, stop.clone()));
    }
    (publishers, members)
}

/// A gateway dies (SIGKILL) while two rooms with members on all three
/// gateways exchange messages. Its clients do what socket.io-client does:
/// reconnect (here to the other gateways, as a load balancer would send
/// them) with their pid and last offset. Each must be back within 5 s,
/// recovered (same id), and every member, recovered or not, must have every
/// acknowledged message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_kill() {
    const KILLED: usize = 1;
    let mut cluster = support::start(support::options()).await;
    let stop = CancellationToken::new();
    let (mut publishers, mut doomed, mut others) = (Vec::new(), Vec::new(), Vec::new());
    // Room r: its publisher on gateway 1 or 3, two members on gateway 2 (the
    // one killed), one on the third.
    for (r, (publisher_gw, far_gw)) in [(0, 2), (2, 0)].into_iter().enumerate() {
        let room = format!("room-{r}");
        let publisher = Member::connect(&cluster, publisher_gw, &format!("pub-{r}"), &room).await;
        for k in 0..2 {
            doomed.push(Member::connect(&cluster, KILLED, &format!("m{r}-{k}"), &room).await);
        }
        others.push(Member::connect(&cluster, far_gw, &format!("far-{r}"), &room).await);
        publishers.push(publisher);
    }
    let publishers: Vec<Publisher> =
        publishers.into_iter().map(|p| Publisher::start(p, Duration::from_millis(30), stop.clone())).collect();

    // Traffic before the kill, longer than the 1 s in which a gateway stores
    // the positions of its sockets.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for member in &mut doomed {
        member.drain(Duration::ZERO).await;
        assert!(!member.seen.is_empty(), "{} received nothing before the kill", member.user);
    }

    let killed_at = Instant::now();
    cluster.kill(Role::Gateway, KILLED);
    let survivors = [(0, cluster.gateway_addr(0)), (2, cluster.gateway_addr(2))];
    let mut reconnecting = Vec::new();
    for (k, member) in doomed.into_iter().enumerate() {
        let mut candidates = survivors.to_vec();
        if k % 2 == 1 {
            candidates.reverse();
        }
        let token = cluster.token(&member.user);
        reconnecting.push(reconnect_elsewhere(member, token, candidates, killed_at));
    }
    let mut reconnections = Vec::new();
    for task in reconnecting {
        reconnections.push(joined(task).await);
    }
    let back_at = Instant::now();
    // Live traffic to the recovered sockets, then the end.
    let live = support::acked_after(&publishers, back_at, Duration::from_secs(5)).await;
    assert!(live.is_some(), "no acknowledged message after the reconnections");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (publisher_members, logs) = support::stop_publishers(publishers, &stop).await;

    let slowest = reconnections.iter().map(|r| r.took).max().unwrap_or_default();
    let recovered = reconnections.iter().filter(|r| r.recovered && r.same_id).count();
    let summary: Vec<String> = reconnections
        .iter()
        .map(|r| {
            format!(
                "{} -> gateway {}: {} ms, recovered {}",
                r.member.user,
                r.member.gateway + 1,
                ms(r.took),
                r.recovered
            )
        })
        .collect();
    let mut members: Vec<Member> = publisher_members;
    members.extend(others);
    members.extend(reconnections.into_iter().map(|r| r.member));
    support::settle(&mut members, &logs, Duration::from_secs(5)).await;
    let (tally, details) = tally_all(&members, &logs);
    let (acked, refused, unanswered) = outcomes(&logs);
    eprintln!(
        "CLUSTER-FAULT gateway-kill reconnect_ms={} recovered={recovered}/{} lost={} dup={} reordered={} acked={acked} refused={refused} unanswered={unanswered}",
        ms(slowest),
        summary.len(),
        tally.lost,
        tally.dup,
        tally.reordered,
    );

    let mut problems = Problems::default();
    no_silent_drop(&mut problems, &logs);
    problems.check(slowest < Duration::from_secs(5), || format!("a reconnection took {slowest:?}: {summary:?}"));
    problems.check(recovered == summary.len(), || {
        format!("not every socket of the killed gateway recovered with its id: {summary:?}")
    });
    no_loss(&mut problems, tally, &details);
    problems.finish();
}

/// A router dies (SIGKILL) while six rooms, spread over both routers, each
/// with members on three gateways, exchange messages. Its rooms get a new
/// owner within about 2 s (lease 1.5 s, membership read every 250 ms);
/// emits meanwhile may be refused (`unavailable`), never left unanswered,
/// and no acknowledged message is lost or doubled at any member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_kill() {
    const ROOMS: usize = 6;
    let mut cluster = support::start(support::options()).await;
    let stop = CancellationToken::new();
    let (publishers, mut members) = busy_rooms(&cluster, ROOMS, Duration::from_millis(50), &stop).await;

    // Traffic for a second; then the router that handled more publishes dies
    // (so that it owned rooms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut handled = Vec::new();
    for i in 0..cluster.count(Role::Router) {
        handled.push(cluster.metrics(Role::Router, i).await.value("switchboard_router_publishes_total"));
    }
    let victim = if handled[1] > handled[0] { 1 } else { 0 };
    let victim_id = cluster.node_id(Role::Router, victim).to_owned();
    assert!(handled[victim] > 0.0, "no router counted a publish: switchboard_router_publishes_total {handled:?}");

    let killed_at = Instant::now();
    cluster.kill(Role::Router, victim);
    // Until every room had an acknowledged emit after the kill, then a bit more.
    let all_back = support::acked_after(&publishers, killed_at, Duration::from_secs(8)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (publisher_members, logs) = support::stop_publishers(publishers, &stop).await;
    members.extend(publisher_members);
    support::settle(&mut members, &logs, Duration::from_secs(5)).await;

    let gaps: Vec<(String, Option<Duration>)> =
        logs.iter().map(|l| (l.room.clone(), l.longest_gap_after(killed_at))).collect();
    let resume = gaps.iter().filter_map(|(_, g)| *g).max().unwrap_or_default();
    let (tally, details) = tally_all(&members, &logs);
    let (acked, refused, unanswered) = outcomes(&logs);
    eprintln!(
        "CLUSTER-FAULT router-kill victim={victim_id} resume_ms={} all_rooms_back_ms={} refused={refused} unanswered={unanswered} lost={} dup={} reordered={} acked={acked}",
        ms(resume),
        all_back.map_or_else(|| "never".to_owned(), |d| ms(d).to_string()),
        tally.lost,
        tally.dup,
        tally.reordered,
    );

    let mut problems = Problems::default();
    no_silent_drop(&mut problems, &logs);
    problems.check(gaps.iter().all(|(_, g)| g.is_some()), || {
        format!("rooms without an acknowledged message after the kill: {gaps:?}")
    });
    problems.check(resume <= Duration::from_secs(3), || {
        format!("broadcasts stopped for {resume:?} after {victim_id} died (design: rooms re-owned within 2 s); per room: {gaps:?}")
    });
    no_loss(&mut problems, tally, &details);
    problems.finish();
}

/// Redis stops for 10 s (SIGKILL: restarted empty, so the streams, history
/// and leases are gone) while three rooms exchange messages. What the
/// clients see: they stay connected; emits during the outage are answered
/// with `{error: "unavailable"}` within their timeout, never dropped
/// silently; within 5 s of Redis being back, emits are acknowledged and
/// delivered again, without any client doing anything; every member has
/// every acknowledged message (before, during and after) once, in order.
/// What was stored before the outage is gone, which the test does not look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stop() {
    const ROOMS: usize = 3;
    const OUTAGE: Duration = Duration::from_secs(10);
    let mut cluster = support::start(support::options()).await;
    let stop = CancellationToken::new();
    let (publishers, mut members) = busy_rooms(&cluster, ROOMS, Duration::from_millis(100), &stop).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopped_at = Instant::now();
    cluster.redis().stop();
    // Readiness turns false (a gateway needs Redis to route).
    let not_ready = gateways_reach(&cluster, false, Duration::from_secs(5)).await;
    tokio::time::sleep(OUTAGE.saturating_sub(stopped_at.elapsed())).await;

    let restarted_at = Instant::now();
    cluster.redis().restart();
    let ready_again = gateways_reach(&cluster, true, Duration::from_secs(5)).await;
    let all_back = support::acked_after(&publishers, restarted_at, Duration::from_secs(8)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (publisher_members, logs) = support::stop_publishers(publishers, &stop).await;
    members.extend(publisher_members);
    support::settle(&mut members, &logs, Duration::from_secs(5)).await;

    let in_gap = |at: Instant| at > stopped_at + Duration::from_millis(500) && at < restarted_at;
    let refused_in_gap = logs.iter().flat_map(|l| l.refused()).filter(|s| in_gap(s.sent_at)).count();
    let acked_in_gap =
        logs.iter().flat_map(|l| &l.sent).filter(|s| s.outcome == support::Outcome::Acked && in_gap(s.sent_at)).count();
    let resume = logs.iter().filter_map(|l| l.longest_gap_after(restarted_at)).max().unwrap_or_default();
    let (tally, details) = tally_all(&members, &logs);
    let (acked, refused, unanswered) = outcomes(&logs);
    eprintln!(
        "CLUSTER-FAULT redis-stop outage_ms={} resume_ms={} all_rooms_back_ms={} refused={refused} refused_in_gap={refused_in_gap} acked_in_gap={acked_in_gap} unanswered={unanswered} lost={} dup={} reordered={} acked={acked} not_ready_during={not_ready:?} ready_after={ready_again:?}",
        ms(restarted_at - stopped_at),
        ms(resume),
        all_back.map_or_else(|| "never".to_owned(), |d| ms(d).to_string()),
        tally.lost,
        tally.dup,
        tally.reordered,
    );

    let mut problems = Problems::default();
    no_silent_drop(&mut problems, &logs);
    problems.check(refused_in_gap > 0, || "no emit was refused while Redis was down".into());
    problems.check(not_ready.iter().all(|n| *n), || {
        format!("gateways still ready 5 s into the Redis outage (per gateway, turned not ready: {not_ready:?})")
    });
    problems.check(all_back.is_some_and(|back| back < Duration::from_secs(5)), || {
        format!(
            "service did not return within 5 s of the Redis restart (every room acknowledged again after: {all_back:?})"
        )
    });
    problems.check(ready_again.iter().all(|r| *r), || {
        format!("gateways not ready 5 s after Redis restarted: {ready_again:?}")
    });
    no_loss(&mut problems, tally, &details);
    problems.finish();
}
