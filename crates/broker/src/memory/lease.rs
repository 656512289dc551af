//! Lease sets of the [`MemoryBroker`](super::MemoryBroker): per set, each
//! member's expiry. What Redis keeps in a sorted set scored by expiry.
//!
//! Expired members are swept from a set when it is renewed in, as the Redis
//! script does, so a set holds at most its live members plus those that
//! ended since its last renewal; a set left empty is forgotten.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Every lease set: set name → member → expiry.
#[derive(Debug, Default)]
pub(super) struct Leases {
    sets: HashMap<String, HashMap<String, Instant>>,
}

impl Leases {
    pub(super) fn renew(&mut self, set: &str, member: &str, ttl: Duration, now: Instant) {
        let members = self.sets.entry(set.to_owned()).or_default();
        members.retain(|_, expiry| *expiry > now);
        // A ttl too large for the clock is as good as forever.
        let expiry = now.checked_add(ttl).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        members.insert(member.to_owned(), expiry);
    }

    /// Live members, sorted.
    pub(super) fn members(&self, set: &str, now: Instant) -> Vec<String> {
        let Some(members) = self.sets.get(set) else { return Vec::new() };
        let mut live: Vec<String> =
            members.iter().filter(|(_, expiry)| **expiry > now).map(|(member, _)| member.clone()).collect();
        live.sort_unstable();
        live
    }

    pub(super) fn remove(&mut self, set: &str, member: &str) {
        if let Some(members) = self.sets.get_mut(set) {
            members.remove(member);
            if members.is_empty() {
                self.sets.remove(set);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_members_are_hidden_then_swept_on_renewal() {
        let mut leases = Leases::default();
        let start = Instant::now();
        leases.renew("s", "b", Duration::from_millis(10), start);
        leases.renew("s", "a", Duration::from_secs(10), start);
        assert_eq!(leases.members("s", start), vec!["a", "b"]);
        let later = start + Duration::from_millis(20);
        assert_eq!(leases.members("s", later), vec!["a"]);
        leases.renew("s", "a", Duration::from_secs(10), later);
        assert_eq!(leases.sets["s"].len(), 1, "b was swept");
        leases.remove("s", "a");
        assert!(leases.sets.is_empty(), "an empty set is forgotten");
        leases.remove("s", "a");
        leases.renew("s", "forever", Duration::MAX, later);
        assert_eq!(leases.members("s", later), vec!["forever"]);
    }
}
