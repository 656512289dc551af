//! The helpers readers of deliveries and stream entries use:
//! `Packet::with_field`, `decode_entry` and `Delivery::entry_packet`.

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_proto::decode_entry;
use switchboard_proto::prost::Message as _;
use switchboard_proto::v1;

fn args(packet: &v1::Packet) -> Value {
    serde_json::from_slice(&packet.args_array()).expect("the arguments stay a JSON array")
}

#[test]
fn with_field_writes_a_string_into_the_first_object_only() {
    let packet = v1::Packet {
        attachments: vec![Bytes::from_static(b"\x00\x01")],
        ..v1::Packet::from_json("room:message", &[json!({"text": "hi", "id": "old"}), json!([1, {"b": 2}]), json!(3.5)])
    };
    let with = packet.with_field("id", "0001700000000000-000001").expect("the first argument is an object");
    assert_eq!(with.event, "room:message");
    assert_eq!(with.attachments, packet.attachments, "attachments unchanged");
    assert_eq!(args(&with), json!([{"text": "hi", "id": "0001700000000000-000001"}, [1, {"b": 2}], 3.5]));
    // Key order is kept: the id replaces the old value in place.
    assert!(std::str::from_utf8(&with.args_json).unwrap().starts_with(r#"[{"text":"hi","id":"#));

    let added = v1::Packet::from_json("e", &[json!({})]).with_field("msgId", "1-0").unwrap();
    assert_eq!(&added.args_json[..], br#"[{"msgId":"1-0"}]"#);
    let spaced = v1::Packet { args_json: Bytes::from_static(b" [ {\"a\" : 1} , \"x\" ] "), ..Default::default() };
    assert_eq!(args(&spaced.with_field("id", "2-0").unwrap()), json!([{"a": 1, "id": "2-0"}, "x"]));
}

#[test]
fn with_field_refuses_what_is_not_an_object_first() {
    for raw in
        [&b""[..], b"[]", b"[1]", b"[\"s\", {}]", b"[[{}]]", b"[null]", b"{}", b"not json", b"[{\"a\":1}", b"\xff"]
    {
        let packet = v1::Packet { event: "e".into(), args_json: Bytes::copy_from_slice(raw), attachments: vec![] };
        assert_eq!(packet.with_field("id", "1-0"), None, "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn stream_entries_decode_and_get_their_id_written_in() {
    let stored = v1::Delivery {
        nsp: "/chat".into(),
        rooms: vec!["general".into()],
        except: vec!["sid-1".into()],
        store: true,
        id_field: "id".into(),
        packet: Some(v1::Packet::from_json("room:message", &[json!({"text": "hi"})])),
        ..Default::default()
    };
    let bytes = Bytes::from(stored.encode_to_vec());
    let entry = decode_entry(&bytes).expect("an entry decodes");
    assert_eq!(entry, stored);
    let packet = entry.entry_packet("0001700000000000-000002").expect("a packet");
    assert_eq!(args(&packet), json!([{"text": "hi", "id": "0001700000000000-000002"}]));

    let plain = v1::Delivery { id_field: String::new(), ..stored.clone() };
    assert_eq!(plain.entry_packet("1-0"), plain.packet, "no id_field: the packet as stored");
    assert_eq!(v1::Delivery { packet: None, ..stored.clone() }.entry_packet("1-0"), None);
    let not_object = v1::Delivery { packet: Some(v1::Packet::from_json("e", &[json!(1)])), ..stored };
    assert_eq!(not_object.entry_packet("1-0"), None);
}

#[test]
fn untrusted_entry_bytes_are_an_error_not_a_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..2000usize {
        let data: Vec<u8> = (0..len % 97)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = decode_entry(&Bytes::from(data));
    }
    assert!(decode_entry(&Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])).is_err(), "a length past the end");
}
