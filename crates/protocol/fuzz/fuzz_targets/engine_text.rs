//! Engine.IO packets: `engine::Packet::decode_text` on a WebSocket text frame
//! or polling record, `decode_binary` on a binary frame.
//!
//! Checks: no panic; a text message is valid UTF-8; a decoded packet has a
//! text form that keeps the type digit, is never longer than the input and
//! decodes to the same packet; `open` and `message` encode byte for byte.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::engine::{Packet, Payload};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    assert_eq!(Packet::decode_binary(input.clone()), Packet::Message(Payload::Binary(input.clone())));

    let Ok(packet) = Packet::decode_text(input) else { return };
    if let Packet::Message(Payload::Text(text)) = &packet {
        assert!(std::str::from_utf8(text).is_ok(), "text message is not UTF-8");
    }
    assert!(!matches!(packet, Packet::Message(Payload::Binary(_))), "text decoded to a binary message");

    let encoded = packet.encode_text().expect("a packet decoded from text has a text form");
    assert_eq!(encoded[0], data[0], "type digit changed");
    assert!(encoded.len() <= data.len(), "encoding grew the packet");
    if matches!(packet, Packet::Open(_) | Packet::Message(_)) {
        assert_eq!(&encoded[..], data, "open/message must encode to the bytes received");
    }
    let again = Packet::decode_text(encoded).expect("an encoded packet decodes");
    assert_eq!(again, packet, "round trip changed the packet");
});
