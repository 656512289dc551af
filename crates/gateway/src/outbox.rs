//! The bounded outgoing queue of one Engine.IO session.
//!
//! Producers (any task that emits or broadcasts) push frames and wake the
//! session's writer; the writer takes everything queued at once and writes it
//! with as few system calls as it can. Bytes stay counted until written, so a
//! client that stops reading fills its queue and is cut off (`slow reader`)
//! instead of growing the server's memory. An idle session's queue holds no
//! allocation.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::frame::Frame;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The session is closed or closing.
    Closed,
    /// The pending-bytes limit was reached: the session is now closing as a
    /// slow reader.
    Full,
    /// A volatile frame dropped because the queue is more than half full.
    Dropped,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Queued plus taken-but-unwritten bytes.
    pending: usize,
    closed: bool,
    overflowed: bool,
}

/// A session's outgoing queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    limit: usize,
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Self {
        Self { state: Mutex::new(State::default()), notify: Notify::new(), limit }
    }

    /// Queues one frame.
    pub(crate) fn push(&self, frame: Frame) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        let len = frame.len();
        if frame.is_volatile() && state.pending + len > self.limit / 2 {
            return Err(PushError::Dropped);
        }
        if state.pending + len > self.limit {
            state.closed = true;
            state.overflowed = true;
            state.frames = VecDeque::new();
            drop(state);
            self.notify.notify_one();
            return Err(PushError::Full);
        }
        state.pending += len;
        let was_empty = state.frames.is_empty();
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Queues several frames that must arrive together (a binary packet and
    /// its attachments), or none of them.
    pub(crate) fn push_all(&self, frames: &[Frame]) -> Result<(), PushError> {
        if let [one] = frames {
            return self.push(one.clone());
        }
        let mut state = self.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        let len: usize = frames.iter().map(Frame::len).sum();
        if state.pending + len > self.limit {
            state.closed = true;
            state.overflowed = true;
            state.frames = VecDeque::new();
            drop(state);
            self.notify.notify_one();
            return Err(PushError::Full);
        }
        state.pending += len;
        state.frames.extend(frames.iter().cloned());
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Takes everything queued into `into` (appending), keeping the bytes
    /// counted until [`Outbox::written`].
    pub(crate) fn take(&self, into: &mut Vec<Frame>) {
        let mut state = self.lock();
        into.extend(state.frames.drain(..));
        if state.frames.capacity() > 64 {
            // A burst left a large ring behind: give it back while idle.
            state.frames = VecDeque::new();
        }
    }

    /// `bytes` taken frames went out.
    pub(crate) fn written(&self, bytes: usize) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(bytes);
    }

    /// Waits until something is queued or the outbox closes.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Refuses further pushes.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether the outbox closed because it overflowed.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_closes_as_overflow() {
        let outbox = Outbox::new(20);
        outbox.push(Frame::text(b"4aaaaaaa")).unwrap();
        assert_eq!(outbox.push(Frame::text(b"4bbbbbbbbbbbbb")), Err(PushError::Full));
        assert!(outbox.overflowed());
        assert_eq!(outbox.push(Frame::text(b"4c")), Err(PushError::Closed));
    }

    #[test]
    fn volatile_frames_dropped_past_half() {
        let outbox = Outbox::new(20);
        outbox.push(Frame::text(b"4aaaaaaa")).unwrap();
        assert_eq!(outbox.push(Frame::text(b"4b").volatile()), Err(PushError::Dropped));
        assert!(!outbox.is_closed());
    }

    #[test]
    fn bytes_stay_counted_until_written() {
        let outbox = Outbox::new(24);
        outbox.push(Frame::text(b"4aaaaaaaaa")).unwrap();
        let mut taken = Vec::new();
        outbox.take(&mut taken);
        assert_eq!(taken.len(), 1);
        assert_eq!(outbox.push(Frame::text(b"4bbbbbbbbbbbb")), Err(PushError::Full));
        let outbox = Outbox::new(24);
        outbox.push(Frame::text(b"4aaaaaaaaa")).unwrap();
        outbox.take(&mut taken);
        outbox.written(12);
        outbox.push(Frame::text(b"4bbbbbbbbbbbb")).unwrap();
    }
}
