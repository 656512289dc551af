//! `Batchers`: one queue and task per gateway that turns deliveries into
//! batches, one `PUBLISH` on `sb:gw:<gateway id>` each: a protobuf
//! `ChannelMessage` holding a `DeliveryBatch` (see [`wire`](crate::wire)).
//!
//! By default (a zero `linger`) a batch is what queued while the previous
//! `PUBLISH` was in flight, up to `max_deliveries`: under load batches grow
//! by themselves, and an idle room's delivery waits for nothing. With a
//! `linger` (`SWITCHBOARD_ROUTER_BATCH_LINGER=1ms`) a batch leaves when it
//! holds `max_deliveries` or `linger` after its first delivery arrived: on a
//! cluster of 1,000 clients in rooms of 10 that cost 7 % less CPU per
//! delivery for twice the p99 latency (5.4 against 2.3 ms;
//! docs/benchmarks.md). One task per gateway publishes its batches one
//! after the other, which keeps the order deliveries were queued in: the
//! order in which [`fanout`](crate::fanout) numbered them.
//!
//! Each delivery carries a one-shot sender that learns how its batch went,
//! so a publisher hears of a failed `PUBLISH` instead of its packet being
//! dropped without a word; after a failure, whatever is queued fails at
//! once too, so that during an outage no publisher waits longer than about
//! one command timeout. A `PUBLISH` that reached no subscriber is not a
//! failure: the gateway is gone or reconnecting, its lease will end, and
//! its clients recover stored packets from the streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use switchboard_broker::Broker;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::sync::lock;
use crate::wire::encode_batch;
use crate::{GatewayId, RouterError, RouterId};

/// Counter of batches published, label `outcome` (`ok`, `unheard`, `failed`).
pub const BATCHES: &str = "switchboard_router_batches_total";
/// Histogram of deliveries per batch.
pub const BATCH_SIZE: &str = "switchboard_router_batch_deliveries";

/// How a delivery's batch went.
pub(crate) type Outcome = Result<(), RouterError>;

/// The channel a gateway receives its batches on: `sb:gw:<id>`.
pub fn gateway_channel(gateway: &GatewayId) -> String {
    format!("sb:gw:{gateway}")
}

struct Queued {
    /// An encoded `Delivery` (see [`wire`](crate::wire)).
    delivery: Bytes,
    done: oneshot::Sender<Outcome>,
}

/// The per-gateway queues; their tasks end when the queue is dropped (the
/// gateway is forgotten, or the router is) after publishing what is queued.
pub(crate) struct Batchers {
    /// This router's id, in every batch.
    router_id: Arc<str>,
    broker: Arc<dyn Broker>,
    config: BatchConfig,
    queues: Mutex<HashMap<GatewayId, mpsc::Sender<Queued>>>,
}

impl Batchers {
    pub(crate) fn new(router_id: &RouterId, broker: Arc<dyn Broker>, config: BatchConfig) -> Self {
        Self { router_id: Arc::from(router_id.as_str()), broker, config, queues: Mutex::new(HashMap::new()) }
    }

    /// Queues an encoded delivery for `gateway` (waiting while its queue is
    /// full); the receiver learns how its batch went.
    pub(crate) async fn enqueue(
        &self,
        gateway: &GatewayId,
        delivery: Bytes,
    ) -> Result<oneshot::Receiver<Outcome>, RouterError> {
        let (done, outcome) = oneshot::channel();
        let queue = self.queue(gateway);
        queue
            .send(Queued { delivery, done })
            .await
            .map_err(|_| RouterError::Unavailable(format!("the batcher of gateway {gateway} stopped")))?;
        Ok(outcome)
    }

    /// Drops the queue of a gateway that is gone; what it holds is still
    /// published.
    pub(crate) fn close(&self, gateway: &GatewayId) {
        lock(&self.queues).remove(gateway);
    }

    fn queue(&self, gateway: &GatewayId) -> mpsc::Sender<Queued> {
        let mut queues = lock(&self.queues);
        if let Some(queue) = queues.get(gateway).filter(|queue| !queue.is_closed()) {
            return queue.clone();
        }
        let (queue, deliveries) = mpsc::channel(self.config.queue.max(1));
        let channel = Channel { router_id: self.router_id.clone(), name: gateway_channel(gateway) };
        tokio::spawn(run(self.broker.clone(), channel, self.config, deliveries));
        queues.insert(gateway.clone(), queue.clone());
        queue
    }
}

/// Where a batcher publishes, as whom.
struct Channel {
    router_id: Arc<str>,
    name: String,
}

/// The task of one gateway: batch, publish, tell, until the queue closes.
async fn run(broker: Arc<dyn Broker>, channel: Channel, config: BatchConfig, mut deliveries: mpsc::Receiver<Queued>) {
    let max = config.max_deliveries.max(1);
    let mut batch: Vec<Queued> = Vec::with_capacity(max);
    while let Some(first) = deliveries.recv().await {
        batch.push(first);
        if config.linger.is_zero() {
            // No timer: what queued while the previous batch was being
            // published goes now, in one batch. Under load batches grow by
            // themselves; an idle room's delivery waits for nothing.
            while batch.len() < max {
                match deliveries.try_recv() {
                    Ok(queued) => batch.push(queued),
                    Err(_) => break,
                }
            }
        } else {
            let deadline = Instant::now() + config.linger;
            while batch.len() < max {
                match tokio::time::timeout_at(deadline, deliveries.recv()).await {
                    Ok(Some(queued)) => batch.push(queued),
                    // Closed: publish what we have, then the outer loop ends.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if let Err(error) = publish(&*broker, &channel, &mut batch).await {
            // The broker is out: what is queued would fail the same way, one
            // timeout per batch. Its publishers hear it now, not in turn.
            while let Ok(queued) = deliveries.try_recv() {
                let _ = queued.done.send(Err(error.clone()));
            }
        }
    }
}

async fn publish(broker: &dyn Broker, channel: &Channel, batch: &mut Vec<Queued>) -> Outcome {
    let payload = encode_batch(&channel.router_id, batch.iter().map(|queued| &queued.delivery));
    let outcome = broker.publish(&channel.name, payload).await;
    let label = match &outcome {
        Ok(0) => "unheard",
        Ok(_) => "ok",
        Err(_) => "failed",
    };
    metrics::counter!(BATCHES, "outcome" => label).increment(1);
    metrics::histogram!(BATCH_SIZE).record(batch.len() as f64);
    if let Err(error) = &outcome {
        tracing::debug!(channel = channel.name, %error, deliveries = batch.len(), "batch not published");
    }
    let outcome: Outcome = outcome.map(|_| ()).map_err(RouterError::from);
    for queued in batch.drain(..) {
        // A publisher that stopped waiting does not mind.
        let _ = queued.done.send(outcome.clone());
    }
    outcome
}
