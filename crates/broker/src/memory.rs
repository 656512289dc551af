//! [`MemoryBroker`]: the broker of standalone mode, in this process's memory.
//!
//! Streams are sorted deques per name, trimmed by count and age when
//! appended to (and by age when read); keys are a map with expiry times,
//! swept now and then as it grows; channels are `tokio::sync::broadcast`
//! senders, dropped when their last subscriber is gone; lease sets are in
//! `lease`. Every lock is a short synchronous section: nothing is awaited
//! while holding one.

mod lease;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::{BoxFuture, Broker, Entry, Result, Retention, StreamId, Subscription};
use lease::Leases;

/// Messages buffered per subscriber before it counts as lagging.
const CHANNEL_CAPACITY: usize = 1024;

/// Keys are swept of expired entries when the map has doubled since the last
/// sweep (and has at least this many), which keeps the cost per insert O(1).
const SWEEP_MIN_KEYS: usize = 1024;

/// The in-memory broker.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    streams: Mutex<HashMap<String, Stream>>,
    keys: Mutex<Keys>,
    channels: Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
    leases: Mutex<Leases>,
    /// Counted slots: per key, member → holder.
    slots: Mutex<HashMap<String, HashMap<String, String>>>,
}

#[derive(Debug, Default)]
struct Stream {
    last: Option<StreamId>,
    entries: VecDeque<(StreamId, Bytes)>,
    /// The age limit of the latest append, applied on reads too so that a
    /// quiet stream still forgets old entries.
    max_age: Option<Duration>,
}

impl Stream {
    fn trim_age(&mut self, now_ms: u64) {
        let Some(max_age) = self.max_age else { return };
        let oldest_kept = now_ms.saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        while self.entries.front().is_some_and(|(id, _)| id.ms < oldest_kept) {
            self.entries.pop_front();
        }
    }

    /// Index of the first entry after `id`.
    fn first_after(&self, id: StreamId) -> usize {
        self.entries.partition_point(|(entry, _)| *entry <= id)
    }

    fn entry(&self, index: usize) -> Option<Entry> {
        self.entries.get(index).map(|(id, data)| Entry { id: id.to_string(), data: data.clone() })
    }
}

#[derive(Debug, Default)]
struct Keys {
    map: HashMap<String, (Bytes, Option<Instant>)>,
    /// Size of the map after the last sweep.
    swept_len: usize,
}

impl Keys {
    fn live(&self, key: &str, now: Instant) -> Option<&Bytes> {
        self.map.get(key).filter(|(_, expiry)| expiry.is_none_or(|at| at > now)).map(|(value, _)| value)
    }

    fn sweep_if_grown(&mut self, now: Instant) {
        if self.map.len() >= SWEEP_MIN_KEYS && self.map.len() >= self.swept_len.saturating_mul(2) {
            self.map.retain(|_, (_, expiry)| expiry.is_none_or(|at| at > now));
            self.swept_len = self.map.len();
        }
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many streams are held (tests, metrics).
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Reads a stream under its lock after trimming it by age; a stream left
    /// empty is forgotten.
    fn read<T>(&self, stream: &str, read: impl FnOnce(&Stream) -> T) -> Option<T> {
        let mut streams = lock(&self.streams);
        let state = streams.get_mut(stream)?;
        state.trim_age(now_ms());
        if state.entries.is_empty() {
            streams.remove(stream);
            return None;
        }
        Some(read(state))
    }

    fn append(&self, stream: &str, data: Bytes, retention: Retention) -> String {
        let now = now_ms();
        let mut streams = lock(&self.streams);
        let state = streams.entry(stream.to_owned()).or_default();
        let id = StreamId::next_after(state.last, now);
        state.last = Some(id);
        state.max_age = retention.max_age;
        state.entries.push_back((id, data));
        let max_len = retention.max_len.max(1);
        while state.entries.len() > max_len {
            state.entries.pop_front();
        }
        state.trim_age(now);
        id.to_string()
    }

    fn range_after(&self, stream: &str, after: &str, count: usize) -> Result<Vec<Entry>> {
        let after: StreamId = after.parse()?;
        Ok(self
            .read(stream, |state| {
                let start = state.first_after(after);
                (start..state.entries.len()).take(count).filter_map(|i| state.entry(i)).collect()
            })
            .unwrap_or_default())
    }

    fn last(&self, stream: &str, count: usize) -> Vec<Entry> {
        self.read(stream, |state| {
            let start = state.entries.len().saturating_sub(count);
            (start..state.entries.len()).filter_map(|i| state.entry(i)).collect()
        })
        .unwrap_or_default()
    }

    fn get_entry(&self, stream: &str, id: &str) -> Result<Option<Entry>> {
        let id: StreamId = id.parse()?;
        Ok(self
            .read(stream, |state| {
                let index = state.entries.partition_point(|(entry, _)| *entry < id);
                state.entry(index).filter(|entry| entry.id == id.to_string())
            })
            .flatten())
    }

    fn set_nx(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> bool {
        let now = Instant::now();
        let mut keys = lock(&self.keys);
        if keys.live(key, now).is_some() {
            return false;
        }
        keys.sweep_if_grown(now);
        keys.map.insert(key.to_owned(), (value, ttl.and_then(|ttl| now.checked_add(ttl))));
        true
    }

    fn get_key(&self, key: &str) -> Option<Bytes> {
        lock(&self.keys).live(key, Instant::now()).cloned()
    }

    fn delete_key(&self, key: &str) -> bool {
        let now = Instant::now();
        let removed = lock(&self.keys).map.remove(key);
        removed.is_some_and(|(_, expiry)| expiry.is_none_or(|at| at > now))
    }

    fn publish_now(&self, channel: &str, message: Bytes) -> usize {
        let mut channels = lock(&self.channels);
        let Some(sender) = channels.get(channel) else { return 0 };
        match sender.send(message) {
            Ok(count) => count,
            Err(_) => {
                // Every subscriber is gone: forget the channel.
                channels.remove(channel);
                0
            }
        }
    }

    fn subscribe_now(&self, channel: &str) -> Subscription {
        let mut channels = lock(&self.channels);
        let sender = channels.entry(channel.to_owned()).or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0);
        Subscription::new(channel, sender.subscribe())
    }
}

// === impl Broker ===

impl Broker for MemoryBroker {
    fn stream_append<'a>(
        &'a self,
        stream: &'a str,
        data: Bytes,
        retention: Retention,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move { Ok(self.append(stream, data, retention)) })
    }

    fn stream_range_after<'a>(
        &'a self,
        stream: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>>> {
        Box::pin(async move { self.range_after(stream, after, count) })
    }

    fn stream_last<'a>(&'a self, stream: &'a str, count: usize) -> BoxFuture<'a, Result<Vec<Entry>>> {
        Box::pin(async move { Ok(self.last(stream, count)) })
    }

    fn stream_get<'a>(&'a self, stream: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(async move { self.get_entry(stream, id) })
    }

    fn set_if_absent<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.set_nx(key, value, ttl)) })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut keys = lock(&self.keys);
            keys.sweep_if_grown(now);
            keys.map.insert(key.to_owned(), (value, ttl.and_then(|ttl| now.checked_add(ttl))));
            Ok(())
        })
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let now = Instant::now();
            let removed = lock(&self.keys).map.remove(key);
            Ok(removed.and_then(|(value, expiry)| expiry.is_none_or(|at| at > now).then_some(value)))
        })
    }

    fn slot_acquire<'a>(
        &'a self,
        key: &'a str,
        member: &'a str,
        holder: &'a str,
        holders: &'a str,
        max: usize,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let live: Vec<String> = self.lease_members(holders).await?;
            let mut slots = lock(&self.slots);
            let slots = slots.entry(key.to_owned()).or_default();
            slots.retain(|_, held_by| live.iter().any(|l| l == held_by) || held_by == holder);
            if slots.contains_key(member) || slots.len() < max {
                slots.insert(member.to_owned(), holder.to_owned());
                return Ok(true);
            }
            Ok(false)
        })
    }

    fn slot_release<'a>(&'a self, key: &'a str, member: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut slots = lock(&self.slots);
            if let Some(held) = slots.get_mut(key) {
                held.remove(member);
                if held.is_empty() {
                    slots.remove(key);
                }
            }
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move { Ok(self.get_key(key)) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.delete_key(key)) })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move { Ok(self.publish_now(channel, message)) })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(async move { Ok(self.subscribe_now(channel)) })
    }

    fn lease_renew<'a>(&'a self, set: &'a str, member: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lock(&self.leases).renew(set, member, ttl, Instant::now());
            Ok(())
        })
    }

    fn lease_members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { Ok(lock(&self.leases).members(set, Instant::now())) })
    }

    fn lease_remove<'a>(&'a self, set: &'a str, member: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lock(&self.leases).remove(set, member);
            Ok(())
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::BrokerError;

    use super::*;

    const KEEP_ALL: Retention = Retention { max_len: 1000, max_age: None };

    fn broker() -> Arc<dyn Broker> {
        Arc::new(MemoryBroker::new())
    }

    fn texts(entries: &[Entry]) -> Vec<&[u8]> {
        entries.iter().map(|e| &e.data[..]).collect()
    }

    #[tokio::test]
    async fn ids_sort_in_append_order_and_ranges_follow_them() {
        let b = broker();
        let mut ids = Vec::new();
        for i in 0..50 {
            ids.push(b.stream_append("s", Bytes::from(format!("m{i}")), KEEP_ALL).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let after = b.stream_range_after("s", &ids[47], 10).await.unwrap();
        assert_eq!(texts(&after), vec![&b"m48"[..], b"m49"]);
        assert_eq!(after[0].id, ids[48]);
        let page = b.stream_range_after("s", &ids[0], 2).await.unwrap();
        assert_eq!(texts(&page), vec![&b"m1"[..], b"m2"]);
        assert_eq!(b.stream_range_after("s", "0-0", 100).await.unwrap().len(), 50);
        assert!(b.stream_range_after("s", &ids[49], 10).await.unwrap().is_empty());
        assert!(b.stream_range_after("nope", "0-0", 10).await.unwrap().is_empty());
        assert!(matches!(b.stream_range_after("s", "garbage", 10).await, Err(BrokerError::InvalidId(_))));
    }

    #[tokio::test]
    async fn last_returns_the_newest_oldest_first() {
        let b = broker();
        for i in 0..5 {
            b.stream_append("s", Bytes::from(format!("m{i}")), KEEP_ALL).await.unwrap();
        }
        assert_eq!(texts(&b.stream_last("s", 2).await.unwrap()), vec![&b"m3"[..], b"m4"]);
        assert_eq!(b.stream_last("s", 100).await.unwrap().len(), 5);
        assert!(b.stream_last("s", 0).await.unwrap().is_empty());
        assert!(b.stream_last("other", 3).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn get_finds_kept_entries_only() {
        let b = broker();
        let first = b.stream_append("s", Bytes::from_static(b"a"), Retention::new(2, None)).await.unwrap();
        let second = b.stream_append("s", Bytes::from_static(b"b"), Retention::new(2, None)).await.unwrap();
        assert_eq!(b.stream_get("s", &second).await.unwrap().map(|e| e.data), Some(Bytes::from_static(b"b")));
        assert!(b.stream_get("t", &second).await.unwrap().is_none());
        b.stream_append("s", Bytes::from_static(b"c"), Retention::new(2, None)).await.unwrap();
        assert!(b.stream_get("s", &first).await.unwrap().is_none(), "trimmed by count");
        assert!(b.stream_get("s", "1-1").await.unwrap().is_none());
        assert!(matches!(b.stream_get("s", "no-such-message").await, Err(BrokerError::InvalidId(_))));
    }

    #[tokio::test]
    async fn retention_by_count_and_age() {
        let memory = MemoryBroker::new();
        let count = Retention::new(3, None);
        for i in 0..10 {
            memory.stream_append("c", Bytes::from(format!("{i}")), count).await.unwrap();
        }
        assert_eq!(texts(&memory.stream_last("c", 10).await.unwrap()), vec![&b"7"[..], b"8", b"9"]);

        let age = Retention::new(100, Some(Duration::from_millis(30)));
        memory.stream_append("a", Bytes::from_static(b"old"), age).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        memory.stream_append("a", Bytes::from_static(b"new"), age).await.unwrap();
        assert_eq!(texts(&memory.stream_last("a", 10).await.unwrap()), vec![&b"new"[..]]);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(memory.stream_last("a", 10).await.unwrap().is_empty(), "aged out on read");
        assert_eq!(memory.stream_count(), 1, "the empty stream is forgotten");
    }

    #[tokio::test]
    async fn set_if_absent_once_until_expiry() {
        let b = broker();
        assert!(b.set_if_absent("k", Bytes::from_static(b"1"), None).await.unwrap());
        assert!(!b.set_if_absent("k", Bytes::from_static(b"2"), None).await.unwrap());
        assert_eq!(b.get("k").await.unwrap(), Some(Bytes::from_static(b"1")));
        assert!(b.delete("k").await.unwrap());
        assert!(!b.delete("k").await.unwrap());
        assert_eq!(b.get("k").await.unwrap(), None);

        let ttl = Some(Duration::from_millis(20));
        assert!(b.set_if_absent("t", Bytes::from_static(b"1"), ttl).await.unwrap());
        assert!(!b.set_if_absent("t", Bytes::from_static(b"1"), ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(b.get("t").await.unwrap(), None);
        assert!(b.set_if_absent("t", Bytes::from_static(b"1"), ttl).await.unwrap(), "expired keys are absent");
    }

    #[tokio::test]
    async fn set_replaces_and_take_removes() {
        let b = broker();
        b.set("k", Bytes::from_static(b"1"), None).await.unwrap();
        b.set("k", Bytes::from_static(b"2"), None).await.unwrap();
        assert_eq!(b.take("k").await.unwrap(), Some(Bytes::from_static(b"2")));
        assert_eq!(b.take("k").await.unwrap(), None);
        b.set("t", Bytes::from_static(b"1"), Some(Duration::from_millis(20))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(b.take("t").await.unwrap(), None, "expired keys are absent");
    }

    #[test]
    fn expired_keys_are_swept_as_the_map_grows() {
        let memory = MemoryBroker::new();
        let short = Some(Duration::from_millis(1));
        for i in 0..SWEEP_MIN_KEYS {
            assert!(memory.set_nx(&format!("k{i}"), Bytes::new(), short));
        }
        std::thread::sleep(Duration::from_millis(5));
        memory.set_nx("trigger", Bytes::new(), None);
        assert_eq!(lock(&memory.keys).map.len(), 1);
    }

    #[tokio::test]
    async fn publish_reaches_current_subscribers() {
        let b = broker();
        assert_eq!(b.publish("ch", Bytes::from_static(b"nobody")).await.unwrap(), 0);
        let mut s1 = b.subscribe("ch").await.unwrap();
        let mut s2 = b.subscribe("ch").await.unwrap();
        let mut other = b.subscribe("other").await.unwrap();
        assert_eq!(s1.channel(), "ch");
        assert_eq!(b.publish("ch", Bytes::from_static(b"hi")).await.unwrap(), 2);
        assert_eq!(s1.recv().await.unwrap(), Bytes::from_static(b"hi"));
        assert_eq!(s2.recv().await.unwrap(), Bytes::from_static(b"hi"));
        let nothing = tokio::time::timeout(Duration::from_millis(20), other.recv()).await;
        assert!(nothing.is_err(), "other channels stay quiet");
        drop((s1, s2));
        assert_eq!(b.publish("ch", Bytes::from_static(b"gone")).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged() {
        let b = broker();
        let mut slow = b.subscribe("ch").await.unwrap();
        for i in 0..CHANNEL_CAPACITY + 5 {
            b.publish("ch", Bytes::from(i.to_string())).await.unwrap();
        }
        assert_eq!(slow.recv().await, Err(BrokerError::Lagged(5)));
        assert_eq!(slow.recv().await.unwrap(), Bytes::from("5"));
    }
}
