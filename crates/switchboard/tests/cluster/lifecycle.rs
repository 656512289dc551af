//! Processes leaving and coming back: a gateway stopped with SIGTERM exits
//! by itself (drain), a replacement with a new id and a restarted router
//! join the cluster, and rooms span them again.

use std::time::Duration;

use serde_json::json;
use switchboard_testkit::Role;

use crate::support::{self, join};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_restarted_processes_rejoin() {
    let mut cluster = support::start(support::options()).await;
    let mut alice = cluster.connect(0, "/", "alice").await;
    join(&alice, "lobby").await;

    // SIGTERM: the gateway drains (its clients are told to go) and exits.
    let status = cluster.terminate(Role::Gateway, 0, Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "gateway 1 did not exit cleanly within 10 s of SIGTERM: {status:?}\n{}",
        cluster.logs(Role::Gateway, 0)
    );
    // Its client was let go (a DISCONNECT or the transport closed).
    alice.wait_disconnect().await;

    // A replacement on the same address with a new id, and a restarted router.
    cluster.restart(Role::Gateway, 0).await;
    assert_eq!(cluster.node_id(Role::Gateway, 0), "gw-1-r1");
    cluster.restart(Role::Router, 1).await;
    assert_eq!(cluster.node_id(Role::Router, 1), "router-2");
    for role in [Role::Router, Role::Gateway] {
        for i in 0..cluster.count(role) {
            cluster.wait_ready(role, i, support::ACK_TIMEOUT).await;
        }
    }

    let mut alice = cluster.connect(0, "/", "alice").await;
    let mut carol = cluster.connect(2, "/", "carol").await;
    join(&alice, "lobby").await;
    join(&carol, "lobby").await;
    assert_eq!(alice.ack("room:message", json!({"roomId": "lobby", "text": "back"})).await, json!({"ok": true}));
    for member in [&mut alice, &mut carol] {
        assert_eq!(member.wait_for("room:message").await.data()["text"], "back");
    }
    assert_eq!(carol.ack("room:message", json!({"roomId": "lobby", "text": "hi"})).await, json!({"ok": true}));
    assert_eq!(alice.wait_for("room:message").await.data()["text"], "hi");
}
