//! Names of the nodes of a cluster: [`NodeId`], the id of a router or a
//! gateway, and [`Member`], an id with its address as it stands in a lease
//! set (`<id>|<address>`).
//!
//! Ids end up in Redis keys and channel names (`sb:gw:<id>`) and in lease
//! members, where `|` separates the id from the address, so they are short,
//! printable ASCII without `|`. Addresses are opaque to the router.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::RouterError;

/// Longest id, in bytes: ids are repeated in every channel name and lease.
pub const MAX_ID_LEN: usize = 128;

/// Separates the id from the address in a lease member.
const SEPARATOR: char = '|';

/// The id of a router or a gateway. Cheap to clone; ordered and hashed as
/// its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

/// A router replica's id.
pub type RouterId = NodeId;
/// A gateway's id.
pub type GatewayId = NodeId;

impl NodeId {
    /// An id: 1 to [`MAX_ID_LEN`] bytes of printable ASCII other than `|`.
    pub fn new(id: &str) -> Result<NodeId, RouterError> {
        let valid = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id.bytes().all(|b| b.is_ascii_graphic() && b != SEPARATOR as u8);
        if valid { Ok(NodeId(Arc::from(id))) } else { Err(RouterError::InvalidId(id.chars().take(64).collect())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A node as it registers in a lease set: its id and the address others
/// reach it on (a router's gRPC address, a gateway's internal HTTP one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub id: NodeId,
    pub address: String,
}

impl Member {
    pub fn new(id: NodeId, address: impl Into<String>) -> Member {
        Member { id, address: address.into() }
    }

    /// Parses `<id>|<address>`; the address may be empty and may hold `|`.
    pub fn parse(entry: &str) -> Result<Member, RouterError> {
        let (id, address) = entry.split_once(SEPARATOR).unwrap_or((entry, ""));
        Ok(Member { id: NodeId::new(id)?, address: address.to_owned() })
    }

    /// `<id>|<address>`, the member of the lease set.
    pub fn lease_entry(&self) -> String {
        format!("{}{SEPARATOR}{}", self.id, self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_printable_ascii_without_the_separator() {
        assert_eq!(NodeId::new("router-1.example:7").map(|id| id.to_string()), Ok("router-1.example:7".to_owned()));
        for bad in ["", "a|b", "a b", "é", "tab\t", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(matches!(NodeId::new(bad), Err(RouterError::InvalidId(_))), "{bad:?}");
        }
        assert!(NodeId::new(&"x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn lease_entries_round_trip() {
        let member = Member::new(NodeId::new("r1").unwrap(), "10.0.0.1:50051");
        assert_eq!(member.lease_entry(), "r1|10.0.0.1:50051");
        assert_eq!(Member::parse("r1|10.0.0.1:50051"), Ok(member));
        assert_eq!(Member::parse("r2").map(|m| m.address), Ok(String::new()));
        assert_eq!(Member::parse("r3|a|b").map(|m| m.address), Ok("a|b".to_owned()));
        assert!(Member::parse("|addr").is_err());
    }
}
