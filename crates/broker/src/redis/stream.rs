//! Redis streams for [`RedisBroker`](super::RedisBroker): the append script,
//! id conversion, and the parsing of `XRANGE` replies.
//!
//! An append is one script, so that it is one round trip and atomic:
//! `XADD` trims by count, `XTRIM MINID` by age measured from the new
//! entry's id (the Redis server's clock, the same for every writer), and
//! `PEXPIRE` makes a stream nobody appends to vanish once its newest entry is
//! too old, as the memory broker forgets it.
//!
//! Ids travel to Redis in its own form (`1700000000000-0`) and come back in
//! the fixed-width form of [`StreamId`], so that they sort as strings exactly
//! as the memory broker's do (while a millisecond holds fewer than a million
//! entries, which Redis cannot reach).

use bytes::Bytes;
use redis::{Script, ScriptInvocation, Value};

use super::{Trim, unavailable};
use crate::{BrokerError, Entry, Result, Retention, StreamId};

/// The field that holds an entry's data.
const FIELD: &str = "d";

/// Ages beyond this (about 35,000 years) mean "no age limit"; it keeps
/// `PEXPIRE` and the script's arithmetic in range.
const MAX_AGE_MS: u64 = 1 << 50;

/// KEYS[1] stream; ARGV: trim (`~` or `=`), max len, data, max age in ms or ``.
const APPEND: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], ARGV[2], '*', 'd', ARGV[3])
if ARGV[4] == '' then
  redis.call('PERSIST', KEYS[1])
else
  local age = tonumber(ARGV[4])
  local ms = tonumber(string.match(id, '^(%d+)-'))
  local oldest = ms - age
  if oldest > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1], string.format('%d-0', oldest))
  end
  redis.call('PEXPIRE', KEYS[1], age)
end
return id
";

pub(super) fn append_script() -> Script {
    Script::new(APPEND)
}

/// The age part of [`APPEND`] for a stream appended to by plain `XADD`s:
/// trims by age from the newest entry and sets the expiry, with `slack` ms
/// more (it runs at most that often per stream). KEYS[1] stream; ARGV: trim
/// (`~` or `=`), max age in ms or ``, slack in ms.
pub(super) const MAINTAIN: &str = r"
if ARGV[2] == '' then
  redis.call('PERSIST', KEYS[1])
  return 0
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest == 0 then
  return 0
end
local age = tonumber(ARGV[2])
local oldest = tonumber(string.match(newest[1][1], '^(%d+)-')) - age
if oldest > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1], string.format('%d-0', oldest))
end
redis.call('PEXPIRE', KEYS[1], age + tonumber(ARGV[3]))
return 0
";

pub(super) fn maintain_script() -> Script {
    Script::new(MAINTAIN)
}

/// A plain `XADD` with the count limit of `retention`.
pub(super) fn xadd(pipeline: &mut redis::Pipeline, stream: &str, data: &Bytes, retention: Retention, trim: Trim) {
    let (mode, max_len, _) = trim_args(retention, trim);
    pipeline.cmd("XADD").arg(stream).arg("MAXLEN").arg(mode).arg(max_len).arg("*").arg(FIELD).arg(&data[..]);
}

/// The maintenance script's call for one stream.
pub(super) fn maintain_invocation<'a>(
    script: &'a Script,
    stream: &str,
    retention: Retention,
    trim: Trim,
    slack: std::time::Duration,
) -> ScriptInvocation<'a> {
    let (mode, _, max_age) = trim_args(retention, trim);
    let mut invocation = script.key(stream);
    invocation.arg(mode).arg(max_age).arg(u64::try_from(slack.as_millis()).unwrap_or(u64::MAX));
    invocation
}

/// The script's call for one append.
pub(super) fn append_invocation<'a>(
    script: &'a Script,
    stream: &str,
    data: &Bytes,
    retention: Retention,
    trim: Trim,
) -> ScriptInvocation<'a> {
    let (mode, max_len, max_age) = trim_args(retention, trim);
    let mut invocation = script.key(stream);
    invocation.arg(mode).arg(max_len).arg(&data[..]).arg(max_age);
    invocation
}

/// The script's trim arguments: mode, max len (at least 1), max age in ms
/// (at least 1) or empty for none.
fn trim_args(retention: Retention, trim: Trim) -> (&'static str, usize, String) {
    let mode = match trim {
        Trim::Approximate => "~",
        Trim::Exact => "=",
    };
    let age = retention
        .max_age
        .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX).max(1))
        .filter(|ms| *ms <= MAX_AGE_MS)
        .map_or_else(String::new, |ms| ms.to_string());
    (mode, retention.max_len.max(1), age)
}

/// `id` as Redis writes it.
pub(super) fn redis_id(id: StreamId) -> String {
    format!("{}-{}", id.ms, id.seq)
}

/// A Redis id in the fixed-width form.
pub(super) fn padded(redis_id: &str) -> Result<String> {
    Ok(redis_id.parse::<StreamId>()?.to_string())
}

/// The entries of an `XRANGE`/`XREVRANGE` reply, in reply order.
pub(super) fn entries(reply: Value) -> Result<Vec<Entry>> {
    let Value::Array(items) = reply else {
        return Err(unexpected(&reply));
    };
    items.into_iter().map(entry).collect()
}

/// `[id, [field, value, ...]]`; the data is the value of [`FIELD`] (or the
/// first value, for an entry some other writer added).
fn entry(item: Value) -> Result<Entry> {
    let Value::Array(mut parts) = item else {
        return Err(unexpected(&item));
    };
    let (Some(Value::Array(fields)), Some(Value::BulkString(id))) = (parts.pop(), parts.pop()) else {
        return Err(unavailable("malformed stream entry"));
    };
    let id = std::str::from_utf8(&id).map_err(|_| BrokerError::InvalidId(String::from_utf8_lossy(&id).into_owned()))?;
    let mut pairs = fields.chunks_exact(2);
    let first = pairs.clone().next().map(|pair| &pair[1]);
    let data =
        pairs.find(|pair| matches!(&pair[0], Value::BulkString(name) if name == FIELD.as_bytes())).map(|pair| &pair[1]);
    let data = match data.or(first) {
        Some(Value::BulkString(bytes)) => Bytes::copy_from_slice(bytes),
        _ => Bytes::new(),
    };
    Ok(Entry { id: padded(id)?, data })
}

fn unexpected(reply: &Value) -> BrokerError {
    unavailable(format_args!("unexpected stream reply {reply:?}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn ids_convert_both_ways() {
        assert_eq!(redis_id(StreamId::new(1_700_000_000_000, 3)), "1700000000000-3");
        assert_eq!(padded("1700000000000-3").as_deref(), Ok("1700000000000-000003"));
        assert!(matches!(padded("nope"), Err(BrokerError::InvalidId(_))));
    }

    #[test]
    fn parses_entries_by_field() {
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("5-0"), Value::Array(vec![bulk("d"), bulk("hello")])]),
            Value::Array(vec![bulk("5-1"), Value::Array(vec![bulk("x"), bulk("other"), bulk("d"), bulk("mine")])]),
            Value::Array(vec![bulk("6-0"), Value::Array(vec![bulk("x"), bulk("foreign")])]),
        ]);
        let parsed = entries(reply).unwrap();
        let got: Vec<(&str, &[u8])> = parsed.iter().map(|e| (e.id.as_str(), &e.data[..])).collect();
        assert_eq!(
            got,
            vec![
                ("0000000000005-000000", &b"hello"[..]),
                ("0000000000005-000001", b"mine"),
                ("0000000000006-000000", b"foreign")
            ]
        );
        assert!(entries(Value::Array(vec![])).unwrap().is_empty());
        assert!(matches!(entries(Value::Nil), Err(BrokerError::Unavailable(_))));
        assert!(matches!(entries(Value::Array(vec![bulk("x")])), Err(BrokerError::Unavailable(_))));
    }

    #[test]
    fn trim_arguments() {
        let minute = Some(Duration::from_secs(60));
        assert_eq!(trim_args(Retention::new(10, minute), Trim::Approximate), ("~", 10, "60000".to_owned()));
        assert_eq!(trim_args(Retention::new(0, None), Trim::Exact), ("=", 1, String::new()));
        assert_eq!(trim_args(Retention::new(5, Some(Duration::ZERO)), Trim::Exact).2, "1");
        assert_eq!(trim_args(Retention::new(5, Some(Duration::MAX)), Trim::Exact).2, "", "too old to matter");
    }
}
