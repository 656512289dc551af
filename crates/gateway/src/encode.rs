//! Encoding Socket.IO packets straight into [`Frame`]s: one buffer, written
//! once, shared by every recipient.

use bytes::Bytes;
use serde_json::Value;
use switchboard_protocol::packet::{PacketKind, write_header};

use crate::frame::Frame;

/// An EVENT (or BINARY_EVENT when there are attachments), with the recovery
/// offset appended as the last argument when given.
pub(crate) fn event(
    nsp: &str,
    id: Option<u64>,
    name: &str,
    args: &[Value],
    attachments: &[Bytes],
    offset: Option<u64>,
) -> Vec<Frame> {
    let kind = if attachments.is_empty() { PacketKind::Event } else { PacketKind::BinaryEvent };
    let text = Frame::build(false, |buf| {
        write_header(buf, kind, attachments.len(), nsp, id);
        buf.push(b'[');
        write_json(buf, &Value::String(name.to_owned()));
        for arg in args {
            buf.push(b',');
            write_json(buf, arg);
        }
        if let Some(offset) = offset {
            buf.extend_from_slice(b",\"");
            buf.extend_from_slice(offset.to_string().as_bytes());
            buf.push(b'"');
        }
        buf.push(b']');
    });
    with_attachments(text, attachments)
}

/// An EVENT whose arguments are already JSON (`args_json`, one array, as
/// the cluster carries them), with an offset string appended when given.
/// The array is spliced in without being parsed again.
pub(crate) fn event_raw(
    nsp: &str,
    name: &str,
    args_json: &[u8],
    attachments: &[Bytes],
    offset: Option<&str>,
) -> Vec<Frame> {
    let kind = if attachments.is_empty() { PacketKind::Event } else { PacketKind::BinaryEvent };
    let inner = raw_array_inner(args_json);
    let text = Frame::build(false, |buf| {
        write_header(buf, kind, attachments.len(), nsp, None);
        buf.push(b'[');
        write_json(buf, &Value::String(name.to_owned()));
        if !inner.is_empty() {
            buf.push(b',');
            buf.extend_from_slice(inner);
        }
        if let Some(offset) = offset {
            buf.push(b',');
            write_json(buf, &Value::String(offset.to_owned()));
        }
        buf.push(b']');
    });
    with_attachments(text, attachments)
}

/// The elements of a JSON array's text (`[a,b]` → `a,b`), trimmed; empty
/// for `[]`, empty bytes, or anything that is not an array.
fn raw_array_inner(json: &[u8]) -> &[u8] {
    let trimmed = json.trim_ascii();
    match trimmed {
        [b'[', inner @ .., b']'] => inner.trim_ascii(),
        _ => &[],
    }
}

/// An ACK (or BINARY_ACK) answering the client's `id`.
pub(crate) fn ack(nsp: &str, id: u64, args: &[Value], attachments: &[Bytes]) -> Vec<Frame> {
    let kind = if attachments.is_empty() { PacketKind::Ack } else { PacketKind::BinaryAck };
    let text = Frame::build(false, |buf| {
        write_header(buf, kind, attachments.len(), nsp, Some(id));
        buf.push(b'[');
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write_json(buf, arg);
        }
        buf.push(b']');
    });
    with_attachments(text, attachments)
}

/// Any other packet (CONNECT, CONNECT_ERROR, DISCONNECT) with optional data.
pub(crate) fn control(kind: PacketKind, nsp: &str, data: Option<&Value>) -> Frame {
    Frame::build(false, |buf| {
        write_header(buf, kind, 0, nsp, None);
        if let Some(data) = data {
            write_json(buf, data);
        }
    })
}

fn with_attachments(text: Frame, attachments: &[Bytes]) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(text);
    frames.extend(attachments.iter().map(|a| Frame::binary(a)));
    frames
}

fn write_json(buf: &mut Vec<u8>, value: &Value) {
    // Serializing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(buf, value);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn texts(frames: &[Frame]) -> Vec<String> {
        frames.iter().map(|f| String::from_utf8_lossy(f.payload()).into_owned()).collect()
    }

    #[test]
    fn events_with_offset_and_namespace() {
        assert_eq!(texts(&event("/", None, "hi", &[json!({"a":1})], &[], None)), vec![r#"42["hi",{"a":1}]"#]);
        assert_eq!(texts(&event("/chat", Some(3), "hi", &[], &[], Some(17))), vec![r#"42/chat,3["hi","17"]"#]);
    }

    #[test]
    fn binary_events_and_acks() {
        let att = [Bytes::from_static(b"\x01\x02")];
        let frames = event("/", None, "up", &[json!({"_placeholder":true,"num":0})], &att, None);
        assert_eq!(texts(&frames[..1]), vec![r#"451-["up",{"_placeholder":true,"num":0}]"#]);
        assert_eq!(frames[1].payload(), b"\x01\x02");
        assert_eq!(texts(&ack("/", 5, &[json!({"ok":true})], &[])), vec![r#"435[{"ok":true}]"#]);
        assert_eq!(texts(&ack("/x", 0, &[], &[])), vec![r#"43/x,0[]"#]);
        let frames = ack("/", 1, &[json!({"_placeholder":true,"num":0})], &att);
        assert_eq!(texts(&frames[..1]), vec![r#"461-1[{"_placeholder":true,"num":0}]"#]);
    }

    #[test]
    fn raw_events_splice_the_array() {
        let frames = event_raw("/chat", "m", br#" [{"a":1}, 2] "#, &[], Some("1-0@ab"));
        assert_eq!(texts(&frames), vec![r#"42/chat,["m",{"a":1}, 2,"1-0@ab"]"#]);
        assert_eq!(texts(&event_raw("/", "m", b"[]", &[], None)), vec![r#"42["m"]"#]);
        assert_eq!(texts(&event_raw("/", "m", b"", &[], None)), vec![r#"42["m"]"#]);
    }

    #[test]
    fn control_packets() {
        assert_eq!(texts(&[control(PacketKind::Connect, "/", Some(&json!({"sid":"x"})))]), vec![r#"40{"sid":"x"}"#]);
        assert_eq!(texts(&[control(PacketKind::Disconnect, "/admin", None)]), vec!["41/admin,"]);
    }
}
