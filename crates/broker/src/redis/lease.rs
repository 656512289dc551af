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

/// KEYS[1] slots (a hash member → holder), KEYS[2] the holders' lease set;
/// ARGV[1] member, ARGV[2] holder, ARGV[3] max, ARGV[4] ttl in ms. Slots of
/// holders whose lease ended are dropped first. 1 when taken, else 0.
const SLOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  local held = redis.call('HGETALL', KEYS[1])
  local taken = 0
  for i = 1, #held, 2 do
    local expiry = redis.call('ZSCORE', KEYS[2], held[i + 1])
    if held[i + 1] == ARGV[2] or (expiry and tonumber(expiry) > now) then
      taken = taken + 1
    else
      redis.call('HDEL', KEYS[1], held[i])
    end
  end
  if taken >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// The scripts, loaded once per broker.
pub(super) struct LeaseScripts {
    renew: Script,
    members: Script,
    slot: Script,
}

impl LeaseScripts {
    pub(super) fn new() -> Self {
        Self { renew: Script::new(RENEW), members: Script::new(MEMBERS), slot: Script::new(SLOT) }
    }

    pub(super) fn renew(&self, set: &str, member: &str, ttl_ms: u64) -> ScriptInvocation<'_> {
        let mut invocation = self.renew.key(set);
        invocation.arg(member).arg(ttl_ms);
        invocation
    }

    pub(super) fn slot(
        &self,
        key: &str,
        holders: &str,
        member: &str,
        holder: &str,
        max: usize,
        ttl_ms: u64,
    ) -> ScriptInvocation<'_> {
        let mut invocation = self.slot.key(key);
        invocation.key(holders).arg(member).arg(holder).arg(max).arg(ttl_ms);
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
