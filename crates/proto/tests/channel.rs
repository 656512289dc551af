//! The messages of a gateway's Redis channel survive encoding and decoding,
//! share the received buffer, and tolerate fields they do not know.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use serde_json::json;
use switchboard_proto::v1::channel_message::Message as OnChannel;
use switchboard_proto::v1::{self, ChannelMessage, Delivery, DeliveryBatch, Packet, Stamp};

fn batch() -> ChannelMessage {
    let binary = Packet {
        event: "file".into(),
        args_json: Bytes::from_static(br#"[{"_placeholder":true,"num":0}]"#),
        attachments: vec![Bytes::from_static(&[0, 1, 2, 255])],
    };
    ChannelMessage {
        request_id: 0,
        reply_to: String::new(),
        message: Some(OnChannel::Deliveries(DeliveryBatch {
            router_id: "router-1".into(),
            deliveries: vec![
                Delivery {
                    nsp: "/".into(),
                    rooms: vec!["lobby".into()],
                    except: vec!["socket-1".into(), "muted".into()],
                    volatile: false,
                    stamps: vec![Stamp { seq: 41, offset: "1718000000000-0".into() }],
                    packet: Some(Packet::from_json("message:new", &[json!({"id": "1718000000000-0", "text": "hi"})])),
                    store: true,
                    id_field: String::new(),
                },
                Delivery {
                    nsp: "/".into(),
                    rooms: vec!["lobby".into(), "staff".into()],
                    volatile: true,
                    stamps: vec![Stamp { seq: 42, offset: String::new() }, Stamp { seq: 7, offset: String::new() }],
                    packet: Some(Packet::from_json("typing", &[])),
                    ..Default::default()
                },
                Delivery {
                    nsp: "/files".into(),
                    rooms: Vec::new(),
                    stamps: vec![Stamp { seq: 1, offset: "1718000000001-0".into() }],
                    packet: Some(binary),
                    ..Default::default()
                },
            ],
        })),
    }
}

#[test]
fn a_delivery_batch_round_trips() {
    let sent = batch();
    let bytes = Bytes::from(sent.encode_to_vec());
    let received = ChannelMessage::decode(bytes.clone()).unwrap();
    assert_eq!(received, sent);

    // Decoded from `Bytes`, the packet's bytes point into the received
    // buffer: no copy per delivery.
    let Some(OnChannel::Deliveries(batch)) = &received.message else { panic!("not deliveries") };
    let args = &batch.deliveries[0].packet.as_ref().unwrap().args_json;
    let range = bytes.as_ptr_range();
    assert!(range.contains(&args.as_ptr()), "args_json was copied");
    assert_eq!(args.as_ref(), br#"[{"id":"1718000000000-0","text":"hi"}]"#);
}

#[test]
fn commands_and_replies_round_trip() {
    let commands = [
        OnChannel::JoinUser(v1::JoinUser { nsp: "/".into(), user_id: "alice".into(), room: "lobby".into() }),
        OnChannel::LeaveUser(v1::LeaveUser { nsp: "/".into(), user_id: "alice".into(), room: "lobby".into() }),
        OnChannel::DisconnectUser(v1::DisconnectUser { nsp: "/".into(), user_id: "alice".into() }),
        OnChannel::DisconnectSocket(v1::DisconnectSocket { nsp: "/".into(), socket_id: "abc".into() }),
        OnChannel::Emit(v1::Emit {
            nsp: "/".into(),
            user_ids: vec!["alice".into()],
            socket_ids: vec!["abc".into()],
            except: vec!["muted".into()],
            volatile: false,
            packet: Some(Packet::from_json("news", &[json!(null)])),
        }),
        OnChannel::RoomSockets(v1::RoomSockets { nsp: "/".into(), room: "lobby".into() }),
        OnChannel::Reply(v1::Reply {
            request_id: 9,
            gateway_id: "gw-2".into(),
            sockets: 2,
            socket_ids: vec!["abc".into(), "def".into()],
            error: String::new(),
        }),
    ];
    for command in commands {
        let sent = ChannelMessage { request_id: 9, reply_to: "sb:gw:gw-1".into(), message: Some(command) };
        assert_eq!(ChannelMessage::decode(sent.encode_to_vec().as_slice()).unwrap(), sent);
    }
}

#[test]
fn unknown_fields_are_skipped() {
    // A newer writer added field 15 (a varint) and a oneof case 40 (a
    // length-delimited message): this reader keeps what it knows.
    let known = v1::Delivery { nsp: "/".into(), rooms: vec!["lobby".into()], ..Default::default() };
    let mut bytes = BytesMut::from(known.encode_to_vec().as_slice());
    bytes.put_u8(15 << 3); // field 15, varint
    bytes.put_u8(1);
    assert_eq!(v1::Delivery::decode(bytes.freeze()).unwrap(), known);

    let mut bytes = BytesMut::new();
    bytes.put_u8((40 << 3 | 2) as u8 | 0x80); // field 40, length-delimited (two-byte tag)
    bytes.put_u8(((40 << 3) >> 7) as u8);
    bytes.put_u8(0); // empty message
    let decoded = ChannelMessage::decode(bytes.freeze()).unwrap();
    assert_eq!(decoded.message, None);
}

#[test]
fn packets_from_json() {
    let packet = Packet::from_json("news", &[json!({"title": "hello"}), json!(2)]);
    assert_eq!(packet.event, "news");
    assert_eq!(packet.args_json.as_ref(), br#"[{"title":"hello"},2]"#);
    assert!(packet.attachments.is_empty());
    assert_eq!(packet.args_array().as_ref(), br#"[{"title":"hello"},2]"#);
    assert_eq!(Packet::default().args_array().as_ref(), b"[]");
}
