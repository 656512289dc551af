//! `Fanout`: one broadcast, from the owner to the gateways that need it.
//!
//! A broadcast goes to one or more rooms of a namespace, or to the whole
//! namespace (no rooms). Each room, and the namespace's own broadcasts, is
//! a *lane*: it has an ownership key (`room:<nsp>:<room>`, `nsp:<nsp>`), a
//! stream (`sb:` + key: `sb:room:<nsp>:<room>`, `sb:nsp:<nsp>`) and a
//! sequence. A broadcast goes in two stages.
//!
//! The sequential stage ([`Router::start_publish`](crate::Router::start_publish)),
//! holding the lanes' locks:
//!
//! 1. appends it, unless volatile, to each lane's stream (one `XADD` with
//!    retention each), the recovery log: one protobuf `Delivery` (see
//!    [`wire`](crate::wire)); the entry id is the offset, and the entry
//!    says whether it is also history (`store`), and under which key a
//!    reader writes the id into a kept message (`id_field`);
//! 2. writes the entry id into the packet under `id_field`, if asked;
//! 3. numbers it in each lane;
//! 4. queues one delivery per gateway that holds members of any of its
//!    rooms (for the namespace: any member of it) and to no other.
//!
//! Holding the lane locks from the append to the queueing is what makes
//! deliveries leave in offset order: two broadcasts to one room cannot
//! overtake each other between Redis numbering them and the batcher
//! queueing them. Locks are striped (a fixed array, by hash of the key) so
//! that their number stays bounded; a broadcast to several rooms takes its
//! stripes in index order, which cannot deadlock.
//!
//! The concurrent stage ([`Pending::finish`]) waits for the batches
//! carrying the deliveries. A caller that must keep an order between
//! broadcasts (a gateway's session: its publishes are numbered in arrival
//! order) runs the first stage of each in turn and lets the second ones
//! overlap, so that one slow batch does not hold the next broadcast back.
//!
//! Since appends to one lane take turns, an outage would make each waiting
//! broadcast take its own command timeout in turn; instead a broker failure
//! is noted, and every broadcast that arrived before it (waiting for a lock
//! or in a session's queue) fails with it at once; those that arrive later
//! try again. So during an outage none waits much longer than two timeouts.
//!
//! The caller hears [`RouterError::Unavailable`] if the broker failed at any
//! step: a broadcast is acknowledged only when it was handed to every
//! gateway. A failure after an append leaves the packet in the stream,
//! where a gateway that notices the sequence gap finds it; the client was
//! told it failed, so it may arrive at most once more if it retries.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use switchboard_broker::{Broker, Retention};
use switchboard_proto::v1;
use tokio::sync::{Mutex as AsyncMutex, oneshot};
use tokio::time::Instant;

use crate::batcher::{Batchers, Outcome};
use crate::config::RouterConfig;
use crate::ownership::{hash64, nsp_key, room_key};
use crate::rooms::RoomTable;
use crate::sync::lock;
use crate::wire::{encode_delivery, encode_entry};
use crate::{GatewayId, RouterError, RouterId};

/// Lock stripes: enough that unrelated rooms rarely wait on each other.
const STRIPES: usize = 256;

/// Counter of broadcasts, label `outcome` (`ok`, `unavailable`,
/// `not_owner`, `invalid`).
pub const PUBLISHES: &str = "switchboard_router_publishes_total";

/// A broadcast, as a gateway hands it to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub nsp: String,
    /// Target rooms; empty for the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms (or socket ids) left out.
    pub except: Vec<String>,
    /// Droppable under load; not appended to the streams, so neither kept
    /// nor recovered, and without an offset.
    pub volatile: bool,
    /// Part of the room's history too, besides the recovery log that every
    /// non-volatile broadcast goes to (the stream entry is marked so). Not
    /// with `volatile`.
    pub store: bool,
    /// The packet, opaque to the router except for `id_field`.
    pub packet: v1::Packet,
    /// With `store` and one room (or none): the key under which the entry
    /// id is written into the first argument, which must be a JSON object,
    /// before the packet is delivered. Empty: nothing is written.
    pub id_field: String,
}

/// What became of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The stream id per lane (per room in the order given, duplicates
    /// removed; or the namespace's); empty for a volatile broadcast.
    pub offsets: Vec<String>,
    /// How many gateways it was delivered to.
    pub gateways: usize,
}

impl Published {
    /// The offset of a one-room (or namespace-wide) broadcast.
    pub fn offset(&self) -> Option<&str> {
        self.offsets.first().map(String::as_str)
    }
}

/// A broadcast past its sequential stage: appended, numbered and queued
/// for every gateway; [`finish`](Self::finish) waits for its batches.
#[derive(Debug)]
#[must_use = "a publish is acknowledged only once its batches went out"]
pub struct Pending {
    offsets: Vec<String>,
    batches: Vec<oneshot::Receiver<Outcome>>,
}

impl Pending {
    /// How many gateways it was queued for.
    pub fn gateways(&self) -> usize {
        self.batches.len()
    }

    /// Waits until every batch carrying it was published: the outcome of
    /// the broadcast.
    pub async fn finish(self) -> Result<Published, RouterError> {
        let gateways = self.batches.len();
        let mut outcome = Ok(Published { offsets: self.offsets, gateways });
        for batch in self.batches {
            let sent = batch.await.unwrap_or_else(|_| Err(shutting_down()));
            if let Err(error) = sent {
                outcome = Err(error);
                break;
            }
        }
        metrics::counter!(PUBLISHES, "outcome" => outcome_label(outcome.as_ref().err())).increment(1);
        outcome
    }
}

fn shutting_down() -> RouterError {
    RouterError::Unavailable("the router is shutting down".to_owned())
}

/// The `outcome` label of [`PUBLISHES`] for a broadcast that failed with
/// `error` (or succeeded).
pub(crate) fn outcome_label(error: Option<&RouterError>) -> &'static str {
    match error {
        None => "ok",
        Some(RouterError::Unavailable(_)) => "unavailable",
        Some(RouterError::NotOwner { .. }) => "not_owner",
        Some(RouterError::Invalid(_) | RouterError::InvalidId(_) | RouterError::Malformed(_)) => "invalid",
    }
}

/// One room, or the namespace itself.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) room: Option<String>,
    pub(crate) key: String,
}

impl Lane {
    /// The lanes of a broadcast: its rooms once each in the order given,
    /// or the namespace.
    pub(crate) fn of(nsp: &str, rooms: &[String]) -> Vec<Lane> {
        if rooms.is_empty() {
            return vec![Lane { room: None, key: nsp_key(nsp) }];
        }
        let mut seen = BTreeSet::new();
        rooms
            .iter()
            .filter(|room| seen.insert(room.as_str()))
            .map(|room| Lane { room: Some(room.clone()), key: room_key(nsp, room) })
            .collect()
    }

    pub(crate) fn stream(&self) -> String {
        format!("sb:{}", self.key)
    }
}

/// Appending, numbering and queueing broadcasts.
pub(crate) struct Fanout {
    broker: Arc<dyn Broker>,
    retention: Retention,
    stripes: Box<[AsyncMutex<()>]>,
    /// The last broker failure of the sequential stage, and when.
    failed: Mutex<Option<(Instant, RouterError)>>,
    batchers: Batchers,
}

impl Fanout {
    pub(crate) fn new(router_id: &RouterId, broker: Arc<dyn Broker>, config: &RouterConfig) -> Self {
        Self {
            retention: config.retention,
            stripes: (0..STRIPES).map(|_| AsyncMutex::new(())).collect(),
            failed: Mutex::new(None),
            batchers: Batchers::new(router_id, broker.clone(), config.batch),
            broker,
        }
    }

    pub(crate) fn forget_gateway(&self, gateway: &GatewayId) {
        self.batchers.close(gateway);
    }

    /// The sequential stage of `publish` (which arrived at `arrived`) to the
    /// gateways `table` knows for its lanes (which the caller checked this
    /// router owns, and the publish for validity).
    pub(crate) async fn begin(
        &self,
        table: &Mutex<RoomTable>,
        lanes: &[Lane],
        publish: Publish,
        arrived: Instant,
    ) -> Result<Pending, RouterError> {
        let mut stripes: Vec<usize> = lanes.iter().map(|lane| stripe(&lane.key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for index in stripes {
            guards.push(self.stripes[index].lock().await);
        }
        if let Some((_, error)) = lock(&self.failed).as_ref().filter(|(at, _)| *at >= arrived) {
            return Err(error.clone());
        }

        let rooms: Vec<String> = lanes.iter().filter_map(|lane| lane.room.clone()).collect();
        let store = publish.store && !publish.volatile;
        let mut offsets = Vec::new();
        if !publish.volatile {
            let entry = encode_entry(&v1::Delivery {
                nsp: publish.nsp.clone(),
                rooms: rooms.clone(),
                except: publish.except.clone(),
                volatile: false,
                stamps: Vec::new(),
                packet: Some(publish.packet.clone()),
                store,
                id_field: publish.id_field.clone(),
            });
            for lane in lanes {
                match self.broker.stream_append(&lane.stream(), entry.clone(), self.retention).await {
                    Ok(offset) => offsets.push(offset),
                    Err(error) => return Err(self.note_failure(error.into())),
                }
            }
        }
        let packet = match (publish.id_field.as_str(), offsets.first()) {
            ("", _) => publish.packet,
            (field, Some(offset)) => publish.packet.with_field(field, offset).ok_or_else(|| {
                RouterError::Invalid(format!("id_field {field:?}: the first argument is not an object"))
            })?,
            (field, None) => return Err(RouterError::Invalid(format!("id_field {field:?} on a volatile publish"))),
        };

        let (stamps, gateways) = {
            let mut table = lock(table);
            let stamps: Vec<v1::Stamp> = lanes
                .iter()
                .enumerate()
                .map(|(i, lane)| v1::Stamp {
                    seq: table.next_seq(&publish.nsp, lane.room.as_deref()),
                    offset: offsets.get(i).cloned().unwrap_or_default(),
                })
                .collect();
            let gateways: BTreeSet<GatewayId> = if rooms.is_empty() {
                table.namespace_gateways(&publish.nsp).into_iter().collect()
            } else {
                rooms.iter().flat_map(|room| table.gateways_of(&publish.nsp, room)).collect()
            };
            (stamps, gateways)
        };

        let delivery: Bytes = encode_delivery(&v1::Delivery {
            nsp: publish.nsp,
            rooms,
            except: publish.except,
            volatile: publish.volatile,
            stamps,
            packet: Some(packet),
            store,
            id_field: String::new(),
        });
        let mut batches = Vec::with_capacity(gateways.len());
        for gateway in &gateways {
            match self.batchers.enqueue(gateway, delivery.clone()).await {
                Ok(outcome) => batches.push(outcome),
                Err(error) => return Err(self.note_failure(error)),
            }
        }
        // Queued in order: the next broadcast to these lanes may go ahead
        // while this one waits for its batches.
        drop(guards);
        Ok(Pending { offsets, batches })
    }

    /// Notes a broker failure for the broadcasts waiting meanwhile; the
    /// error, to return.
    fn note_failure(&self, error: RouterError) -> RouterError {
        *lock(&self.failed) = Some((Instant::now(), error.clone()));
        error
    }
}

/// The lock stripe of a lane.
fn stripe(key: &str) -> usize {
    (hash64("", key) % STRIPES as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_rooms_once_each_or_the_namespace() {
        let rooms = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>();
        let keys = |lanes: Vec<Lane>| lanes.iter().map(|lane| (lane.key.clone(), lane.stream())).collect::<Vec<_>>();
        assert_eq!(keys(Lane::of("/chat", &[])), vec![("nsp:/chat".to_owned(), "sb:nsp:/chat".to_owned())]);
        assert_eq!(
            keys(Lane::of("/chat", &rooms(&["b", "a", "b"]))),
            vec![
                ("room:/chat:b".to_owned(), "sb:room:/chat:b".to_owned()),
                ("room:/chat:a".to_owned(), "sb:room:/chat:a".to_owned())
            ]
        );
    }

    #[test]
    fn stripes_are_in_range_and_stable() {
        assert!((0..1000).all(|i| stripe(&room_key("/", &i.to_string())) < STRIPES));
        assert_eq!(stripe("room:/chat:general"), stripe("room:/chat:general"));
    }
}
