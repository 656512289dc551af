//! [`Membership`]: a node's lease in a lease set, and the live set as this
//! process sees it.
//!
//! Routers register in `sb:routers` and gateways in `sb:gateways`, as
//! `<id>|<address>` with their lease expiry as score (docs/cluster.md). A
//! registered node renews every `renew_every` with a lease of `ttl`; every
//! node reads the live set every `poll_every` and publishes it, sorted by
//! id, on a `tokio::sync::watch` channel, so that a dead node is gone from
//! every view within `ttl + poll_every`. A clean exit removes the lease at
//! once. A router also watches `sb:gateways` without registering in it
//! ([`Membership::observe`]), to forget a gateway whose lease ended.
//!
//! While the broker is unreachable the view stays as it was: nothing can be
//! published then anyway, and every other process is as blind. When it is
//! back, or when it restarted between two reads, the set may have lost
//! leases (a restarted Redis keeps nothing) and refills only as each node
//! renews. Taken at its word, that would look like every node leaving at
//! once: every room would move, and a router would forget every gateway
//! and stop delivering to it. So for one `ttl` (by when every live node has
//! renewed) after a failed read, or after the set's *epoch* changed, the
//! view is what it had plus what the broker says. The epoch is a key beside
//! the set (`<set>:epoch`, a random value set once by whoever finds it
//! missing), read after the members on every poll: a broker that lost the
//! leases lost it too.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use switchboard_broker::Broker;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::LeaseConfig;
use crate::sync::lock;
use crate::{Member, NodeId, RouterError};

/// The lease set of router replicas.
pub const ROUTERS: &str = "sb:routers";
/// The lease set of gateways.
pub const GATEWAYS: &str = "sb:gateways";

/// The live members of a lease set: sorted by id, one per id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSet {
    members: Vec<Member>,
}

impl LiveSet {
    /// A live set of `members`, sorted by id; of two members with one id
    /// (a node that came back on another address while its old lease
    /// runs), the larger address is kept, the same one in every process.
    pub fn new(mut members: Vec<Member>) -> LiveSet {
        members.sort_unstable_by(|a, b| a.id.cmp(&b.id).then_with(|| b.address.cmp(&a.address)));
        members.dedup_by(|later, first| later.id == first.id);
        LiveSet { members }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The ids, sorted: what [`owner`](crate::ownership::owner) ranks.
    pub fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.members.iter().map(|member| &member.id)
    }

    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.binary_search_by(|member| member.id.as_str().cmp(id)).ok().map(|index| &self.members[index])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn union(&self, other: &LiveSet) -> LiveSet {
        LiveSet::new(self.members.iter().chain(&other.members).cloned().collect())
    }
}

/// One lease set: this node's lease in it (if it registers) and the view of
/// who is live.
pub struct Membership {
    broker: Arc<dyn Broker>,
    set: String,
    own: Option<Member>,
    config: LeaseConfig,
    live: watch::Sender<LiveSet>,
    health: Mutex<Health>,
}

/// What the last broker calls said, for settling after an outage and for
/// logging a failure once rather than four times a second.
#[derive(Debug, Default)]
struct Health {
    poll_failed: bool,
    renew_failed: bool,
    /// When this node's lease was last renewed.
    renewed_at: Option<Instant>,
    /// The set's epoch at the last read.
    epoch: Option<Bytes>,
    /// Until then the view keeps the members it had (see the module docs).
    settle_until: Option<Instant>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("set", &self.set).field("own", &self.own).finish_non_exhaustive()
    }
}

impl Membership {
    /// A node that holds a lease in `set` as `own`.
    pub fn register(broker: Arc<dyn Broker>, set: &str, own: Member, config: LeaseConfig) -> Membership {
        Self::build(broker, set, Some(own), config)
    }

    /// A watcher of `set` that holds no lease in it.
    pub fn observe(broker: Arc<dyn Broker>, set: &str, config: LeaseConfig) -> Membership {
        Self::build(broker, set, None, config)
    }

    fn build(broker: Arc<dyn Broker>, set: &str, own: Option<Member>, config: LeaseConfig) -> Membership {
        let (live, _) = watch::channel(LiveSet::default());
        Membership { broker, set: set.to_owned(), own, config, live, health: Mutex::new(Health::default()) }
    }

    /// The live set now and at every change.
    pub fn subscribe(&self) -> watch::Receiver<LiveSet> {
        self.live.subscribe()
    }

    /// The live set now.
    pub fn live(&self) -> LiveSet {
        self.live.borrow().clone()
    }

    /// Reads the live set now without copying it; `read` must be quick (it
    /// holds the watch channel's lock).
    pub fn with_live<T>(&self, read: impl FnOnce(&LiveSet) -> T) -> T {
        read(&self.live.borrow())
    }

    /// Whether this node holds its lease and reaches the broker: its last
    /// renewal succeeded within the lease's ttl, the last read of the live
    /// set succeeded, and this node is in it. A watcher is healthy while
    /// its reads succeed.
    pub fn is_healthy(&self) -> bool {
        let health = lock(&self.health);
        if health.poll_failed || health.renew_failed {
            return false;
        }
        let Some(own) = &self.own else { return true };
        let renewed = health.renewed_at.is_some_and(|at| at.elapsed() < self.config.ttl);
        drop(health);
        renewed && self.with_live(|live| live.contains(own.id.as_str()))
    }

    /// Renews this node's lease (nothing for a watcher).
    pub async fn renew(&self) -> Result<(), RouterError> {
        let Some(own) = &self.own else { return Ok(()) };
        let outcome = self.broker.lease_renew(&self.set, &own.lease_entry(), self.config.ttl).await;
        let failed = outcome.is_err();
        let was_failed = {
            let mut health = lock(&self.health);
            if !failed {
                health.renewed_at = Some(Instant::now());
            }
            std::mem::replace(&mut health.renew_failed, failed)
        };
        if was_failed != failed {
            match &outcome {
                Err(error) => tracing::warn!(set = %self.set, %error, "lease renewal failed"),
                Ok(()) => tracing::info!(set = %self.set, "lease renewed again"),
            }
        }
        Ok(outcome?)
    }

    /// Reads the live set from the broker and publishes it if it changed;
    /// whether it did.
    pub async fn refresh(&self) -> Result<bool, RouterError> {
        let (entries, epoch) = match self.read().await {
            Ok(read) => read,
            Err(error) => {
                if !std::mem::replace(&mut lock(&self.health).poll_failed, true) {
                    tracing::warn!(set = %self.set, %error, "reading the live set failed; keeping the last view");
                }
                return Err(error);
            }
        };
        let observed = LiveSet::new(entries.iter().filter_map(|entry| parse(&self.set, entry)).collect());
        let now = Instant::now();
        let (settling, lost) = {
            let mut health = lock(&self.health);
            if std::mem::replace(&mut health.poll_failed, false) {
                tracing::info!(set = %self.set, "live set readable again; holding the view for one lease");
                health.settle_until = Some(now + self.config.ttl);
            }
            let lost = health.epoch.replace(epoch.clone()).is_some_and(|seen| seen != epoch);
            if lost {
                tracing::warn!(set = %self.set, "the broker lost the leases (restarted?); holding the view for one lease");
                health.settle_until = Some(now + self.config.ttl);
            }
            (health.settle_until.is_some_and(|until| now < until), lost)
        };
        if lost {
            // Back in the set at once rather than at the next tick; a
            // failure is retried then.
            let _ = self.renew().await;
        }
        Ok(self.live.send_if_modified(|view| {
            let next = if settling { view.union(&observed) } else { observed };
            let changed = *view != next;
            if changed {
                let ids: Vec<&str> = next.ids().map(NodeId::as_str).collect();
                tracing::info!(set = %self.set, live = ?ids, "live set changed");
                *view = next;
            }
            changed
        }))
    }

    /// The members of the set and its epoch, in that order: an epoch read
    /// before the members could predate a restart that emptied the set.
    async fn read(&self) -> Result<(Vec<String>, Bytes), RouterError> {
        let entries = self.broker.lease_members(&self.set).await?;
        Ok((entries, self.epoch().await?))
    }

    /// The set's epoch, created if missing.
    async fn epoch(&self) -> Result<Bytes, RouterError> {
        let key = format!("{}:epoch", self.set);
        if let Some(epoch) = self.broker.get(&key).await? {
            return Ok(epoch);
        }
        let mine = new_epoch();
        if self.broker.set_if_absent(&key, mine.clone(), None).await? {
            return Ok(mine);
        }
        // Someone else made it in between.
        Ok(self.broker.get(&key).await?.unwrap_or_default())
    }

    /// Removes this node's lease (a clean exit).
    pub async fn leave(&self) -> Result<(), RouterError> {
        let Some(own) = &self.own else { return Ok(()) };
        Ok(self.broker.lease_remove(&self.set, &own.lease_entry()).await?)
    }

    /// Renews and refreshes on their intervals until `shutdown`, then
    /// leaves. Failures are logged and retried on the next tick: a node
    /// keeps trying for as long as it runs. The error is that of leaving.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RouterError> {
        let mut renew = interval(self.config.renew_every);
        let mut poll = interval(self.config.poll_every);
        tokio::pin!(shutdown);
        loop {
            // Biased so that the first renewal comes before the first read,
            // which then sees this node.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = renew.tick(), if self.own.is_some() => {
                    let _ = self.renew().await;
                }
                _ = poll.tick() => {
                    let _ = self.refresh().await;
                }
            }
        }
        self.leave().await
    }
}

/// A value no other process picks: this process, the time, and a counter.
fn new_epoch() -> Bytes {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    Bytes::from(format!("{}-{nanos}-{count}", std::process::id()))
}

fn interval(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period.max(Duration::from_millis(1)));
    // After a slow broker call, go on from now rather than catch up in a burst.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// A member of the set; one that does not parse (written by something
/// else) is left out rather than failing the whole view.
fn parse(set: &str, entry: &str) -> Option<Member> {
    Member::parse(entry)
        .inspect_err(|error| tracing::debug!(set, entry, %error, "ignoring a lease member that does not parse"))
        .ok()
}

#[cfg(test)]
mod tests {
    use switchboard_broker::MemoryBroker;

    use super::*;

    fn member(id: &str, address: &str) -> Member {
        Member::new(NodeId::new(id).unwrap(), address)
    }

    #[test]
    fn a_live_set_is_sorted_with_one_member_per_id() {
        let set = LiveSet::new(vec![member("b", "2"), member("a", "old"), member("a", "new"), member("c", "3")]);
        let ids: Vec<&str> = set.ids().map(NodeId::as_str).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert_eq!(set.get("a").map(|m| m.address.as_str()), Some("old"), "the larger address, everywhere");
        assert!(set.contains("c") && !set.contains("d"));
        assert_eq!(set.len(), 3);
    }

    #[tokio::test]
    async fn registers_refreshes_and_leaves() {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        let config = LeaseConfig::default();
        let a = Membership::register(broker.clone(), ROUTERS, member("a", "10.0.0.1:1"), config);
        let watcher = Membership::observe(broker.clone(), ROUTERS, config);
        broker.lease_renew(ROUTERS, "not a member|x", Duration::from_secs(5)).await.unwrap();
        let mut changes = watcher.subscribe();
        assert!(!watcher.refresh().await.unwrap(), "nothing live yet");
        a.renew().await.unwrap();
        assert!(watcher.refresh().await.unwrap());
        assert!(changes.has_changed().unwrap());
        assert_eq!(changes.borrow_and_update().members(), &[member("a", "10.0.0.1:1")], "unparsable entries left out");
        assert!(!watcher.refresh().await.unwrap(), "unchanged");
        watcher.renew().await.unwrap();
        a.leave().await.unwrap();
        assert!(watcher.refresh().await.unwrap());
        assert!(watcher.live().is_empty());
    }

    #[tokio::test]
    async fn run_leaves_on_shutdown() {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        let a = Arc::new(Membership::register(broker.clone(), GATEWAYS, member("g", ""), LeaseConfig::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let a = a.clone();
            async move { a.run(async { stopped.await.unwrap_or(()) }).await }
        });
        let mut live = a.subscribe();
        tokio::time::timeout(Duration::from_secs(1), live.wait_for(|set| set.contains("g"))).await.unwrap().unwrap();
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(broker.lease_members(GATEWAYS).await.unwrap().is_empty());
    }
}
