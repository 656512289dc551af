//! Binary packets: `packet::Packet::decode` then `binary::Assembler::{start,
//! push}` with fuzzer-chosen attachments.
//!
//! Input: records separated by `\x1e`; the first is the Socket.IO packet
//! text, the others are the binary attachments that follow it.
//!
//! Checks: no panic; `start` refuses exactly the packets with a placeholder
//! that names no announced attachment (independent recursive check); the
//! packet completes after exactly `attachments` pushes, with the packet
//! unchanged and the attachments in order; `buffered` counts their bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_protocol::DecodeError;
use switchboard_protocol::binary::{Assembler, Progress};
use switchboard_protocol::packet::Packet;

const MAX_ATTACHMENTS: usize = 16;

fn placeholders_ok(value: &Value, count: usize) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|v| placeholders_ok(v, count)),
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            map.get("num").and_then(Value::as_u64).is_some_and(|n| n < count as u64)
        }
        Value::Object(map) => map.values().all(|v| placeholders_ok(v, count)),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut records = data.split(|&b| b == 0x1e);
    let text = records.next().unwrap_or_default();
    let Ok(packet) = Packet::decode(text, MAX_ATTACHMENTS) else { return };
    let attachments: Vec<Bytes> = records.map(Bytes::copy_from_slice).collect();

    let expected_ok = packet.data.as_ref().is_none_or(|d| placeholders_ok(d, packet.attachments));
    let mut progress = match Assembler::start(packet.clone()) {
        Ok(progress) => {
            assert!(expected_ok, "accepted a bad placeholder");
            progress
        }
        Err(e) => {
            assert_eq!(e, DecodeError::BadPlaceholder);
            assert!(!expected_ok, "refused valid placeholders");
            return;
        }
    };

    let mut pushed = Vec::new();
    for attachment in attachments {
        let assembler = match progress {
            Progress::Pending(assembler) => assembler,
            Progress::Complete(..) => break,
        };
        assert!(pushed.len() < packet.attachments, "pending after all attachments");
        assert_eq!(assembler.buffered(), pushed.iter().map(Bytes::len).sum::<usize>());
        pushed.push(attachment.clone());
        progress = assembler.push(attachment);
    }
    match progress {
        Progress::Complete(done, got) => {
            assert_eq!(done, packet, "assembly changed the packet");
            assert_eq!(got.len(), packet.attachments, "wrong attachment count");
            assert_eq!(got, pushed, "attachments out of order");
        }
        Progress::Pending(assembler) => {
            assert!(pushed.len() < packet.attachments, "pending after all attachments");
            assert_eq!(assembler.buffered(), pushed.iter().map(Bytes::len).sum::<usize>());
        }
    }
});
