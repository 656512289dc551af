//! BINARY_EVENT and BINARY_ACK: a text packet with placeholders followed by
//! its attachments (WebSocket binary frames, or `b<base64>` records in a
//! polling payload).

mod common;

use common::{Polling, RS, Record, Server, Ws, config, connect_sid};
use serde_json::json;

const PLACEHOLDER_0: &str = r#"{"_placeholder":true,"num":0}"#;
const PLACEHOLDER_1: &str = r#"{"_placeholder":true,"num":1}"#;

#[tokio::test]
async fn binary_event_round_trip_over_websocket() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;

    ws.send(&format!(r#"451-["echo",{PLACEHOLDER_0}]"#)).await;
    ws.send_binary(&[1, 2, 3]).await;
    assert_eq!(ws.recv_text().await, format!(r#"451-["echo",{PLACEHOLDER_0}]"#));
    assert_eq!(ws.recv_binary().await, vec![1, 2, 3]);

    let (args, attachments) = server
        .log
        .wait_for("the binary event", |r| match r {
            Record::Event { id: from, name, args, attachments, .. } if *from == id && name == "echo" => {
                Some((args.clone(), attachments.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(args, vec![json!({"_placeholder": true, "num": 0})]);
    assert_eq!(attachments, vec![vec![1, 2, 3]]);
}

#[tokio::test]
async fn binary_ack_round_trip_over_websocket() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    connect_sid(&ws.request("40/admin,").await, "40/admin,");
    ws.send(&format!(r#"452-/admin,3["echo",{PLACEHOLDER_0},"text",{PLACEHOLDER_1}]"#)).await;
    ws.send_binary(b"first").await;
    ws.send_binary(b"").await;
    assert_eq!(ws.recv_text().await, format!(r#"462-/admin,3[{PLACEHOLDER_0},"text",{PLACEHOLDER_1}]"#));
    assert_eq!(ws.recv_binary().await, b"first".to_vec());
    assert_eq!(ws.recv_binary().await, Vec::<u8>::new());
}

#[tokio::test]
async fn binary_event_round_trip_over_polling() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    connect_sid(&session.request("40").await, "40");

    session.send(&format!(r#"451-["echo",{PLACEHOLDER_0}]{RS}bAQID"#)).await;
    assert_eq!(session.get().await.text(), format!(r#"451-["echo",{PLACEHOLDER_0}]{RS}bAQID"#));

    session.send(&format!(r#"452-9["echo",{PLACEHOLDER_0},{PLACEHOLDER_1}]{RS}b/w=={RS}b"#)).await;
    assert_eq!(session.get().await.text(), format!(r#"462-9[{PLACEHOLDER_0},{PLACEHOLDER_1}]{RS}b/w=={RS}b"#));
}

#[tokio::test]
async fn attachments_may_come_in_separate_posts() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    connect_sid(&session.request("40").await, "40");
    session.send(&format!(r#"451-1["echo",{PLACEHOLDER_0}]"#)).await;
    session.send("bAQID").await;
    assert_eq!(session.get().await.text(), format!(r#"461-1[{PLACEHOLDER_0}]{RS}bAQID"#));
}

#[tokio::test]
async fn binary_ack_from_the_client() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    assert_eq!(ws.request(r#"42["ask","file?"]"#).await, r#"420["question","file?"]"#);
    ws.send(&format!(r#"461-0[{PLACEHOLDER_0}]"#)).await;
    ws.send_binary(&[9, 9]).await;
    let (args, attachments) = server.log.ack_outcome_of(&id).await.expect("acknowledged");
    assert_eq!(args, vec![json!({"_placeholder": true, "num": 0})]);
    assert_eq!(attachments, vec![vec![9, 9]]);
}

#[tokio::test]
async fn binary_frame_without_a_binary_packet_closes_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send_binary(&[1, 2, 3]).await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    server.log.disconnect_of(&id).await;
}

#[tokio::test]
async fn text_packet_while_attachments_are_pending_closes_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send(&format!(r#"451-["echo",{PLACEHOLDER_0}]"#)).await;
    ws.send(r#"42["echo"]"#).await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    server.log.disconnect_of(&id).await;
}
