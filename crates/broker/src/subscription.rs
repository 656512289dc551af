//! The receiving end of a channel subscription.
//!
//! It wraps a `tokio::sync::broadcast` receiver: the memory broker hands one
//! out per subscriber, and a Redis implementation will do the same, fed by
//! one pub/sub connection that fans out to every local subscriber.

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::BrokerError;

/// Messages published on one channel after the subscription was made.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    rx: broadcast::Receiver<Bytes>,
}

impl Subscription {
    pub fn new(channel: impl Into<String>, rx: broadcast::Receiver<Bytes>) -> Self {
        Self { channel: channel.into(), rx }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next message. [`BrokerError::Lagged`] says messages were lost
    /// because this subscriber fell behind (the next call goes on with the
    /// oldest still buffered); [`BrokerError::Closed`] that no more will come.
    pub async fn recv(&mut self) -> Result<Bytes, BrokerError> {
        match self.rx.recv().await {
            Ok(message) => Ok(message),
            Err(broadcast::error::RecvError::Lagged(lost)) => Err(BrokerError::Lagged(lost)),
            Err(broadcast::error::RecvError::Closed) => Err(BrokerError::Closed),
        }
    }
}
