//! Stored messages with their id, History, and the presence calls
//! (OnlineUsers, RoomMembers, LocateUsers), answered by the owner only.

use serde_json::json;
use switchboard_proto::v1::gateway_message::Message as FromGateway;
use switchboard_proto::v1::{self, RefusalCode};
use switchboard_testkit::RedisServer;
use tonic::Code;

use crate::support::{
    NSP, Session, WAIT, args, batches_of, by_namespace, channel_of, eventually, next_batch_from, publish, redis,
    room_of, two_routers,
};

fn history(room: &str, since: &str, limit: u32) -> v1::HistoryRequest {
    v1::HistoryRequest { nsp: NSP.to_owned(), room: room.to_owned(), since: since.to_owned(), limit }
}

#[tokio::test]
async fn a_stored_message_carries_its_id_and_history_returns_it() {
    let server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let observer = redis(&server).await;
    let room = room_of(&a, "general");
    let mut on_g = channel_of(&*observer, "G").await;
    let mut g = Session::open(&a, "G").await;
    g.membership(&room, true).await;

    let chat = |id, text: &str| v1::Publish {
        store: true,
        id_field: "id".to_owned(),
        ..publish(id, &[&room], "room:message", &[json!({"text": text, "id": "forged"}), json!(2)])
    };
    g.publish(chat(1, "hi")).await;
    let first = g.published().await.offsets[0].clone();
    let delivery = next_batch_from(&mut on_g, WAIT).await.expect("delivered").deliveries.remove(0);
    assert_eq!(args(delivery.packet.as_ref()), json!([{"text": "hi", "id": first}, 2]), "the id is the offset");
    assert_eq!((delivery.store, delivery.id_field.as_str()), (true, ""), "delivered with the id written in");

    g.publish(publish(2, &[&room], "not kept", &[json!("x")])).await;
    let not_kept = g.published().await.offsets[0].clone();
    g.publish(v1::Publish { store: true, ..publish(3, &[&room], "kept, no id", &[json!("plain")]) }).await;
    let plain = g.published().await.offsets[0].clone();
    g.publish(chat(4, "last")).await;
    let last = g.published().await.offsets[0].clone();
    assert!(first < not_kept && not_kept < plain && plain < last);

    let mut owner = a.client().await;
    let all = owner.history(history(&room, "", 10)).await.expect("the owner answers").into_inner().messages;
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec![first.as_str(), plain.as_str(), last.as_str()], "kept messages only, oldest first");
    assert_eq!(args(all[0].packet.as_ref()), json!([{"text": "hi", "id": first}, 2]));
    assert_eq!(all[0].packet.as_ref().map(|p| p.event.as_str()), Some("room:message"));
    assert_eq!(args(all[1].packet.as_ref()), json!(["plain"]));
    assert_eq!(args(all[2].packet.as_ref()), json!([{"text": "last", "id": last}, 2]));

    let newest = owner.history(history(&room, "", 1)).await.unwrap().into_inner().messages;
    assert_eq!(newest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec![last.as_str()]);
    let since = owner.history(history(&room, &first, 1)).await.unwrap().into_inner().messages;
    assert_eq!(since.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec![plain.as_str()], "strictly after");
    assert!(owner.history(history(&room, "", 0)).await.unwrap().into_inner().messages.is_empty(), "limit 0");
    let bad = owner.history(history(&room, "yesterday", 5)).await.expect_err("not a stream id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let elsewhere = b.client().await.history(history(&room, "", 10)).await.expect_err("b is not the owner");
    assert_eq!((elsewhere.code(), elsewhere.message()), (Code::FailedPrecondition, "not the owner"));

    // What the contract refuses.
    let not_object = v1::Publish { store: true, id_field: "id".to_owned(), ..publish(5, &[&room], "e", &[json!(1)]) };
    let volatile_store = v1::Publish { volatile: true, store: true, ..publish(6, &[&room], "e", &[]) };
    let two_rooms = v1::Publish { id: 7, rooms: vec![room.clone(), room_of(&a, "second")], ..chat(7, "two") };
    let no_store = v1::Publish { store: false, ..chat(8, "no store") };
    let no_packet = v1::Publish { packet: None, ..publish(9, &[&room], "e", &[]) };
    for invalid in [not_object, volatile_store, two_rooms, no_store, no_packet] {
        let id = invalid.id;
        g.publish(invalid).await;
        let refused = g.refused().await;
        assert_eq!((refused.id, refused.code()), (id, RefusalCode::Invalid), "{}", refused.reason);
    }
    let kept = owner.history(history(&room, "", 10)).await.unwrap().into_inner().messages;
    assert_eq!(kept.len(), 3, "nothing refused was stored");
    assert_eq!(batches_of(&mut on_g, 3).await.concat().len(), 3, "the three before");
    assert_eq!(next_batch_from(&mut on_g, crate::support::QUIET).await, None, "nothing refused was delivered");

    // A namespace-wide stored message gets its id too.
    let (nsp_owner, _) = by_namespace(&a, &b);
    let mut at_owner = Session::open(nsp_owner, "G").await;
    let anonymous = v1::Presence { nsp: NSP.to_owned(), user_id: String::new(), online: true };
    at_owner.send(FromGateway::Presence(anonymous)).await;
    let everyone = v1::Publish { rooms: vec![], ..chat(1, "all") };
    at_owner.publish(everyone).await;
    let published = at_owner.published().await;
    assert_eq!(published.gateways, 1, "G holds a socket of the namespace");
    let offset = published.offsets[0].clone();
    let batch = next_batch_from(&mut on_g, WAIT).await.expect("the namespace-wide delivery");
    let found = batch.deliveries.into_iter().find(|d| d.rooms.is_empty()).expect("namespace-wide");
    assert_eq!(args(found.packet.as_ref())[0]["id"], json!(offset));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn presence_is_answered_by_the_owner() {
    let server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let (owner, other) = by_namespace(&a, &b);
    let room = room_of(other, "lobby");
    let g1 = Session::open(owner, "G1").await;
    let g2 = Session::open(owner, "G2").await;
    let g1_room = Session::open(other, "G1").await;
    let presence = |user: &str, online| {
        FromGateway::Presence(v1::Presence { nsp: NSP.to_owned(), user_id: user.to_owned(), online })
    };
    g1.send(presence("u1", true)).await;
    g2.send(presence("u2", true)).await;
    g2.send(presence("u1", true)).await;
    g2.send(presence("", true)).await;
    g1_room.membership(&room, true).await;
    let in_room = v1::RoomPresence { nsp: NSP.to_owned(), room: room.clone(), user_id: "u1".to_owned(), present: true };
    g1_room.send(FromGateway::RoomPresence(in_room)).await;

    let mut client = owner.client().await;
    let online = |client: &v1::router_client::RouterClient<_>| {
        let mut client = client.clone();
        async move {
            let request = v1::OnlineUsersRequest { nsp: NSP.to_owned() };
            client.online_users(request).await.expect("the owner answers").into_inner().user_ids
        }
    };
    eventually("both users online", WAIT, || async { (online(&client).await == ["u1", "u2"]).then_some(()) }).await;
    let locate = |users: &[&str]| v1::LocateUsersRequest {
        nsp: NSP.to_owned(),
        user_ids: users.iter().map(|user| (*user).to_owned()).collect(),
    };
    let located = client.locate_users(locate(&["u1"])).await.unwrap().into_inner().gateway_ids;
    assert_eq!(located, ["G1", "G2"]);
    let located = client.locate_users(locate(&["u2", "nobody"])).await.unwrap().into_inner().gateway_ids;
    assert_eq!(located, ["G2"]);
    assert!(client.locate_users(locate(&["nobody", ""])).await.unwrap().into_inner().gateway_ids.is_empty());

    let members = v1::RoomMembersRequest { nsp: NSP.to_owned(), room: room.clone() };
    let room_owner = other.client().await;
    let reply = eventually("the room's member", WAIT, || async {
        let reply = room_owner.clone().room_members(members.clone()).await.expect("the owner answers").into_inner();
        (!reply.user_ids.is_empty()).then_some(reply)
    })
    .await;
    assert_eq!(reply, v1::RoomMembersReply { user_ids: vec!["u1".to_owned()], gateway_ids: vec!["G1".to_owned()] });

    // Asked of the replica that does not own the key.
    let mut not_owner = other.client().await;
    let errors = [
        not_owner.online_users(v1::OnlineUsersRequest { nsp: NSP.to_owned() }).await.expect_err("not the owner"),
        not_owner.locate_users(locate(&["u1"])).await.expect_err("not the owner"),
        client.room_members(members.clone()).await.expect_err("not the owner"),
    ];
    for status in errors {
        assert_eq!((status.code(), status.message()), (Code::FailedPrecondition, "not the owner"));
    }

    g1.send(presence("u1", false)).await;
    eventually("u1 still online on G2", WAIT, || async {
        let located = client.clone().locate_users(locate(&["u1"])).await.unwrap().into_inner().gateway_ids;
        (located == ["G2"]).then_some(())
    })
    .await;
    assert_eq!(online(&client).await, ["u1", "u2"]);
    // A resync of G2 replaces its users: u1 and u2 go, u3 comes.
    let u3 = v1::Presence { nsp: NSP.to_owned(), user_id: "u3".to_owned(), online: true };
    g2.send(FromGateway::Resync(v1::Resync { presences: vec![u3], last: true, ..v1::Resync::default() })).await;
    eventually("the resync applied", WAIT, || async { (online(&client).await == ["u3"]).then_some(()) }).await;
    a.stop().await;
    b.stop().await;
}
