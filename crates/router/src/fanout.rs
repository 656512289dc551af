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
//!    packet under `id_field`, if asked, numbers it in each lane, and adds
//!    one delivery to the batch of each gateway that holds members of any
//!    of its rooms (for the namespace: any member of it) and to no other;
//! 3. publishes the group's batches ([`batcher`](crate::batcher)) in the
//!    same pipeline as the next group's appends, or alone when nothing else
//!    queued: one round trip per group in all.
//!
//! One task doing all of it in queue order, on one connection, is what
//! makes deliveries leave in offset order, with no lock held across a round
//! trip; grouping is what makes it cheap under load: a group is what arrived
//! during the previous round trip (a group commit), so there is no timer
//! and an idle room waits for nothing. [`Pending::finish`] waits until the
//! batches carrying the broadcast went out; a gateway's session keeps its
//! publishes in order by starting them in turn and lets the waits overlap.
//!
//! When a round trip fails, each non-volatile broadcast of the group it
//! appended fails with the error, as does each broadcast whose batches it
//! carried, and every one that was queued before the failure (it would
//! meet the same outage, one timeout per group): during an outage none
//! waits much longer than two timeouts. Broadcasts queued later try again.
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

use crate::batcher::{Batches, Messages};
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

/// A broadcast past its sequential stage: queued for the appender, which
/// appends, numbers and queues it for every gateway in arrival order;
/// [`finish`](Self::finish) waits for that and for its batches.
#[derive(Debug)]
#[must_use = "a publish is acknowledged only once its batches went out"]
pub struct Pending {
    outcome: oneshot::Receiver<Result<Published, RouterError>>,
}

impl Pending {
    /// Waits until it was appended and every batch carrying it was
    /// published: the outcome of the broadcast.
    pub async fn finish(self) -> Result<Published, RouterError> {
        let outcome = self.outcome.await.unwrap_or_else(|_| Err(shutting_down()));
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

/// Appending, numbering and queueing broadcasts: the handle of the
/// appender task.
pub(crate) struct Fanout {
    jobs: mpsc::Sender<Job>,
}

/// A broadcast for the appender.
struct Job {
    lanes: Vec<Lane>,
    publish: Publish,
    /// What its lanes' streams get (the packet before `id_field` is
    /// written); `None` for a volatile broadcast.
    entry: Option<Bytes>,
    arrived: Instant,
    done: oneshot::Sender<Result<Published, RouterError>>,
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
        let (jobs, queue) = mpsc::channel(config.batch.queue.max(1));
        let appender = Appender {
            broker,
            retention: config.retention,
            table,
            router_id: Arc::from(router_id.as_str()),
            max_deliveries: config.batch.max_deliveries,
            failed: None,
        };
        tokio::spawn(appender.run(queue));
        Self { jobs }
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
        let (done, outcome) = oneshot::channel();
        let job = Job { lanes, publish, entry, arrived, done };
        self.jobs.send(job).await.map_err(|_| shutting_down())?;
        Ok(Pending { outcome })
    }
}

/// The task that appends broadcasts to their streams, numbers them and
/// publishes them to their gateways, one group at a time.
struct Appender {
    broker: Arc<dyn Broker>,
    retention: Retention,
    table: Arc<Mutex<RoomTable>>,
    router_id: Arc<str>,
    max_deliveries: usize,
    /// The last failure of a round trip, and when.
    failed: Option<(Instant, RouterError)>,
}

/// A group appended and numbered, whose batches are still to be published,
/// and the broadcasts that then succeed.
#[derive(Default)]
struct Outgoing {
    messages: Messages,
    waiting: Vec<(oneshot::Sender<Result<Published, RouterError>>, Published)>,
}

impl Outgoing {
    /// Tells every broadcast of the group how its batches went.
    fn finish(self, heard: Result<&[usize], &RouterError>) {
        self.messages.record(heard.map_err(|_| ()));
        for (done, published) in self.waiting {
            // A publisher that stopped waiting does not mind.
            let _ = done.send(heard.map(|_| published).map_err(Clone::clone));
        }
    }
}

impl Appender {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut group = Vec::with_capacity(MAX_APPENDS);
        let mut outgoing: Option<Outgoing> = None;
        loop {
            if outgoing.is_none() {
                if queue.recv_many(&mut group, MAX_APPENDS).await == 0 {
                    break;
                }
            } else {
                // Batches wait to go out: they take along what queued, and
                // wait for nothing more.
                while group.len() < MAX_APPENDS {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
            }
            outgoing = self.step(outgoing.take(), &mut group).await;
        }
    }

    /// One round trip: publishes the previous group's batches and appends
    /// this group, in one pipeline; then numbers this group and puts its
    /// batches together, for the next round trip.
    async fn step(&mut self, previous: Option<Outgoing>, group: &mut Vec<Job>) -> Option<Outgoing> {
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
        let publishes = previous.as_ref().map_or(&[][..], |previous| &previous.messages.publishes[..]);
        let (heard, mut offsets) = match self.broker.publish_then_append(publishes, &appends, self.retention).await {
            Ok((heard, offsets)) => (Ok(heard), offsets.into_iter()),
            Err(error) => {
                let error = RouterError::from(error);
                self.failed = Some((Instant::now(), error.clone()));
                for job in jobs.extract_if(.., |job| job.entry.is_some()) {
                    let _ = job.done.send(Err(error.clone()));
                }
                (Err(error), Vec::new().into_iter())
            }
        };
        if let Some(previous) = previous {
            previous.finish(heard.as_deref());
        }

        let mut batches = Batches::default();
        let mut next = Outgoing::default();
        for job in jobs {
            let own: Vec<String> =
                if job.entry.is_some() { offsets.by_ref().take(job.lanes.len()).collect() } else { Vec::new() };
            match self.number(&job.lanes, job.publish, own, &mut batches) {
                // Delivered to nobody: done now.
                Ok(published) if published.gateways == 0 => {
                    let _ = job.done.send(Ok(published));
                }
                Ok(published) => next.waiting.push((job.done, published)),
                Err(error) => {
                    let _ = job.done.send(Err(error));
                }
            }
        }
        next.messages = batches.into_messages(&self.router_id, self.max_deliveries);
        (!next.waiting.is_empty() || !next.messages.is_empty()).then_some(next)
    }

    /// Numbers an appended broadcast (at `offsets`) in its lanes and adds
    /// its delivery to the batch of every gateway with members.
    fn number(
        &self,
        lanes: &[Lane],
        publish: Publish,
        offsets: Vec<String>,
        batches: &mut Batches,
    ) -> Result<Published, RouterError> {
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
        for gateway in &gateways {
            batches.add(gateway, delivery.clone());
        }
        Ok(Published { offsets, gateways: gateways.len() })
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
