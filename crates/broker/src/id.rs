//! Stream entry ids: `<milliseconds>-<sequence>`, as Redis streams number
//! entries, written with fixed width (`{ms:013}-{seq:06}`) so that ids sort
//! as strings in the order they were appended.

use std::fmt;
use std::str::FromStr;

use crate::BrokerError;

/// A stream entry id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Milliseconds since the Unix epoch when the entry was appended.
    pub ms: u64,
    /// Order among the entries of the same millisecond.
    pub seq: u64,
}

/// Sequence numbers stay below this so that the fixed width holds; an
/// append past it moves on to the next millisecond.
pub const MAX_SEQ: u64 = 999_999;

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The id after `last` for an append at `now_ms`: later than `last` even
    /// when the clock went back.
    pub fn next_after(last: Option<StreamId>, now_ms: u64) -> StreamId {
        match last {
            Some(last) if now_ms <= last.ms => {
                if last.seq >= MAX_SEQ {
                    StreamId::new(last.ms + 1, 0)
                } else {
                    StreamId::new(last.ms, last.seq + 1)
                }
            }
            _ => StreamId::new(now_ms, 0),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:013}-{:06}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = BrokerError;

    /// Accepts padded and unpadded forms (`1700000000000-0`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || BrokerError::InvalidId(text.chars().take(64).collect());
        let (ms, seq) = text.split_once('-').ok_or_else(invalid)?;
        let number = |part: &str| {
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse::<u64>().map_err(|_| invalid())
        };
        Ok(StreamId::new(number(ms)?, number(seq)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_sorts_as_strings() {
        let a = StreamId::new(999, 5).to_string();
        let b = StreamId::new(1000, 0).to_string();
        assert_eq!(a, "0000000000999-000005");
        assert!(a < b);
        assert!(StreamId::new(1000, 9).to_string() < StreamId::new(1000, 10).to_string());
    }

    #[test]
    fn parses_padded_and_unpadded() {
        assert_eq!("0000000000999-000005".parse::<StreamId>(), Ok(StreamId::new(999, 5)));
        assert_eq!("1700000000000-0".parse::<StreamId>(), Ok(StreamId::new(1_700_000_000_000, 0)));
        for bad in ["", "-", "1-", "-1", "x-1", "1-1-1", "1", "no-such-message", "99999999999999999999999-0"] {
            assert!(matches!(bad.parse::<StreamId>(), Err(BrokerError::InvalidId(_))), "{bad}");
        }
    }

    #[test]
    fn next_ids_increase_even_when_the_clock_goes_back() {
        let first = StreamId::next_after(None, 100);
        assert_eq!(first, StreamId::new(100, 0));
        let same_ms = StreamId::next_after(Some(first), 100);
        assert_eq!(same_ms, StreamId::new(100, 1));
        let back = StreamId::next_after(Some(same_ms), 50);
        assert_eq!(back, StreamId::new(100, 2));
        assert_eq!(StreamId::next_after(Some(back), 200), StreamId::new(200, 0));
        assert_eq!(StreamId::next_after(Some(StreamId::new(7, MAX_SEQ)), 7), StreamId::new(8, 0));
    }
}
