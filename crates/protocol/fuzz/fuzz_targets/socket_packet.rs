//! Socket.IO packets: `packet::Packet::decode` on the text of an engine.io
//! message (without its `4`).
//!
//! Checks: no panic; the attachment limit only refuses, never changes, a
//! packet; payload rules hold (no reserved event name, binary kinds only
//! carry attachments); and the round trip: `encode` writes `4` + a text that
//! decodes to an equal packet, and encoding is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::DecodeError;
use switchboard_protocol::packet::{Packet, RESERVED_EVENTS};

/// A realistic server limit (the unlimited decode is checked against it).
const MAX_ATTACHMENTS: usize = 10;

fuzz_target!(|data: &[u8]| {
    let limited = Packet::decode(data, MAX_ATTACHMENTS);
    let unlimited = Packet::decode(data, usize::MAX);
    match (&limited, &unlimited) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        // The limit is checked before the rest of the packet is parsed.
        (Err(DecodeError::TooManyAttachments(n)), _) => {
            assert!(*n > MAX_ATTACHMENTS);
            if let Ok(b) = &unlimited {
                assert_eq!(*n, b.attachments);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("limit changed the outcome: {limited:?} vs {unlimited:?}"),
    }
    let Ok(packet) = unlimited else { return };

    assert!(packet.nsp.starts_with('/'), "namespace without a slash");
    assert!(!packet.nsp.contains(','), "namespace with a comma");
    assert!(packet.kind.is_binary() || packet.attachments == 0, "attachments on a text packet");
    if let Some(name) = packet.event_name() {
        assert!(!RESERVED_EVENTS.contains(&name), "reserved event accepted");
    }

    let encoded = packet.encode();
    assert_eq!(encoded[0], b'4', "encoding must start with the engine.io message digit");
    let again = match Packet::decode(&encoded[1..], usize::MAX) {
        Ok(again) => again,
        Err(e) => panic!("re-decoding {:?} failed: {e:?}", String::from_utf8_lossy(&encoded)),
    };
    assert_eq!(again, packet, "round trip changed the packet (wire {:?})", String::from_utf8_lossy(&encoded));
    assert_eq!(again.encode(), encoded, "encoding is not canonical");
});
