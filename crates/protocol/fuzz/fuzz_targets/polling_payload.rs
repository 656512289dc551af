//! Long-polling payloads: `polling::decode_payload` on a POST body.
//!
//! Checks: no panic; one packet per record (separators + 1); every text
//! record decodes exactly as `engine::Packet::decode_text` would; the payload
//! re-encoded with `encode_payload` decodes to the same packets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::engine::{Packet, Payload};
use switchboard_protocol::polling::{SEPARATOR, decode_payload, encode_payload};

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = decode_payload(Bytes::copy_from_slice(data)) else { return };

    let records: Vec<&[u8]> = data.split(|&b| b == SEPARATOR).collect();
    assert_eq!(packets.len(), records.len(), "one packet per record");
    for (record, packet) in records.iter().zip(&packets) {
        if record.first() == Some(&b'b') {
            assert!(matches!(packet, Packet::Message(Payload::Binary(_))), "b record is not binary");
        } else {
            let text = Packet::decode_text(Bytes::copy_from_slice(record));
            assert_eq!(text.as_ref(), Ok(packet), "text record decodes differently alone");
        }
    }

    let encoded = encode_payload(&packets);
    let again = decode_payload(encoded).expect("an encoded payload decodes");
    assert_eq!(again, packets, "round trip changed the payload");
});
