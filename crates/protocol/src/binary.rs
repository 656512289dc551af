//! Binary attachments: a `BINARY_EVENT`/`BINARY_ACK` packet announces `n`
//! attachments, which arrive as the next `n` binary messages. The JSON keeps
//! `{"_placeholder":true,"num":i}` where each attachment goes.
//!
//! The server never needs the attachments spliced into the JSON: it relays
//! them as they are, placeholders and all, so this module collects them and
//! checks that every placeholder points at one.

use bytes::Bytes;
use serde_json::Value;

use crate::DecodeError;
use crate::packet::Packet;

/// A binary packet waiting for its attachments.
#[derive(Debug)]
pub struct Assembler {
    packet: Packet,
    attachments: Vec<Bytes>,
}

/// What feeding an attachment gives.
#[derive(Debug)]
pub enum Progress {
    /// More attachments are due.
    Pending(Assembler),
    /// The packet and all its attachments.
    Complete(Packet, Vec<Bytes>),
}

impl Assembler {
    /// Starts assembling; a packet with zero attachments completes at once.
    pub fn start(packet: Packet) -> Result<Progress, DecodeError> {
        check_placeholders(packet.data.as_ref(), packet.attachments)?;
        let assembler = Assembler { attachments: Vec::with_capacity(packet.attachments), packet };
        Ok(assembler.progress())
    }

    /// Adds the next binary message.
    pub fn push(mut self, attachment: Bytes) -> Progress {
        self.attachments.push(attachment);
        self.progress()
    }

    /// Bytes held so far (for the payload size limit).
    pub fn buffered(&self) -> usize {
        self.attachments.iter().map(Bytes::len).sum()
    }

    fn progress(self) -> Progress {
        if self.attachments.len() >= self.packet.attachments {
            Progress::Complete(self.packet, self.attachments)
        } else {
            Progress::Pending(self)
        }
    }
}

/// Every placeholder must name an attachment that will arrive.
fn check_placeholders(data: Option<&Value>, count: usize) -> Result<(), DecodeError> {
    let Some(data) = data else { return Ok(()) };
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.get("_placeholder") == Some(&Value::Bool(true)) {
                    let num = map.get("num").and_then(Value::as_u64).ok_or(DecodeError::BadPlaceholder)?;
                    if num as usize >= count {
                        return Err(DecodeError::BadPlaceholder);
                    }
                } else {
                    stack.extend(map.values());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A placeholder for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(s: &str) -> Packet {
        Packet::decode(s.as_bytes(), 10).unwrap()
    }

    #[test]
    fn collects_attachments_in_order() {
        let p = packet(r#"52-["up",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        let Progress::Pending(a) = Assembler::start(p).unwrap() else { panic!("completed early") };
        let Progress::Pending(a) = a.push(Bytes::from_static(b"one")) else { panic!("completed early") };
        assert_eq!(a.buffered(), 3);
        let Progress::Complete(p, att) = a.push(Bytes::from_static(b"two")) else { panic!("not complete") };
        assert_eq!(p.event_name(), Some("up"));
        assert_eq!(att, vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]);
    }

    #[test]
    fn refuses_out_of_range_placeholders() {
        let p = packet(r#"51-["up",{"_placeholder":true,"num":1}]"#);
        assert_eq!(Assembler::start(p).unwrap_err(), DecodeError::BadPlaceholder);
        let p = packet(r#"51-["up",{"_placeholder":true}]"#);
        assert_eq!(Assembler::start(p).unwrap_err(), DecodeError::BadPlaceholder);
    }

    #[test]
    fn zero_attachments_complete_at_once() {
        let p = packet(r#"50-["up"]"#);
        assert!(matches!(Assembler::start(p), Ok(Progress::Complete(_, a)) if a.is_empty()));
    }
}
