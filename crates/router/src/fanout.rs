//! `Fanout`: one broadcast, from the owner to the gateways that need it.
//!
//! A broadcast goes to one or more rooms of a namespace, or to the whole
//! namespace (no rooms). Each room, and the namespace's own broadcasts, is
//! a *lane*: it has an ownership key (`room:<nsp>:<room>`, `nsp:<nsp>`), a
//! stream (`sb:` + key: `sb:room:<nsp>:<room>`, `sb:nsp:<nsp>`) and a
//! sequence. For each broadcast the owner, holding its lanes' locks:
//!
//! 1. appends it, unless volatile, to each lane's stream (one `XADD` with
//!    retention each), the recovery log; the entry id is the offset, and
//!    the entry says whether it is also history (`store`);
//! 2. numbers it in each lane;
//! 3. queues one [`Delivery`] per gateway that holds members of any of its
//!    rooms (for the namespace: any member of it) and to no other.
//!
//! Holding the lane locks from the append to the queueing is what makes
//! deliveries leave in offset order: two broadcasts to one room cannot
//! overtake each other between Redis numbering them and the batcher
//! queueing them. Locks are striped (a fixed array, by hash of the key) so
//! that their number stays bounded; a broadcast to several rooms takes its
//! stripes in index order, which cannot deadlock. Since appends to one lane
//! take turns, an outage would make each waiting broadcast take its own
//! command timeout in turn; instead a failure is noted on the stripe, and
//! the broadcasts that were waiting for it fail with it at once (those that
//! come later try again), so none waits much longer than two timeouts.
//!
//! The caller then waits for the batches carrying its deliveries, and hears
//! [`RouterError::Unavailable`] if the broker failed at any step: a
//! broadcast is acknowledged only when it was handed to every gateway. A
//! failure after an append leaves the packet in the stream, where a gateway
//! that notices the sequence gap finds it; the client was told it failed,
//! so it may arrive at most once more if it retries.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use switchboard_broker::{Broker, Retention};
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};
use tokio::time::Instant;

use crate::batch::{Delivery, Stamp, encode_batch};
use crate::batcher::Batchers;
use crate::config::RouterConfig;
use crate::ownership::{hash64, nsp_key, room_key};
use crate::rooms::RoomTable;
use crate::sync::lock;
use crate::{GatewayId, RouterError, RouterId};

/// Lock stripes: enough that unrelated rooms rarely wait on each other.
const STRIPES: usize = 256;

/// Counter of broadcasts, label `outcome` (`ok`, `unavailable`).
pub const PUBLISHES: &str = "switchboard_router_publishes_total";

/// A broadcast, as a gateway hands it to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub nsp: String,
    /// Target rooms (socket ids included); empty for the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms (or socket ids) left out.
    pub except: Vec<String>,
    /// Droppable under load; not appended to the streams, so neither kept
    /// nor recovered, and without an offset.
    pub volatile: bool,
    /// Part of the room's history too, besides the recovery log that every
    /// non-volatile broadcast goes to (the stream entry is marked so).
    /// Ignored with `volatile`.
    pub store: bool,
    /// The encoded packet, opaque to the router.
    pub packet: Bytes,
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
    router_id: String,
    broker: Arc<dyn Broker>,
    retention: Retention,
    stripes: Box<[AsyncMutex<Stripe>]>,
    batchers: Batchers,
}

/// One lock stripe: the last broker failure under it.
#[derive(Debug, Default)]
struct Stripe {
    failed: Option<(Instant, RouterError)>,
}

impl Fanout {
    pub(crate) fn new(router_id: &RouterId, broker: Arc<dyn Broker>, config: &RouterConfig) -> Self {
        Self {
            router_id: router_id.to_string(),
            retention: config.retention,
            stripes: (0..STRIPES).map(|_| AsyncMutex::new(Stripe::default())).collect(),
            batchers: Batchers::new(router_id, broker.clone(), config.batch),
            broker,
        }
    }

    pub(crate) fn forget_gateway(&self, gateway: &GatewayId) {
        self.batchers.close(gateway);
    }

    /// Broadcasts `publish` to the gateways `table` knows for its lanes
    /// (which the caller checked this router owns).
    pub(crate) async fn publish(
        &self,
        table: &Mutex<RoomTable>,
        lanes: &[Lane],
        publish: Publish,
    ) -> Result<Published, RouterError> {
        let outcome = self.deliver(table, lanes, publish).await;
        let label = if outcome.is_ok() { "ok" } else { "unavailable" };
        metrics::counter!(PUBLISHES, "outcome" => label).increment(1);
        outcome
    }

    async fn deliver(
        &self,
        table: &Mutex<RoomTable>,
        lanes: &[Lane],
        publish: Publish,
    ) -> Result<Published, RouterError> {
        let mut stripes: Vec<usize> = lanes.iter().map(|lane| stripe(&lane.key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let waited_since = Instant::now();
        let mut guards = Vec::with_capacity(stripes.len());
        for index in stripes {
            guards.push(self.stripes[index].lock().await);
        }
        let failed_meanwhile =
            guards.iter().filter_map(|stripe| stripe.failed.as_ref()).find(|(at, _)| *at >= waited_since);
        if let Some((_, error)) = failed_meanwhile {
            return Err(error.clone());
        }

        let rooms: Vec<String> = lanes.iter().filter_map(|lane| lane.room.clone()).collect();
        let mut offsets = Vec::new();
        if !publish.volatile {
            let entry = encode_batch(
                &self.router_id,
                &[Delivery {
                    nsp: publish.nsp.clone(),
                    rooms: rooms.clone(),
                    except: publish.except.clone(),
                    volatile: false,
                    store: publish.store,
                    stamps: Vec::new(),
                    packet: publish.packet.clone(),
                }],
            );
            for lane in lanes {
                match self.broker.stream_append(&lane.stream(), entry.clone(), self.retention).await {
                    Ok(offset) => offsets.push(offset),
                    Err(error) => return Err(note_failure(&mut guards, error.into())),
                }
            }
        }

        let (stamps, gateways) = {
            let mut table = lock(table);
            let stamps: Vec<Stamp> = lanes
                .iter()
                .enumerate()
                .map(|(i, lane)| Stamp {
                    seq: table.next_seq(&publish.nsp, lane.room.as_deref()),
                    offset: offsets.get(i).cloned(),
                })
                .collect();
            let gateways: BTreeSet<GatewayId> = if rooms.is_empty() {
                table.namespace_gateways(&publish.nsp).into_iter().collect()
            } else {
                rooms.iter().flat_map(|room| table.gateways_of(&publish.nsp, room)).collect()
            };
            (stamps, gateways)
        };

        let delivery = Arc::new(Delivery {
            nsp: publish.nsp,
            rooms,
            except: publish.except,
            volatile: publish.volatile,
            store: publish.store && !publish.volatile,
            stamps,
            packet: publish.packet,
        });
        let mut pending = Vec::with_capacity(gateways.len());
        for gateway in &gateways {
            match self.batchers.enqueue(gateway, delivery.clone()).await {
                Ok(outcome) => pending.push(outcome),
                Err(error) => return Err(note_failure(&mut guards, error)),
            }
        }
        // Queued in order: the next broadcast to these lanes may go ahead
        // while this one waits for its batches.
        drop(guards);

        for outcome in pending {
            outcome.await.map_err(|_| RouterError::Unavailable("the router is shutting down".to_owned()))??;
        }
        Ok(Published { offsets, gateways: gateways.len() })
    }
}

/// Notes a broker failure on the stripes held, for the broadcasts waiting
/// on them; the error, to return.
fn note_failure(stripes: &mut [MutexGuard<'_, Stripe>], error: RouterError) -> RouterError {
    let now = Instant::now();
    for stripe in stripes {
        stripe.failed = Some((now, error.clone()));
    }
    error
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
