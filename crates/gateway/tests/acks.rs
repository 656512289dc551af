//! Acknowledgements in both directions. Server-to-client ids count from 0
//! per namespace (`nsp._ids++` in the reference server).

mod common;

use common::{Polling, Server, Ws, config, connect_sid};
use serde_json::json;
use switchboard_gateway::AckError;

#[tokio::test]
async fn client_acks_are_answered_with_the_same_id() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    connect_sid(&ws.request("40").await, "40");
    connect_sid(&ws.request("40/admin,").await, "40/admin,");
    assert_eq!(ws.request(r#"420["echo"]"#).await, "430[]");
    assert_eq!(ws.request(r#"42123456789["echo",[1,2],"s"]"#).await, r#"43123456789[[1,2],"s"]"#);
    assert_eq!(ws.request(r#"42/admin,7["echo",{"k":null}]"#).await, r#"43/admin,7[{"k":null}]"#);
}

#[tokio::test]
async fn server_ack_round_trip() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    assert_eq!(ws.request(r#"42["ask","why?"]"#).await, r#"420["question","why?"]"#);
    ws.send(r#"430["because",2]"#).await;
    assert_eq!(ws.recv_text().await, r#"42["answer","because",2]"#);
    let (args, attachments) = server.log.ack_outcome_of(&id).await.expect("the client acknowledged");
    assert_eq!(args, vec![json!("because"), json!(2)]);
    assert!(attachments.is_empty());
}

#[tokio::test]
async fn server_ack_ids_count_per_namespace() {
    let server = Server::echo(config()).await;
    let (mut a, _) = Ws::open(server.addr).await;
    connect_sid(&a.request("40").await, "40");
    connect_sid(&a.request("40/admin,").await, "40/admin,");
    let (mut b, _) = Ws::connected(server.addr, "40").await;

    for expected in 0..2 {
        assert_eq!(a.request(r#"42["ask",1]"#).await, format!(r#"42{expected}["question",1]"#));
        a.send(&format!("43{expected}[]")).await;
        assert_eq!(a.recv_text().await, r#"42["answer"]"#);
    }
    // Another socket of the same namespace continues the count.
    assert_eq!(b.request(r#"42["ask",2]"#).await, r#"422["question",2]"#);
    b.send("432[]").await;
    assert_eq!(b.recv_text().await, r#"42["answer"]"#);
    // Another namespace has its own count.
    assert_eq!(a.request(r#"42/admin,["ask",3]"#).await, r#"42/admin,0["question",3]"#);
    a.send("43/admin,0[true]").await;
    assert_eq!(a.recv_text().await, r#"42/admin,["answer",true]"#);
}

#[tokio::test]
async fn server_ack_times_out() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    let started = std::time::Instant::now();
    assert_eq!(ws.request(r#"42["ask","q",100]"#).await, r#"420["question","q"]"#);
    assert_eq!(ws.recv_text().await, r#"42["answer","operation has timed out"]"#);
    assert!(started.elapsed() >= std::time::Duration::from_millis(90));
    assert_eq!(server.log.ack_outcome_of(&id).await, Err(AckError::Timeout));

    // A late acknowledgement is ignored and the session goes on.
    ws.send(r#"430["late"]"#).await;
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}

#[tokio::test]
async fn server_ack_fails_when_the_socket_disconnects() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    assert_eq!(ws.request(r#"42["ask","q",5000]"#).await, r#"420["question","q"]"#);
    ws.cut();
    assert_eq!(server.log.ack_outcome_of(&id).await, Err(AckError::Disconnected));
}

#[tokio::test]
async fn unknown_ack_id_is_ignored() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    ws.send(r#"4399["nobody asked"]"#).await;
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}

#[tokio::test]
async fn server_ack_round_trip_over_polling() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");
    assert_eq!(session.request(r#"42["ask",{"n":1}]"#).await, r#"420["question",{"n":1}]"#);
    assert_eq!(session.request(r#"430[{"n":2}]"#).await, r#"42["answer",{"n":2}]"#);
    assert_eq!(server.log.ack_outcome_of(&id).await.expect("acknowledged").0, vec![json!({"n":2})]);
}
