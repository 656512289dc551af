//! Unit tests of the room table.

use super::*;
use crate::NodeId;

fn gw(id: &str) -> GatewayId {
    NodeId::new(id).unwrap()
}

fn ids(gateways: &[GatewayId]) -> Vec<&str> {
    gateways.iter().map(NodeId::as_str).collect()
}

#[test]
fn rooms_know_the_gateways_with_members() {
    let mut table = RoomTable::new();
    let (a, b) = (gw("a"), gw("b"));
    assert!(table.membership(&b, "/chat", "general", true));
    assert!(table.membership(&a, "/chat", "general", true));
    assert!(!table.membership(&a, "/chat", "general", true), "announced twice");
    assert!(table.membership(&a, "/chat", "random", true));
    assert_eq!(ids(&table.gateways_of("/chat", "general")), vec!["a", "b"]);
    assert_eq!(ids(&table.gateways_of("/chat", "random")), vec!["a"]);
    assert!(table.gateways_of("/other", "general").is_empty(), "namespaces are apart");
    assert_eq!(ids(&table.namespace_gateways("/chat")), vec!["a", "b"]);

    assert!(table.membership(&b, "/chat", "general", false));
    assert!(!table.membership(&b, "/chat", "general", false), "left twice");
    assert!(!table.membership(&b, "/chat", "never", false));
    assert_eq!(ids(&table.gateways_of("/chat", "general")), vec!["a"]);
    assert_eq!(ids(&table.namespace_gateways("/chat")), vec!["a"], "b holds nothing of /chat now");
    table.membership(&a, "/chat", "general", false);
    table.membership(&a, "/chat", "random", false);
    assert!(table.namespaces.is_empty() && table.held.is_empty(), "an empty table keeps nothing");
}

#[test]
fn presence_counts_users_across_gateways() {
    let mut table = RoomTable::new();
    let (a, b) = (gw("a"), gw("b"));
    assert_eq!(table.presence(&a, "/chat", "u1", true), PresenceChange::CameOnline);
    assert_eq!(table.presence(&b, "/chat", "u1", true), PresenceChange::Unchanged, "a second gateway");
    assert_eq!(table.presence(&b, "/chat", "u1", true), PresenceChange::Unchanged, "announced twice");
    assert_eq!(table.presence(&a, "/chat", "u0", true), PresenceChange::CameOnline);
    assert_eq!(table.online_users("/chat"), vec!["u0", "u1"]);
    assert!(table.online_users("/other").is_empty());
    assert_eq!(ids(&table.namespace_gateways("/chat")), vec!["a", "b"]);

    assert_eq!(table.presence(&a, "/chat", "u1", false), PresenceChange::Unchanged, "still on b");
    assert_eq!(table.presence(&b, "/chat", "u1", false), PresenceChange::WentOffline);
    assert_eq!(table.presence(&b, "/chat", "u1", false), PresenceChange::Unchanged, "already offline");
    assert_eq!(table.online_users("/chat"), vec!["u0"]);
}

#[test]
fn rooms_know_their_users_across_gateways() {
    let mut table = RoomTable::new();
    let (a, b) = (gw("a"), gw("b"));
    table.membership(&a, "/chat", "general", true);
    table.membership(&b, "/chat", "general", true);
    assert_eq!(table.room_presence(&a, "/chat", "general", "u1", true), PresenceChange::CameOnline, "joined");
    assert_eq!(table.room_presence(&b, "/chat", "general", "u1", true), PresenceChange::Unchanged);
    assert_eq!(table.room_presence(&b, "/chat", "general", "u1", true), PresenceChange::Unchanged, "repeated");
    table.room_presence(&b, "/chat", "general", "u0", true);
    table.room_presence(&b, "/chat", "random", "u2", true);
    assert_eq!(table.room_users("/chat", "general"), vec!["u0", "u1"]);
    assert_eq!(table.room_users("/chat", "random"), vec!["u2"]);
    assert!(table.online_users("/chat").is_empty(), "room users are not namespace presence");

    assert_eq!(table.room_presence(&a, "/chat", "general", "u1", false), PresenceChange::Unchanged, "still on b");
    assert_eq!(table.room_presence(&b, "/chat", "general", "u1", false), PresenceChange::WentOffline, "left");
    table.membership(&b, "/chat", "general", false);
    assert_eq!(ids(&table.gateways_of("/chat", "general")), vec!["a"]);
    assert_eq!(table.room_users("/chat", "general"), vec!["u0"], "b's user stays until announced gone");
    table.forget_gateway(&b);
    table.forget_gateway(&a);
    assert!(table.namespaces.is_empty() && table.held.is_empty(), "nothing left behind");
}

#[test]
fn sockets_without_a_user_hold_the_namespace_but_are_nobody_online() {
    let mut table = RoomTable::new();
    let a = gw("a");
    assert_eq!(table.presence(&a, "/chat", ANONYMOUS, true), PresenceChange::Unchanged);
    assert_eq!(ids(&table.namespace_gateways("/chat")), vec!["a"], "namespace-wide broadcasts reach a");
    assert!(table.online_users("/chat").is_empty());
    assert!(table.forget_gateway(&a).is_empty(), "nobody went offline");
    assert!(table.namespace_gateways("/chat").is_empty());
}

#[test]
fn a_forgotten_gateway_takes_its_rooms_and_lone_users_with_it() {
    let mut table = RoomTable::new();
    let (a, b) = (gw("a"), gw("b"));
    table.membership(&a, "/chat", "general", true);
    table.membership(&b, "/chat", "general", true);
    table.membership(&a, "/chat", "only-a", true);
    table.presence(&a, "/chat", "shared", true);
    table.presence(&b, "/chat", "shared", true);
    table.presence(&a, "/chat", "lonely", true);
    table.presence(&a, "/admin", "root", true);

    let mut gone = table.forget_gateway(&a);
    gone.sort();
    let offline = |nsp: &str, user: &str| PresenceEvent { nsp: nsp.to_owned(), user: user.to_owned(), online: false };
    assert_eq!(gone, vec![offline("/admin", "root"), offline("/chat", "lonely")]);
    assert_eq!(ids(&table.gateways_of("/chat", "general")), vec!["b"]);
    assert!(table.gateways_of("/chat", "only-a").is_empty());
    assert_eq!(table.online_users("/chat"), vec!["shared"]);
    assert_eq!(table.holdings(&a), Holdings::default());
    assert!(table.forget_gateway(&gw("unknown")).is_empty());
}

#[test]
fn a_resync_replaces_what_a_gateway_held() {
    let mut table = RoomTable::new();
    let (a, b) = (gw("a"), gw("b"));
    table.membership(&a, "/chat", "stale", true);
    table.membership(&a, "/chat", "kept", true);
    table.presence(&a, "/chat", "left", true);
    table.presence(&a, "/chat", "stays", true);
    table.presence(&b, "/chat", "moved", true);
    table.room_presence(&a, "/chat", "stale", "stays", true);

    let room_user = ("/chat".to_owned(), "new".to_owned(), "fresh".to_owned());
    let state = Holdings {
        rooms: pairs([("/chat", "kept"), ("/chat", "new")]),
        users: pairs([("/chat", "stays"), ("/chat", "moved"), ("/chat", "fresh")]),
        room_users: [room_user].into(),
    };
    let mut events = table.resync(&a, state.clone());
    events.sort();
    let event = |user: &str, online| PresenceEvent { nsp: "/chat".to_owned(), user: user.to_owned(), online };
    assert_eq!(events, vec![event("fresh", true), event("left", false)], "moved was online on b already");
    assert_eq!(table.holdings(&a), state);
    assert!(table.gateways_of("/chat", "stale").is_empty());
    assert!(table.room_users("/chat", "stale").is_empty());
    assert_eq!(ids(&table.gateways_of("/chat", "new")), vec!["a"]);
    assert_eq!(table.room_users("/chat", "new"), vec!["fresh"]);
    assert_eq!(table.online_users("/chat"), vec!["fresh", "moved", "stays"]);
    assert!(table.resync(&a, state).is_empty(), "the same state again changes nothing");
}

#[test]
fn sequences_count_per_room_and_restart_when_the_room_is_held_again() {
    let mut table = RoomTable::new();
    let a = gw("a");
    assert_eq!(table.next_seq("/chat", Some("r")), 0, "nobody holds it");
    table.membership(&a, "/chat", "r", true);
    table.membership(&a, "/chat", "s", true);
    assert_eq!((1..=3).map(|_| table.next_seq("/chat", Some("r"))).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(table.next_seq("/chat", Some("s")), 1, "rooms count apart");
    assert_eq!(table.next_seq("/chat", None), 1, "so does the namespace");
    table.membership(&a, "/chat", "r", false);
    table.membership(&a, "/chat", "r", true);
    assert_eq!(table.next_seq("/chat", Some("r")), 1);
}

#[test]
fn what_moved_to_another_owner_is_dropped() {
    let mut table = RoomTable::new();
    let (a, b) = (gw("a"), gw("b"));
    table.membership(&a, "/chat", "mine", true);
    table.membership(&b, "/chat", "theirs", true);
    table.presence(&a, "/chat", "u", true);
    table.presence(&b, "/other", "v", true);
    table.room_presence(&a, "/chat", "mine", "u", true);
    table.room_presence(&b, "/chat", "theirs", "v", true);
    table.retain_owned(|key| key == "room:/chat:mine" || key == "nsp:/other");
    assert_eq!(table.room_users("/chat", "mine"), vec!["u"]);
    assert!(table.room_users("/chat", "theirs").is_empty());
    assert_eq!(ids(&table.gateways_of("/chat", "mine")), vec!["a"]);
    assert!(table.gateways_of("/chat", "theirs").is_empty());
    assert!(table.online_users("/chat").is_empty(), "/chat's presence moved");
    assert_eq!(table.online_users("/other"), vec!["v"]);
    assert_eq!(table.holdings(&b).users, pairs([("/other", "v")]));
    assert!(table.holdings(&b).rooms.is_empty());
}

#[test]
fn users_are_located_on_their_gateways() {
    let mut table = RoomTable::new();
    let (a, b, c) = (gw("a"), gw("b"), gw("c"));
    table.presence(&b, "/chat", "u1", true);
    table.presence(&a, "/chat", "u1", true);
    table.presence(&c, "/chat", "u2", true);
    table.presence(&c, "/chat", ANONYMOUS, true);
    table.presence(&a, "/other", "u3", true);
    assert_eq!(ids(&table.locate_users("/chat", ["u1"])), vec!["a", "b"]);
    assert_eq!(ids(&table.locate_users("/chat", ["u2", "u1", "u2", "nobody"])), vec!["a", "b", "c"]);
    assert!(table.locate_users("/chat", ["u3", ANONYMOUS]).is_empty(), "another namespace; nobody");
    assert!(table.locate_users("/none", ["u1"]).is_empty());
    table.presence(&a, "/chat", "u1", false);
    assert_eq!(ids(&table.locate_users("/chat", ["u1"])), vec!["b"]);
}

#[test]
fn rooms_are_counted() {
    let mut table = RoomTable::new();
    assert_eq!(table.room_count(), 0);
    table.membership(&gw("a"), "/chat", "general", true);
    table.membership(&gw("b"), "/chat", "general", true);
    table.room_presence(&gw("a"), "/", "lobby", "u1", true);
    table.presence(&gw("a"), "/", "u1", true);
    assert_eq!(table.room_count(), 2);
    table.forget_gateway(&gw("a"));
    assert_eq!(table.room_count(), 1);
}
