//! What arrives on this gateway's channel `sb:gw:<id>`: batches of
//! deliveries from the routers, handed to the local members in order.
//!
//! One task reads the channel, so deliveries keep the order in which the
//! routers published them (per room, the owner's order). Each delivery is
//! encoded once, with its offset, and queued for each local member of its
//! rooms (the namespace's sockets for a namespace-wide one), minus the
//! exclusions; its stamps move this gateway's positions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use switchboard_broker::{Broker, BrokerError};
use switchboard_gateway::Gateway;
use switchboard_gateway::cluster::stream_id_key;
use switchboard_proto::prost::Message as _;
use switchboard_proto::v1::{self, channel_message};
use tokio_util::sync::CancellationToken;

use crate::commands::{self, Requests};
use crate::lanes::{lane_key, offset, stream, tag};
use crate::sessions::Sessions;

/// Counter: deliveries received from routers.
pub const DELIVERIES: &str = "switchboard_gateway_cluster_deliveries_total";

/// Reads the channel until `stop`, subscribing again after a failure.
pub(crate) struct Channel {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) gateway_id: String,
    pub(crate) channel: String,
    pub(crate) gateway: Arc<std::sync::OnceLock<Gateway>>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) requests: Arc<Requests>,
    pub(crate) lanes: Arc<Lanes>,
}

pub(crate) async fn run(this: Channel, stop: CancellationToken) {
    let Channel { broker, channel, .. } = &this;
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let mut subscription = match broker.subscribe(channel).await {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%channel, %error, "cannot subscribe to the gateway channel; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = subscription.recv() => message,
            };
            match message {
                Ok(bytes) => {
                    if let Some(gateway) = this.gateway.get() {
                        handle(&this, gateway, bytes).await;
                    }
                }
                Err(BrokerError::Lagged(lost)) => {
                    metrics::counter!("switchboard_gateway_cluster_lagged_total").increment(lost);
                    tracing::warn!(lost, "gateway channel lagged: deliveries lost");
                }
                Err(error) => {
                    tracing::warn!(%error, "gateway channel closed; subscribing again");
                    break;
                }
            }
        }
    }
}

/// Per lane, where this gateway's deliveries stand: the router that
/// numbers it, the last number and the last stream id seen. A lane is
/// forgotten when the gateway's last member leaves it, so that members who
/// join later are not given what was sent before they came.
#[derive(Default)]
pub(crate) struct Lanes(Mutex<HashMap<String, Seen>>);

impl Lanes {
    pub(crate) fn forget(&self, lane: &str) {
        lock(&self.0).remove(lane);
    }
}

struct Seen {
    router: String,
    seq: u64,
    offset: Option<String>,
}

async fn handle(this: &Channel, gateway: &Gateway, bytes: Bytes) {
    let message = match v1::ChannelMessage::decode(bytes) {
        Ok(message) => message,
        Err(error) => {
            metrics::counter!("switchboard_gateway_cluster_invalid_messages_total").increment(1);
            tracing::warn!(%error, "undecodable message on the gateway channel");
            return;
        }
    };
    match message.message {
        Some(channel_message::Message::Deliveries(batch)) => {
            for delivery in batch.deliveries {
                if let Some(lanes) = repair_gaps(this, gateway, &batch.router_id, &delivery).await {
                    deliver(gateway, &this.sessions, &lanes, delivery);
                }
            }
        }
        Some(channel_message::Message::Reply(reply)) => this.requests.on_reply(reply),
        Some(other) => {
            let Some((nsp, command)) = commands::from_proto(other) else { return };
            metrics::counter!("switchboard_gateway_cluster_commands_total").increment(1);
            tokio::spawn(commands::execute(
                gateway.clone(),
                this.broker.clone(),
                this.gateway_id.clone(),
                message.request_id,
                message.reply_to,
                nsp,
                command,
            ));
        }
        None => {
            metrics::counter!("switchboard_gateway_cluster_unsupported_messages_total").increment(1);
        }
    }
}

/// Entries read at most to repair one gap.
const MAX_REPAIR: usize = 10_000;

/// Before `delivery`: for each of its lanes, when the number jumped (a
/// delivery was lost on the way) or another router numbers it now (a new
/// owner), the entries of the lane's stream between the last one seen and
/// this one are delivered first. Volatile broadcasts are numbered but not
/// stored, so a gap of those only is nothing to repair. Returns the
/// delivery's lane keys (one per stamp), or `None` when the delivery itself
/// was seen already (it came late from a former owner, after a repair): it
/// is not delivered again.
async fn repair_gaps(this: &Channel, gateway: &Gateway, router: &str, delivery: &v1::Delivery) -> Option<Vec<String>> {
    let mut keys = Vec::with_capacity(delivery.stamps.len());
    for (i, stamp) in delivery.stamps.iter().enumerate() {
        let lane = lane_key(&delivery.nsp, delivery.rooms.get(i).map(String::as_str));
        let stored = (!stamp.offset.is_empty()).then(|| stamp.offset.clone());
        let previous = {
            let mut lanes = lock(&this.lanes.0);
            let previous = lanes.get(&lane).map(|seen| (seen.router.clone(), seen.seq, seen.offset.clone()));
            if let (Some((_, _, Some(last))), Some(current)) = (&previous, &stored)
                && stream_id_key(current) <= stream_id_key(last)
            {
                metrics::counter!("switchboard_gateway_cluster_duplicates_total").increment(1);
                return None;
            }
            let offset = stored.or_else(|| previous.as_ref().and_then(|(_, _, offset)| offset.clone()));
            lanes.insert(lane.clone(), Seen { router: router.to_owned(), seq: stamp.seq, offset });
            previous
        };
        keys.push(lane.clone());
        let Some((previous_router, previous_seq, Some(after))): Option<(String, u64, Option<String>)> = previous else {
            continue;
        };
        if previous_router == router && stamp.seq <= previous_seq + 1 {
            continue;
        }
        let entries = match this.broker.stream_range_after(&stream(&lane), &after, MAX_REPAIR).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%lane, %error, "a gap in the deliveries could not be repaired");
                continue;
            }
        };
        let until = (!stamp.offset.is_empty()).then(|| stream_id_key(&stamp.offset)).flatten();
        let mut repaired = 0u64;
        for entry in entries {
            let id = stream_id_key(&entry.id);
            if until.is_some_and(|until| id.is_none_or(|id| id >= until)) {
                break;
            }
            let Ok(mut missed) = switchboard_proto::decode_entry(&entry.data) else { continue };
            let Some(packet) = missed.entry_packet(&entry.id) else { continue };
            missed.packet = Some(packet);
            // Only this lane's room: the other lanes repair themselves.
            missed.rooms = delivery.rooms.get(i).cloned().into_iter().collect();
            missed.stamps = vec![v1::Stamp { seq: 0, offset: entry.id.clone() }];
            if stamp.offset.is_empty()
                && let Some(seen) = lock(&this.lanes.0).get_mut(&lane)
            {
                seen.offset = Some(entry.id.clone());
            }
            deliver(gateway, &this.sessions, std::slice::from_ref(&lane), missed);
            repaired += 1;
        }
        metrics::counter!("switchboard_gateway_cluster_repaired_total").increment(repaired);
        tracing::info!(%lane, repaired, "a gap in the deliveries was repaired from the stream");
    }
    Some(keys)
}

/// Delivers to the local members; `lanes` are the lane keys of the
/// delivery's stamps, in order.
fn deliver(gateway: &Gateway, sessions: &Sessions, lanes: &[String], delivery: v1::Delivery) {
    metrics::counter!(DELIVERIES).increment(1);
    let nsp_name = delivery.nsp.as_str();
    // Positions move for every lane, whether or not a socket is left here.
    let mut first_offset = None;
    for (stamp, lane) in delivery.stamps.iter().zip(lanes) {
        if stamp.offset.is_empty() {
            continue;
        }
        if first_offset.is_none() {
            first_offset = Some(offset(&stamp.offset, &tag(lane)));
        }
        sessions.delivered(lane, &stamp.offset);
    }
    let Some(nsp) = gateway.namespace(nsp_name) else { return };
    let Some(packet) = delivery.packet else { return };
    let rooms = delivery.rooms.iter().map(|r| Arc::from(r.as_str())).collect();
    let except = delivery.except.iter().map(|r| Arc::from(r.as_str())).collect();
    nsp.deliver_remote(
        rooms,
        except,
        delivery.volatile,
        &packet.event,
        &packet.args_array(),
        &packet.attachments,
        first_offset.as_deref(),
    );
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
