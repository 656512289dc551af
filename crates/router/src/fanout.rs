//! `Fanout`: one broadcast, from the owner to the gateways that need it.
//!
//! A broadcast goes to one or more rooms of a namespace, or to the whole
//! namespace (no rooms). Each room, and the namespace's own broadcasts, is
//! a *lane*: it has an ownership key (`room:<nsp>:<room>`, `nsp:<nsp>`), a
//! stream (`sb:` + key: `sb:room:<nsp>:<room>`, `sb:nsp:<nsp>`) and a
//! sequence.
//!
//! [`Router::start_publish`](crate::Router::start_publish) encodes the
//! stream entry and queues the broadcast for the router's one *appender*
//! task, in call order. The appender takes whatever queued meanwhile (up to
//! 512 broadcasts) as a group, and
//!
//! 1. appends each, unless volatile, to each lane's stream, the recovery
//!    log, all in one pipeline (one round trip to Redis for the group; Redis
//!    runs a connection's commands in order, so ids follow queue order): one
//!    protobuf `Delivery` (see [`wire`](crate::wire)) per entry, whose id is
//!    the offset; the entry says whether it is also history (`store`), and
//!    under which key a reader writes the id into a kept message
//!    (`id_field`);
//! 2. then, for each broadcast in queue order, writes the entry id into the
//!    packet under `id_field`, if asked, numbers it in each lane, and
//!    queues one delivery per gateway that holds members of any of its
//!    rooms (for the namespace: any member of it) and to no other.
//!
//! One task doing both in queue order is what makes deliveries leave in
//! offset order, with no lock held across a round trip; grouping is what
//! makes the appends cheap under load: a group is what arrived during the
//! previous group's round trip (a group commit), so there is no timer and
//! an idle room waits for nothing. [`Pending::finish`] waits for the group
//! and then for the batches carrying the broadcast; a gateway's session
//! keeps its publishes in order by starting them in turn and lets the waits
//! overlap.
//!
//! When a group's appends fail, each of its non-volatile broadcasts fails
//! with the error, and so does every one that was queued before the failure
//! (it would meet the same outage, one timeout per group): during an outage
//! none waits much longer than two timeouts. Broadcasts queued later try
//! again.
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
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::batcher::{Batchers, Outcome};
use crate::config::RouterConfig;
use crate::ownership::{nsp_key, room_key};
use crate::rooms::RoomTable;
use crate::sync::lock;
use crate::wire::{encode_delivery, encode_entry};
use crate::{GatewayId, RouterError, RouterId};

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

/// Broadcasts taken into one pipeline of appends at most.
const MAX_APPENDS: usize = 512;
/// Broadcasts waiting for the appender before publishers wait.
const QUEUE: usize = 4096;

/// A broadcast past its sequential stage: queued for the appender, which
/// appends, numbers and queues it for every gateway in arrival order;
/// [`finish`](Self::finish) waits for that and for its batches.
#[derive(Debug)]
#[must_use = "a publish is acknowledged only once its batches went out"]
pub struct Pending {
    queued: oneshot::Receiver<Result<Queued, RouterError>>,
}

/// What the appender made of a broadcast.
#[derive(Debug)]
struct Queued {
    offsets: Vec<String>,
    batches: Vec<oneshot::Receiver<Outcome>>,
}

impl Pending {
    /// Waits until it was appended and every batch carrying it was
    /// published: the outcome of the broadcast.
    pub async fn finish(self) -> Result<Published, RouterError> {
        let outcome = match self.queued.await.unwrap_or_else(|_| Err(shutting_down())) {
            Ok(queued) => queued.finish().await,
            Err(error) => Err(error),
        };
        metrics::counter!(PUBLISHES, "outcome" => outcome_label(outcome.as_ref().err())).increment(1);
        outcome
    }
}

impl Queued {
    async fn finish(self) -> Result<Published, RouterError> {
        let gateways = self.batches.len();
        for batch in self.batches {
            batch.await.unwrap_or_else(|_| Err(shutting_down()))?;
        }
        Ok(Published { offsets: self.offsets, gateways })
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

/// Appending, numbering and queueing broadcasts: the handle of the
/// appender task.
pub(crate) struct Fanout {
    jobs: mpsc::Sender<Job>,
    batchers: Arc<Batchers>,
}

/// A broadcast for the appender.
struct Job {
    lanes: Vec<Lane>,
    publish: Publish,
    /// What its lanes' streams get (the packet before `id_field` is
    /// written); `None` for a volatile broadcast.
    entry: Option<Bytes>,
    arrived: Instant,
    done: oneshot::Sender<Result<Queued, RouterError>>,
}

impl Fanout {
    /// Starts the appender task; it ends once the fanout is dropped and
    /// what was queued is done.
    pub(crate) fn new(
        router_id: &RouterId,
        broker: Arc<dyn Broker>,
        table: Arc<Mutex<RoomTable>>,
        config: &RouterConfig,
    ) -> Self {
        let batchers = Arc::new(Batchers::new(router_id, broker.clone(), config.batch));
        let (jobs, queue) = mpsc::channel(QUEUE);
        let appender =
            Appender { broker, retention: config.retention, table, batchers: batchers.clone(), failed: None };
        tokio::spawn(appender.run(queue));
        Self { jobs, batchers }
    }

    pub(crate) fn forget_gateway(&self, gateway: &GatewayId) {
        self.batchers.close(gateway);
    }

    /// The sequential stage of `publish` (which arrived at `arrived`) to
    /// its `lanes` (which the caller checked this router owns, and the
    /// publish for validity): queued for the appender, in call order.
    pub(crate) async fn begin(
        &self,
        lanes: Vec<Lane>,
        publish: Publish,
        arrived: Instant,
    ) -> Result<Pending, RouterError> {
        let entry = (!publish.volatile).then(|| {
            encode_entry(&v1::Delivery {
                nsp: publish.nsp.clone(),
                rooms: lanes.iter().filter_map(|lane| lane.room.clone()).collect(),
                except: publish.except.clone(),
                volatile: false,
                stamps: Vec::new(),
                packet: Some(publish.packet.clone()),
                store: publish.store,
                id_field: publish.id_field.clone(),
            })
        });
        let (done, queued) = oneshot::channel();
        let job = Job { lanes, publish, entry, arrived, done };
        self.jobs.send(job).await.map_err(|_| shutting_down())?;
        Ok(Pending { queued })
    }
}

/// The task that appends broadcasts to their streams, numbers them and
/// queues them for their gateways, one group at a time.
struct Appender {
    broker: Arc<dyn Broker>,
    retention: Retention,
    table: Arc<Mutex<RoomTable>>,
    batchers: Arc<Batchers>,
    /// The last failure to append, and when.
    failed: Option<(Instant, RouterError)>,
}

impl Appender {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut group = Vec::with_capacity(MAX_APPENDS);
        while queue.recv_many(&mut group, MAX_APPENDS).await > 0 {
            self.append(&mut group).await;
        }
    }

    /// Appends a group of broadcasts in one pipeline, then numbers and
    /// queues each in turn.
    async fn append(&mut self, group: &mut Vec<Job>) {
        let mut appends = Vec::new();
        let mut jobs = Vec::with_capacity(group.len());
        for job in group.drain(..) {
            if job.entry.is_some()
                && let Some((_, error)) = self.failed.as_ref().filter(|(at, _)| *at >= job.arrived)
            {
                // It waited behind an outage: it fails with it, at once.
                let _ = job.done.send(Err(error.clone()));
                continue;
            }
            if let Some(entry) = &job.entry {
                appends.extend(job.lanes.iter().map(|lane| (lane.stream(), entry.clone())));
            }
            jobs.push(job);
        }
        let mut offsets = match self.broker.stream_append_many(&appends, self.retention).await {
            Ok(offsets) => offsets.into_iter(),
            Err(error) => {
                let error = RouterError::from(error);
                self.failed = Some((Instant::now(), error.clone()));
                for job in jobs.extract_if(.., |job| job.entry.is_some()) {
                    let _ = job.done.send(Err(error.clone()));
                }
                Vec::new().into_iter()
            }
        };
        for job in jobs {
            let own: Vec<String> =
                if job.entry.is_some() { offsets.by_ref().take(job.lanes.len()).collect() } else { Vec::new() };
            let outcome = self.queue(&job.lanes, job.publish, own).await;
            let _ = job.done.send(outcome);
        }
    }

    /// Numbers an appended broadcast (at `offsets`) in its lanes and queues
    /// it for every gateway with members.
    async fn queue(&self, lanes: &[Lane], publish: Publish, offsets: Vec<String>) -> Result<Queued, RouterError> {
        let packet = match (publish.id_field.as_str(), offsets.first()) {
            ("", _) => publish.packet,
            (field, Some(offset)) => publish.packet.with_field(field, offset).ok_or_else(|| {
                RouterError::Invalid(format!("id_field {field:?}: the first argument is not an object"))
            })?,
            (field, None) => return Err(RouterError::Invalid(format!("id_field {field:?} on a volatile publish"))),
        };
        let rooms: Vec<String> = lanes.iter().filter_map(|lane| lane.room.clone()).collect();
        let (stamps, gateways) = {
            let mut table = lock(&self.table);
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
            store: publish.store && !publish.volatile,
            id_field: String::new(),
        });
        let mut batches = Vec::with_capacity(gateways.len());
        for gateway in &gateways {
            batches.push(self.batchers.enqueue(gateway, delivery.clone()).await?);
        }
        Ok(Queued { offsets, batches })
    }
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
}
