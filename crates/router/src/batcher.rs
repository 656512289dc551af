//! Delivery batches: what one group of broadcasts (see
//! [`fanout`](crate::fanout)) gives each gateway, as one `PUBLISH` on
//! `sb:gw:<gateway id>` per `max_deliveries` at most: a protobuf
//! `ChannelMessage` holding a `DeliveryBatch` (see [`wire`](crate::wire)).
//!
//! A group is what queued for the router's appender during the previous
//! round trip to Redis, so batches grow by themselves under load, and an
//! idle room's delivery waits for nothing. The appender sends a group's
//! batches in the same pipeline as the next group's appends (or alone, when
//! nothing else queued), on the one command connection: each gateway's
//! channel gets its deliveries in the order the appender numbered them.
//!
//! A `PUBLISH` that reached no subscriber is not a failure: the gateway is
//! gone or reconnecting, its lease will end, and its clients recover stored
//! packets from the streams.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::GatewayId;
use crate::wire::encode_batch;

/// Counter of batches published, label `outcome` (`ok`, `unheard`, `failed`).
pub const BATCHES: &str = "switchboard_router_batches_total";
/// Histogram of deliveries per batch.
pub const BATCH_SIZE: &str = "switchboard_router_batch_deliveries";

/// The channel a gateway receives its batches on: `sb:gw:<id>`.
pub fn gateway_channel(gateway: &GatewayId) -> String {
    format!("sb:gw:{gateway}")
}

/// The deliveries of one group, per gateway, in the order they were added.
#[derive(Default)]
pub(crate) struct Batches {
    per_gateway: BTreeMap<GatewayId, Vec<Bytes>>,
}

/// A group's batches as `PUBLISH`es: `(channel, message)`, and how many
/// deliveries each carries.
#[derive(Default)]
pub(crate) struct Messages {
    pub(crate) publishes: Vec<(String, Bytes)>,
    pub(crate) sizes: Vec<usize>,
}

impl Batches {
    /// Adds an encoded delivery (see [`wire`](crate::wire)) for `gateway`.
    pub(crate) fn add(&mut self, gateway: &GatewayId, delivery: Bytes) {
        match self.per_gateway.get_mut(gateway) {
            Some(deliveries) => deliveries.push(delivery),
            None => {
                self.per_gateway.insert(gateway.clone(), vec![delivery]);
            }
        }
    }

    /// The `PUBLISH`es carrying them, `max` deliveries each at most, signed
    /// with `router_id`.
    pub(crate) fn into_messages(self, router_id: &str, max: usize) -> Messages {
        let mut messages = Messages::default();
        for (gateway, deliveries) in self.per_gateway {
            let channel = gateway_channel(&gateway);
            for chunk in deliveries.chunks(max.max(1)) {
                messages.publishes.push((channel.clone(), encode_batch(router_id, chunk.iter())));
                messages.sizes.push(chunk.len());
            }
        }
        messages
    }
}

impl Messages {
    pub(crate) fn is_empty(&self) -> bool {
        self.publishes.is_empty()
    }

    /// Records how they went: the subscribers each reached, or a failure.
    pub(crate) fn record(&self, heard: Result<&[usize], ()>) {
        for (i, size) in self.sizes.iter().enumerate() {
            let label = match heard {
                Ok(heard) if heard.get(i).copied().unwrap_or(0) == 0 => "unheard",
                Ok(_) => "ok",
                Err(()) => "failed",
            };
            metrics::counter!(BATCHES, "outcome" => label).increment(1);
            metrics::histogram!(BATCH_SIZE).record(*size as f64);
        }
    }
}
