//! Sessions kept for recovery on any gateway, and the positions they resume
//! from.
//!
//! - **Positions.** Per lane, the last stream id this gateway delivered
//!   (every local member of a room gets the same deliveries in the same
//!   order, so one position per lane stands for all of them). They are
//!   written to `sb:gwpos:<gateway>` every second when they moved, so that
//!   after a `kill -9` a socket resumes at most a second behind.
//! - **Session records.** `sb:session:<nsp>:<pid>`: the socket's id, user,
//!   rooms and gateway, written when the socket connects or its rooms
//!   change (batched, every second) and refreshed while it lives; when it
//!   disconnects in a way it may come back from, with its exact positions;
//!   deleted when it leaves for good. Each expires after the recovery
//!   window.
//! - **Resuming.** The record is taken (one taker wins); the client's offset
//!   `<id>@<tag>` gives the exact position in its lane; the other lanes
//!   resume from the record's positions, else from its gateway's. The
//!   socket then reads each lane's stream after its position, filtered as
//!   deliveries are, merged in id order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchboard_broker::{Broker, StreamId};
use switchboard_gateway::cluster::{Missed, Phase, Replay, Resumable, SessionState};
use switchboard_proto::prost::Message as _;
use switchboard_proto::v1;

use crate::lanes::{lane_key, offset, parse_offset, stream, tag};

/// Entries read from one lane at most when resuming; more means the socket
/// missed too much to be recovered.
const MAX_REPLAY: usize = 10_000;

/// How long a closing socket waits for its session record to be stored.
const LEFT_WRITE_WAIT: Duration = Duration::from_secs(1);

/// A session record as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    sid: String,
    user: String,
    rooms: Vec<String>,
    gateway: String,
    /// Exact positions (lane key → stream id), when it left cleanly.
    #[serde(default)]
    positions: Option<HashMap<String, String>>,
}

/// What a resumed session replays from.
#[derive(Debug)]
struct ResumeFrom {
    /// Per lane (`None`: the namespace's own), the stream id to read after.
    lanes: Vec<(Option<String>, String)>,
}

pub(crate) struct Sessions {
    broker: Arc<dyn Broker>,
    gateway_id: String,
    window: Duration,
    positions: Mutex<HashMap<String, String>>,
    positions_dirty: AtomicBool,
    live: Mutex<HashMap<String, (String, SessionState, bool)>>,
    /// Records being written for sockets that left: awaited before exit.
    writes: tokio_util::task::TaskTracker,
}

impl Sessions {
    pub(crate) fn new(broker: Arc<dyn Broker>, gateway_id: String, window: Duration) -> Self {
        Self {
            broker,
            gateway_id,
            window,
            positions: Mutex::new(HashMap::new()),
            positions_dirty: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            writes: tokio_util::task::TaskTracker::new(),
        }
    }

    fn record_key(nsp: &str, pid: &str) -> String {
        format!("sb:session:{nsp}:{pid}")
    }

    fn positions_key(gateway: &str) -> String {
        format!("sb:gwpos:{gateway}")
    }

    /// A delivery in `lane` at stream id `id`.
    pub(crate) fn delivered(&self, lane: &str, id: &str) {
        let mut positions = lock(&self.positions);
        match positions.get_mut(lane) {
            Some(position) => id.clone_into(position),
            None => {
                positions.insert(lane.to_owned(), id.to_owned());
            }
        }
        drop(positions);
        self.positions_dirty.store(true, Ordering::Release);
    }

    /// This gateway started holding a lane: until its first delivery, its
    /// position is now (less a second for clocks), so that a socket that
    /// resumes does not replay the lane's older history.
    pub(crate) fn lane_opened(&self, lane: String) {
        let mut positions = lock(&self.positions);
        if let std::collections::hash_map::Entry::Vacant(entry) = positions.entry(lane) {
            entry.insert(now_id());
            self.positions_dirty.store(true, Ordering::Release);
        }
    }

    pub(crate) async fn session(&self, nsp: &str, state: SessionState, phase: Phase) {
        let key = Self::record_key(nsp, &state.pid);
        match phase {
            Phase::Live => {
                lock(&self.live).insert(key, (nsp.to_owned(), state, true));
            }
            Phase::Left => {
                lock(&self.live).remove(&key);
                let positions = self.positions_of(nsp, &state.rooms);
                let record = self.record(&state, Some(positions));
                let (broker, window) = (self.broker.clone(), self.window);
                // Stored before the client hears of the close (it may come
                // back at once, to another gateway); a write that takes too
                // long goes on in the background.
                let write = self.writes.spawn(async move {
                    if let Err(error) = broker.set(&key, record, Some(window)).await {
                        tracing::warn!(%error, "session not kept for recovery");
                    }
                });
                let _ = tokio::time::timeout(LEFT_WRITE_WAIT, write).await;
            }
            Phase::Closed => {
                lock(&self.live).remove(&key);
                let broker = self.broker.clone();
                self.writes.spawn(async move {
                    let _ = broker.delete(&key).await;
                });
            }
        }
    }

    fn positions_of(&self, nsp: &str, rooms: &[Arc<str>]) -> HashMap<String, String> {
        let positions = lock(&self.positions);
        let mut lanes: Vec<String> = rooms.iter().map(|room| lane_key(nsp, Some(room))).collect();
        lanes.push(lane_key(nsp, None));
        lanes.into_iter().filter_map(|lane| positions.get(&lane).map(|id| (lane, id.clone()))).collect()
    }

    fn record(&self, state: &SessionState, positions: Option<HashMap<String, String>>) -> Bytes {
        let record = Record {
            sid: state.sid.to_string(),
            user: state.user_id.to_string(),
            rooms: state.rooms.iter().map(|r| r.to_string()).collect(),
            gateway: self.gateway_id.clone(),
            positions,
        };
        Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
    }

    /// Writes what changed: positions, and the records of live sessions
    /// that changed (`all`: every live record, to refresh their expiry).
    pub(crate) async fn flush(&self, all: bool) {
        if self.positions_dirty.swap(false, Ordering::AcqRel) {
            let bytes = Bytes::from(serde_json::to_vec(&*lock(&self.positions)).unwrap_or_default());
            if let Err(error) = self.broker.set(&Self::positions_key(&self.gateway_id), bytes, Some(self.window)).await
            {
                self.positions_dirty.store(true, Ordering::Release);
                tracing::debug!(%error, "positions not written");
            }
        }
        let writes: Vec<(String, Bytes)> = {
            let mut live = lock(&self.live);
            live.iter_mut()
                .filter(|(_, (_, _, dirty))| all || *dirty)
                .map(|(key, (_, state, dirty))| {
                    *dirty = false;
                    (key.clone(), self.record(state, None))
                })
                .collect()
        };
        for (key, record) in writes {
            if let Err(error) = self.broker.set(&key, record, Some(self.window)).await {
                tracing::debug!(%error, "session record not written");
                if let Some(entry) = lock(&self.live).get_mut(&key) {
                    entry.2 = true;
                }
                break;
            }
        }
    }

    /// Waits (at most `within`) for the records of sockets that left.
    pub(crate) async fn settle(&self, within: Duration) {
        self.writes.close();
        if tokio::time::timeout(within, self.writes.wait()).await.is_err() {
            tracing::warn!("session records still being written at exit");
        }
    }

    /// Takes a kept session. `offset` is the client's last offset.
    pub(crate) async fn resume(&self, nsp: &str, pid: &str, client_offset: &str) -> Option<Resumable> {
        let bytes = match self.broker.take(&Self::record_key(nsp, pid)).await {
            Ok(bytes) => bytes?,
            Err(error) => {
                tracing::warn!(%error, "session not resumed: storage unavailable");
                return None;
            }
        };
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        let positions = match record.positions.clone() {
            Some(positions) => positions,
            None => {
                let bytes = self.broker.get(&Self::positions_key(&record.gateway)).await.ok()??;
                serde_json::from_slice::<HashMap<String, String>>(&bytes).ok()?
            }
        };
        let (client_id, client_tag) = parse_offset(client_offset)?;
        let mut lanes: Vec<Option<String>> = record.rooms.iter().cloned().map(Some).collect();
        lanes.push(None);
        let mut from = Vec::with_capacity(lanes.len());
        for room in lanes {
            let key = lane_key(nsp, room.as_deref());
            let position = if tag(&key) == client_tag {
                client_id.to_owned()
            } else {
                // A lane this gateway never delivered in has nothing older
                // than the socket's arrival to give.
                positions.get(&key).cloned().unwrap_or_else(now_id)
            };
            from.push((room, position));
        }
        Some(Resumable {
            sid: Arc::from(record.sid.as_str()),
            user_id: Arc::from(record.user.as_str()),
            rooms: record.rooms.iter().map(|r| Arc::from(r.as_str())).collect(),
            token: Arc::new(ResumeFrom { lanes: from }),
        })
    }

    /// Reads what a resumed session missed, in id order.
    pub(crate) async fn replay(&self, nsp: &str, session: &Resumable) -> Option<Replay> {
        let from = session.token.downcast_ref::<ResumeFrom>()?;
        let rooms: Vec<&str> = session.rooms.iter().map(|r| &**r).collect();
        let mut missed: Vec<(StreamId, Missed)> = Vec::new();
        let mut last = Vec::with_capacity(from.lanes.len());
        for (room, position) in &from.lanes {
            let key = lane_key(nsp, room.as_deref());
            let lane_tag = tag(&key);
            let entries = match self.broker.stream_range_after(&stream(&key), position, MAX_REPLAY).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "replay failed");
                    return None;
                }
            };
            if entries.len() >= MAX_REPLAY {
                return None;
            }
            let mut lane_last = position.clone();
            for entry in entries {
                lane_last = entry.id.clone();
                let Ok(delivery) = v1::Delivery::decode(entry.data.clone()) else { continue };
                if !audience_includes(&delivery, room.as_deref(), &session.sid, &rooms) {
                    continue;
                }
                let Some(packet) = delivery.packet else { continue };
                let packet = if delivery.store && !delivery.id_field.is_empty() {
                    packet.with_field(&delivery.id_field, &entry.id).unwrap_or(packet)
                } else {
                    packet
                };
                let Ok(id) = entry.id.parse::<StreamId>() else { continue };
                missed.push((
                    id,
                    Missed {
                        event: packet.event.clone(),
                        args_json: packet.args_array(),
                        attachments: packet.attachments.clone(),
                        offset: offset(&entry.id, &lane_tag),
                    },
                ));
            }
            last.push((lane_tag, lane_last));
        }
        missed.sort_by_key(|(id, _)| *id);
        Some(Replay { missed: missed.into_iter().map(|(_, m)| m).collect(), last })
    }
}

/// Whether a stored delivery, read from the stream of `lane` (a room, or
/// the namespace), is for the socket `sid` in `rooms`: as a live delivery
/// would be, and only from the first of its rooms the socket is in (the
/// others' streams hold it too).
fn audience_includes(delivery: &v1::Delivery, lane: Option<&str>, sid: &str, rooms: &[&str]) -> bool {
    let is_in = |name: &String| name == sid || rooms.contains(&name.as_str());
    if delivery.except.iter().any(is_in) {
        return false;
    }
    match lane {
        None => delivery.rooms.is_empty(),
        Some(lane) => delivery.rooms.iter().find(|room| is_in(room)).is_some_and(|first| first == lane),
    }
}

/// A stream id for "now, less a second".
fn now_id() -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    StreamId::new(ms.saturating_sub(1000), 0).to_string()
}

/// Compares stream ids held as strings.
#[cfg(test)]
fn id_le(a: &str, b: &str) -> bool {
    use switchboard_gateway::cluster::stream_id_key;
    matches!((stream_id_key(a), stream_id_key(b)), (Some(a), Some(b)) if a <= b)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(rooms: &[&str], except: &[&str]) -> v1::Delivery {
        v1::Delivery {
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            except: except.iter().map(|r| (*r).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_stored_delivery_is_replayed_once_from_the_first_room_the_socket_is_in() {
        let rooms = ["a", "b"];
        assert!(audience_includes(&delivery(&["a"], &[]), Some("a"), "s1", &rooms));
        assert!(!audience_includes(&delivery(&["a"], &["s1"]), Some("a"), "s1", &rooms), "excluded by id");
        assert!(!audience_includes(&delivery(&["a"], &["b"]), Some("a"), "s1", &rooms), "excluded by room");
        assert!(audience_includes(&delivery(&["c", "b", "a"], &[]), Some("b"), "s1", &rooms));
        assert!(!audience_includes(&delivery(&["c", "b", "a"], &[]), Some("a"), "s1", &rooms), "b's copy counts");
        assert!(audience_includes(&delivery(&[], &[]), None, "s1", &rooms));
        assert!(!audience_includes(&delivery(&["a"], &[]), None, "s1", &rooms));
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert!(id_le("0000000000001-000002", "0000000000001-000010"));
        assert!(!id_le("0000000000002-000000", "0000000000001-999999"));
    }
}
