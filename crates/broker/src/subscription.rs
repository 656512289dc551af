//! The receiving end of a channel subscription.
//!
//! It wraps a `tokio::sync::broadcast` receiver: each broker hands one out
//! per subscriber. The memory broker's sender is the publisher itself; the
//! Redis broker's is fed by its one pub/sub connection, which fans out to
//! every local subscriber of a channel. A broker that must learn when a
//! subscriber leaves (Redis unsubscribes a channel nobody here listens to)
//! attaches a drop hook.

use std::fmt;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::BrokerError;

/// Messages published on one channel after the subscription was made.
pub struct Subscription {
    channel: String,
    rx: broadcast::Receiver<Bytes>,
    /// Declared after `rx`: fields drop in declaration order, so the hook
    /// runs when this receiver no longer counts as one.
    _on_drop: Option<DropHook>,
}

/// Runs a closure once, when dropped.
struct DropHook(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Drop for DropHook {
    fn drop(&mut self) {
        if let Some(hook) = self.0.take() {
            hook();
        }
    }
}

impl Subscription {
    pub fn new(channel: impl Into<String>, rx: broadcast::Receiver<Bytes>) -> Self {
        Self { channel: channel.into(), rx, _on_drop: None }
    }

    /// A subscription that calls `on_drop` once when it is dropped, after
    /// its receiver is gone (so `receiver_count` no longer includes it).
    pub fn with_drop_hook(
        channel: impl Into<String>,
        rx: broadcast::Receiver<Bytes>,
        on_drop: impl FnOnce() + Send + Sync + 'static,
    ) -> Self {
        Self { channel: channel.into(), rx, _on_drop: Some(DropHook(Some(Box::new(on_drop)))) }
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

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("channel", &self.channel)
            .field("drop_hook", &self._on_drop.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_hook_runs_once_after_the_receiver_is_gone() {
        let (tx, rx) = broadcast::channel::<Bytes>(4);
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let (sender, seen_in_hook) = (tx.clone(), seen.clone());
        let subscription = Subscription::with_drop_hook("ch", rx, move || {
            seen_in_hook.store(sender.receiver_count(), Ordering::SeqCst)
        });
        assert_eq!(tx.receiver_count(), 1);
        drop(subscription);
        assert_eq!(seen.load(Ordering::SeqCst), 0);
    }
}
