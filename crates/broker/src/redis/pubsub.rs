//! The pub/sub side of [`RedisBroker`](super::RedisBroker): one dedicated
//! connection, owned by a background task, that fans each message out to
//! the local subscribers of its channel.
//!
//! The task holds the connection and the set of channels subscribed on it;
//! the channel map (channel to broadcast sender) is shared with the broker,
//! which adds senders when a subscription is made. A subscription's drop
//! hook tells the task, which unsubscribes once a channel has no local
//! subscriber left. When the connection is lost (closed, or a `PING`
//! unanswered) the task reconnects with a growing pause and subscribes again
//! to every channel that still has subscribers, so a subscription lives
//! through an outage: what was published during it is lost (callers repair
//! gaps from streams), what is published after it arrives.
//!
//! The task ends when the broker is dropped; the senders go with it, so
//! every subscription then ends with `Closed`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::{RedisOptions, State};
use crate::{BrokerError, Result, Subscription};

/// The broker's handle on the pub/sub task.
pub(super) struct PubSub {
    channels: Arc<Channels>,
    commands: mpsc::UnboundedSender<Command>,
    capacity: usize,
}

/// Channel name to the sender of its local subscribers.
#[derive(Default)]
struct Channels(Mutex<HashMap<String, broadcast::Sender<Bytes>>>);

enum Command {
    /// Make sure the connection is subscribed to the channel; answer when it is.
    Subscribe(String, oneshot::Sender<Result<()>>),
    /// A subscription was dropped: unsubscribe if it was the last.
    Dropped(String),
}

/// Why [`Task::serve`] returned.
enum End {
    BrokerGone,
    Lost(String),
}

impl PubSub {
    pub(super) fn spawn(client: Client, options: RedisOptions, state: Arc<State>) -> PubSub {
        let channels = Arc::new(Channels::default());
        let (commands, rx) = mpsc::unbounded_channel();
        let capacity = options.subscriber_capacity.max(1);
        let task = Task { client, options, state, channels: channels.clone(), commands: rx };
        tokio::spawn(task.run());
        PubSub { channels, commands, capacity }
    }

    /// A subscription once the connection is subscribed to `channel`;
    /// `Unavailable` if that is not so within `timeout`.
    pub(super) async fn subscribe(&self, channel: &str, timeout: Duration) -> Result<Subscription> {
        let rx = self.channels.receiver(channel, self.capacity);
        let commands = self.commands.downgrade();
        let name = channel.to_owned();
        let subscription = Subscription::with_drop_hook(channel, rx, move || {
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Dropped(name));
            }
        });
        let (reply, answer) = oneshot::channel();
        let gone = || BrokerError::Unavailable("redis pub/sub task has stopped".to_owned());
        self.commands.send(Command::Subscribe(channel.to_owned(), reply)).map_err(|_| gone())?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(()))) => Ok(subscription),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(BrokerError::Unavailable(format!("redis SUBSCRIBE: no answer within {timeout:?}"))),
        }
    }
}

impl Channels {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Bytes>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn receiver(&self, channel: &str, capacity: usize) -> broadcast::Receiver<Bytes> {
        self.lock().entry(channel.to_owned()).or_insert_with(|| broadcast::channel(capacity).0).subscribe()
    }

    /// Forgets `channel` if nobody here listens to it any more; true if so.
    fn forget_if_unused(&self, channel: &str) -> bool {
        let mut channels = self.lock();
        let unused = channels.get(channel).is_some_and(|sender| sender.receiver_count() == 0);
        if unused {
            channels.remove(channel);
        }
        unused
    }

    fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn deliver(&self, channel: &str, message: Bytes) {
        if let Some(sender) = self.lock().get(channel) {
            // No receiver: it was just dropped, and its hook will unsubscribe.
            let _ = sender.send(message);
        }
    }
}

// === impl Task ===

struct Task {
    client: Client,
    options: RedisOptions,
    state: Arc<State>,
    channels: Arc<Channels>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Task {
    async fn run(mut self) {
        let mut delay = self.options.reconnect_delay;
        // A connection was lost or could not be made: the next one counts
        // as a reconnect.
        let mut lost = false;
        loop {
            match tokio::time::timeout(self.options.connect_timeout, self.connect()).await {
                Ok(Ok((sink, stream, subscribed))) => {
                    if lost {
                        self.state.reconnected("pubsub");
                    }
                    delay = self.options.reconnect_delay;
                    self.state.pubsub_connected.store(true, Ordering::Relaxed);
                    let end = self.serve(sink, stream, subscribed).await;
                    self.state.pubsub_connected.store(false, Ordering::Relaxed);
                    match end {
                        End::BrokerGone => return,
                        End::Lost(reason) => tracing::warn!(%reason, "redis pub/sub connection lost"),
                    }
                }
                Ok(Err(error)) => tracing::debug!(%error, "redis pub/sub connection failed"),
                Err(_) => tracing::debug!("redis pub/sub connection timed out"),
            }
            lost = true;
            if !self.pause(delay).await {
                return;
            }
            delay = (delay * 2).min(self.options.reconnect_delay_max);
        }
    }

    /// A new connection, subscribed to every channel with local subscribers.
    async fn connect(&self) -> redis::RedisResult<(PubSubSink, PubSubStream, HashSet<String>)> {
        let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
        let names = self.channels.names();
        if !names.is_empty() {
            sink.subscribe(&names).await?;
        }
        Ok((sink, stream, names.into_iter().collect()))
    }

    /// Delivers messages and carries out commands until the connection is
    /// lost or the broker is dropped.
    async fn serve(&mut self, mut sink: PubSubSink, mut stream: PubSubStream, mut subscribed: HashSet<String>) -> End {
        let timeout = self.options.command_timeout;
        let mut ping = tokio::time::interval(self.options.pubsub_ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return End::BrokerGone,
                    Some(Command::Subscribe(channel, reply)) => {
                        if subscribed.contains(&channel) {
                            let _ = reply.send(Ok(()));
                            continue;
                        }
                        match tokio::time::timeout(timeout, sink.subscribe(&channel)).await {
                            Ok(Ok(())) => {
                                subscribed.insert(channel);
                                let _ = reply.send(Ok(()));
                            }
                            failed => {
                                let reason = describe("SUBSCRIBE", failed, timeout);
                                let _ = reply.send(Err(BrokerError::Unavailable(reason.clone())));
                                return End::Lost(reason);
                            }
                        }
                    }
                    Some(Command::Dropped(channel)) => {
                        if self.channels.forget_if_unused(&channel) && subscribed.remove(&channel) {
                            let done = tokio::time::timeout(timeout, sink.unsubscribe(&channel)).await;
                            if !matches!(done, Ok(Ok(()))) {
                                return End::Lost(describe("UNSUBSCRIBE", done, timeout));
                            }
                        }
                    }
                },
                message = stream.next() => match message {
                    None => return End::Lost("connection closed".to_owned()),
                    Some(message) => {
                        let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                        self.channels.deliver(message.get_channel_name(), payload);
                    }
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return End::Lost(describe("PING", pong.map(|r| r.map(drop)), timeout));
                    }
                }
            }
        }
    }

    /// Waits `delay` while disconnected, refusing subscriptions meanwhile;
    /// false if the broker is gone.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(Command::Subscribe(_, reply)) => {
                        let down = BrokerError::Unavailable("redis pub/sub connection is down".to_owned());
                        let _ = reply.send(Err(down));
                    }
                    Some(Command::Dropped(channel)) => {
                        self.channels.forget_if_unused(&channel);
                    }
                },
            }
        }
    }
}

fn describe(
    command: &str,
    outcome: std::result::Result<redis::RedisResult<()>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> String {
    match outcome {
        Ok(Ok(())) => format!("redis {command}: ok"),
        Ok(Err(error)) => format!("redis {command}: {error}"),
        Err(_) => format!("redis {command}: no answer within {timeout:?}"),
    }
}
