//! Socket.IO v5 packets inside Engine.IO message packets (`4...`): the few
//! the load generator writes, and a cheap classifier for what it reads.
//!
//! Reading avoids a JSON parse on the hot path: a `room:message` event is
//! recognised by its prefix and its `sentAt` is found by key. Everything the
//! load generator does not measure (`users:online`, `room:history`, ...) is
//! [`Inbound::Other`]. A trailing recovery offset argument is tolerated
//! because nothing past `sentAt` is read.

use std::fmt::Write as _;

/// What one incoming Engine.IO packet means to a client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    Ping,
    Close,
    /// CONNECT accepted for our namespace.
    Connected,
    /// CONNECT_ERROR, with its JSON body.
    ConnectError(&'a str),
    /// DISCONNECT of our namespace by the server.
    Disconnected,
    Ack(u64),
    /// A `room:message` event with its `sentAt` (µs), if it had one.
    RoomMessage(Option<u64>),
    Other,
}

/// Classifies `packet` for a client of namespace `ns`.
pub(crate) fn classify<'a>(packet: &'a str, ns: &str) -> Inbound<'a> {
    let bytes = packet.as_bytes();
    match bytes.first() {
        Some(b'2') if bytes.len() == 1 => return Inbound::Ping,
        Some(b'1') => return Inbound::Close,
        Some(b'4') => {}
        _ => return Inbound::Other,
    }
    let Some(&kind) = bytes.get(1) else {
        return Inbound::Other;
    };
    let Some(rest) = strip_namespace(&packet[2..], ns) else {
        return Inbound::Other;
    };
    match kind {
        b'0' => Inbound::Connected,
        b'1' => Inbound::Disconnected,
        b'4' => Inbound::ConnectError(rest),
        b'3' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            rest[..digits].parse().map_or(Inbound::Other, Inbound::Ack)
        }
        b'2' => {
            let json = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            match json.strip_prefix("[\"room:message\",") {
                Some(body) => Inbound::RoomMessage(number_after(body, "\"sentAt\":")),
                None => Inbound::Other,
            }
        }
        _ => Inbound::Other,
    }
}

/// The packet after its namespace, or `None` if it is for another one.
fn strip_namespace<'a>(rest: &'a str, ns: &str) -> Option<&'a str> {
    if ns == "/" {
        // The default namespace is implicit; "/x," addresses another one.
        return (!rest.starts_with('/')).then_some(rest);
    }
    let after = rest.strip_prefix(ns)?;
    match after.as_bytes().first() {
        Some(b',') => Some(&after[1..]),
        None => Some(after),
        Some(_) => None,
    }
}

/// The unsigned integer that follows the first `key` in `json`. A plain
/// byte scan: `str::find` builds a searcher per call, which cost more than
/// the rest of the parse.
fn number_after(json: &str, key: &str) -> Option<u64> {
    let (hay, needle) = (json.as_bytes(), key.as_bytes());
    let first = *needle.first()?;
    let at = (0..hay.len().saturating_sub(needle.len() - 1))
        .find(|&i| hay[i] == first && hay[i..].starts_with(needle))?
        + needle.len();
    let mut n: u64 = 0;
    let mut digits = 0;
    for &b in hay[at..].iter().skip_while(|b| **b == b' ') {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(n)
}

fn push_namespace(out: &mut String, ns: &str) {
    if ns != "/" {
        out.push_str(ns);
        out.push(',');
    }
}

/// CONNECT to `ns`, with `{"token": ...}` as auth when there is a token.
pub(crate) fn connect(ns: &str, token: Option<&str>) -> String {
    let mut out = String::from("40");
    push_namespace(&mut out, ns);
    if let Some(token) = token {
        let quoted = serde_json::to_string(token).unwrap_or_else(|_| "\"\"".into());
        let _ = write!(out, "{{\"token\":{quoted}}}");
    }
    out
}

/// `room:join` with an acknowledgement id.
pub(crate) fn room_join(ns: &str, ack: u64, room: usize) -> String {
    let mut out = String::from("42");
    push_namespace(&mut out, ns);
    let _ = write!(out, "{ack}[\"room:join\",\"room-{room}\"]");
    out
}

/// One published `room:message`, padded with `pad` bytes of `x`.
pub(crate) fn room_message(ns: &str, room: usize, sent_at_us: u64, seq: u64, publisher: usize, pad: usize) -> String {
    let mut out = String::with_capacity(96 + ns.len() + pad);
    out.push_str("42");
    push_namespace(&mut out, ns);
    let _ = write!(
        out,
        "[\"room:message\",{{\"roomId\":\"room-{room}\",\"sentAt\":{sent_at_us},\"seq\":{seq},\"pub\":{publisher}"
    );
    if pad > 0 {
        out.push_str(",\"pad\":\"");
        out.extend(std::iter::repeat_n('x', pad));
        out.push('"');
    }
    out.push_str("}]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_packets() {
        assert_eq!(connect("/", None), "40");
        assert_eq!(connect("/", Some("a.b.c")), r#"40{"token":"a.b.c"}"#);
        assert_eq!(connect("/chat", Some("t")), r#"40/chat,{"token":"t"}"#);
        assert_eq!(room_join("/", 1, 3), r#"421["room:join","room-3"]"#);
        assert_eq!(room_join("/chat", 12, 0), r#"42/chat,12["room:join","room-0"]"#);
        assert_eq!(
            room_message("/", 2, 1700000000000001, 5, 17, 3),
            r#"42["room:message",{"roomId":"room-2","sentAt":1700000000000001,"seq":5,"pub":17,"pad":"xxx"}]"#
        );
    }

    #[test]
    fn classifies_engine_io() {
        assert_eq!(classify("2", "/"), Inbound::Ping);
        assert_eq!(classify("2probe", "/"), Inbound::Other);
        assert_eq!(classify("1", "/"), Inbound::Close);
        assert_eq!(classify("6", "/"), Inbound::Other);
    }

    #[test]
    fn classifies_connect_and_acks() {
        assert_eq!(classify(r#"40{"sid":"x"}"#, "/"), Inbound::Connected);
        assert_eq!(classify(r#"40/chat,{"sid":"x"}"#, "/chat"), Inbound::Connected);
        assert_eq!(classify(r#"40/chat,{"sid":"x"}"#, "/"), Inbound::Other);
        assert_eq!(
            classify(r#"44{"message":"Invalid token"}"#, "/"),
            Inbound::ConnectError(r#"{"message":"Invalid token"}"#)
        );
        assert_eq!(classify(r#"431[{"ok":true}]"#, "/"), Inbound::Ack(1));
        assert_eq!(classify(r#"43/chat,77[{"ok":true}]"#, "/chat"), Inbound::Ack(77));
        assert_eq!(classify("41", "/"), Inbound::Disconnected);
    }

    #[test]
    fn finds_sent_at_in_any_key_order_and_with_offsets() {
        let node = r#"42["room:message",{"roomId":"room-1","sentAt":1700000000123456,"seq":3,"pub":4,"sender":"u4","timestamp":1700000000124}]"#;
        assert_eq!(classify(node, "/"), Inbound::RoomMessage(Some(1_700_000_000_123_456)));
        let sorted =
            r#"42["room:message",{"pub":4,"roomId":"room-1","sender":"u4","sentAt":12,"seq":3,"timestamp":1},"0-17"]"#;
        assert_eq!(classify(sorted, "/"), Inbound::RoomMessage(Some(12)));
        let spaced = r#"42/chat,["room:message",{"sentAt": 99}]"#;
        assert_eq!(classify(spaced, "/chat"), Inbound::RoomMessage(Some(99)));
        assert_eq!(classify(r#"42["room:message",{"roomId":"r"}]"#, "/"), Inbound::RoomMessage(None));
        assert_eq!(classify(r#"42["users:online",["u1"]]"#, "/"), Inbound::Other);
        assert_eq!(classify(r#"42["room:history",[]]"#, "/"), Inbound::Other);
    }
}
