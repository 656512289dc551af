//! What arrives on this gateway's channel `sb:gw:<id>`: batches of
//! deliveries from the routers, handed to the local members in order.
//!
//! One task reads the channel, so deliveries keep the order in which the
//! routers published them (per room, the owner's order). Each delivery is
//! encoded once, with its offset, and queued for each local member of its
//! rooms (the namespace's sockets for a namespace-wide one), minus the
//! exclusions; its stamps move this gateway's positions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_broker::{Broker, BrokerError};
use switchboard_gateway::Gateway;
use switchboard_proto::prost::Message as _;
use switchboard_proto::v1::{self, channel_message};
use tokio_util::sync::CancellationToken;

use crate::commands::{self, Requests};
use crate::lanes::{lane_key, offset, tag};
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
                        handle(&this, gateway, bytes);
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

fn handle(this: &Channel, gateway: &Gateway, bytes: Bytes) {
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
                deliver(gateway, &this.sessions, delivery);
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

fn deliver(gateway: &Gateway, sessions: &Sessions, delivery: v1::Delivery) {
    metrics::counter!(DELIVERIES).increment(1);
    let nsp_name = delivery.nsp.as_str();
    // Positions move for every lane, whether or not a socket is left here.
    let mut first_offset = None;
    for (i, stamp) in delivery.stamps.iter().enumerate() {
        if stamp.offset.is_empty() {
            continue;
        }
        let lane = lane_key(nsp_name, delivery.rooms.get(i).map(String::as_str));
        if first_offset.is_none() {
            first_offset = Some(offset(&stamp.offset, &tag(&lane)));
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
