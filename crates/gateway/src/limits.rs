//! Rate limiting: a token bucket per socket.

use std::time::Instant;

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, last: now }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The names of limits, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PayloadSize,
    Attachments,
    RoomsPerSocket,
    RoomNameLength,
    EventRate,
    SocketsPerUser,
    PendingBytes,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::PayloadSize => "payload_size",
            Limit::Attachments => "attachments",
            Limit::RoomsPerSocket => "rooms_per_socket",
            Limit::RoomNameLength => "room_name_length",
            Limit::EventRate => "event_rate",
            Limit::SocketsPerUser => "sockets_per_user",
            Limit::PendingBytes => "pending_bytes",
        }
    }

    /// Counts one refusal.
    pub fn count(self) {
        metrics::counter!("switchboard_gateway_limit_refusals_total", "limit" => self.as_str()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(2.0, t0);
        assert!(bucket.try_take(1.0, 2.0, t0));
        assert!(bucket.try_take(1.0, 2.0, t0));
        assert!(!bucket.try_take(1.0, 2.0, t0));
        assert!(bucket.try_take(1.0, 2.0, t0 + Duration::from_secs(1)));
        assert!(!bucket.try_take(1.0, 2.0, t0 + Duration::from_secs(1)));
        let later = t0 + Duration::from_secs(100);
        assert!(bucket.try_take(1.0, 2.0, later));
        assert!(bucket.try_take(1.0, 2.0, later));
        assert!(!bucket.try_take(1.0, 2.0, later));
    }
}
