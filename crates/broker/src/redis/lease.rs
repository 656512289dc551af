//! Lease sets for [`RedisBroker`](super::RedisBroker): a sorted set per
//! lease set, each member scored by its expiry in milliseconds.
//!
//! Renewing and listing are scripts so that "now" is the Redis server's
//! clock (`TIME`), the same for every process whatever its own clock says:
//! a member on a machine whose clock runs ahead must not look alive longer.
//! Renewing also sweeps the members whose lease ended (`ZREMRANGEBYSCORE`),
//! which keeps the set as small as the live membership.

use redis::{Script, ScriptInvocation, Value};

use super::unavailable;
use crate::Result;

/// KEYS[1] set; ARGV[1] member, ARGV[2] ttl in ms (at least 1).
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return 1
";

/// KEYS[1] set. Live means an expiry after now, as the memory broker has it.
const MEMBERS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now), '+inf')
";

/// The two scripts, loaded once per broker.
pub(super) struct LeaseScripts {
    renew: Script,
    members: Script,
}

impl LeaseScripts {
    pub(super) fn new() -> Self {
        Self { renew: Script::new(RENEW), members: Script::new(MEMBERS) }
    }

    pub(super) fn renew(&self, set: &str, member: &str, ttl_ms: u64) -> ScriptInvocation<'_> {
        let mut invocation = self.renew.key(set);
        invocation.arg(member).arg(ttl_ms);
        invocation
    }

    pub(super) fn members(&self, set: &str) -> ScriptInvocation<'_> {
        self.members.key(set)
    }
}

/// The members of a `ZRANGEBYSCORE` reply, sorted.
pub(super) fn members(reply: Value) -> Result<Vec<String>> {
    let Value::Array(items) = reply else {
        return Err(unavailable(format_args!("unexpected lease reply {reply:?}")));
    };
    let mut members = items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => {
                String::from_utf8(bytes).map_err(|_| unavailable("a lease member is not UTF-8"))
            }
            other => Err(unavailable(format_args!("unexpected lease member {other:?}"))),
        })
        .collect::<Result<Vec<String>>>()?;
    members.sort_unstable();
    members.dedup();
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerError;

    #[test]
    fn members_are_sorted_strings() {
        let reply = Value::Array(vec![Value::BulkString(b"b|2".to_vec()), Value::BulkString(b"a|1".to_vec())]);
        assert_eq!(members(reply), Ok(vec!["a|1".to_owned(), "b|2".to_owned()]));
        assert_eq!(members(Value::Array(vec![])), Ok(vec![]));
        assert!(matches!(members(Value::Nil), Err(BrokerError::Unavailable(_))));
        assert!(matches!(members(Value::Array(vec![Value::Int(1)])), Err(BrokerError::Unavailable(_))));
        assert!(matches!(members(Value::Array(vec![Value::BulkString(vec![0xff])])), Err(BrokerError::Unavailable(_))));
    }
}
