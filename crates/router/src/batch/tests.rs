//! Unit tests of the batch framing, against literal bytes.

use super::*;

fn delivery() -> Delivery {
    Delivery {
        nsp: "/c".to_owned(),
        rooms: vec!["r".to_owned()],
        except: vec![],
        volatile: false,
        store: false,
        stamps: vec![Stamp { seq: 7, offset: Some("1-0".to_owned()) }],
        packet: Bytes::from_static(b"2[\"m\"]"),
    }
}

#[rustfmt::skip]
const ONE: &[u8] = &[
    1,                      // version
    0, 0, 0, 2, b'r', b'1', // router id
    0, 0, 0, 1,             // one delivery
    0, 0, 0, 2, b'/', b'c', // nsp
    0, 0, 0, 1,             // one room
    0, 0, 0, 1, b'r',
    0, 0, 0, 0,             // no exceptions
    0,                      // flags
    0, 0, 0, 1,             // one stamp
    0, 0, 0, 0, 0, 0, 0, 7, // seq
    0, 0, 0, 3, b'1', b'-', b'0',
    0, 0, 0, 6, b'2', b'[', b'"', b'm', b'"', b']',
];

#[test]
fn encodes_to_the_documented_bytes() {
    assert_eq!(&encode_batch("r1", &[delivery()])[..], ONE);
    let batch = Batch { router_id: "r1".to_owned(), deliveries: vec![delivery()] };
    assert_eq!(decode_batch(&Bytes::from_static(ONE)), Ok(batch));
    const EMPTY: &[u8] = &[1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(&encode_batch::<Delivery>("", &[])[..], EMPTY);
    assert_eq!(decode_batch(&Bytes::from_static(EMPTY)), Ok(Batch { router_id: String::new(), deliveries: vec![] }));
}

#[test]
fn round_trips_every_field() {
    let namespace_wide = Delivery {
        nsp: "/chät".to_owned(),
        rooms: vec![],
        except: vec!["sid-1".to_owned(), "muted".to_owned()],
        volatile: true,
        store: false,
        stamps: vec![Stamp { seq: u64::MAX, offset: None }],
        packet: Bytes::from_static(&[0, 255, 10]),
    };
    let multi = Delivery {
        rooms: vec!["a".to_owned(), "b".to_owned()],
        stamps: vec![Stamp { seq: 1, offset: Some("x".to_owned()) }, Stamp { seq: 2, offset: None }],
        packet: Bytes::new(),
        store: true,
        ..delivery()
    };
    let deliveries = vec![delivery(), namespace_wide, multi];
    let encoded = encode_batch("router-7", &deliveries);
    assert_eq!(encoded.len(), deliveries.iter().map(encoded_len).sum::<usize>() + 9 + 8, "sized exactly");
    assert_eq!(decode_batch(&encoded), Ok(Batch { router_id: "router-7".to_owned(), deliveries }));
}

#[test]
fn every_truncation_is_an_error() {
    for len in 0..ONE.len() {
        let cut = Bytes::copy_from_slice(&ONE[..len]);
        assert!(matches!(decode_batch(&cut), Err(RouterError::Malformed(_))), "cut at {len}");
    }
}

#[test]
fn malformed_input_is_named() {
    let with = |at: usize, byte: u8| {
        let mut bytes = ONE.to_vec();
        bytes[at] = byte;
        decode_batch(&Bytes::from(bytes))
    };
    let error = |result: Result<Batch, RouterError>| match result {
        Err(RouterError::Malformed(why)) => why,
        other => panic!("decoded {other:?}"),
    };
    assert_eq!(error(with(0, 2)), "version 2, expected 1");
    assert_eq!(error(with(30, 4)), "unknown flags 0x04");
    assert_eq!(with(30, 3).map(|batch| (batch.deliveries[0].volatile, batch.deliveries[0].store)), Ok((true, true)));
    assert_eq!(error(with(16, 0xff)), "invalid UTF-8 at byte 11");
    assert_eq!(error(with(6, 0xff)), "invalid UTF-8 at byte 1");
    let mut trailing = ONE.to_vec();
    trailing.push(0);
    assert_eq!(error(decode_batch(&Bytes::from(trailing))), "1 bytes after the last delivery");
    // A count far beyond the input is refused before anything is allocated.
    let huge = Bytes::from_static(&[1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(error(decode_batch(&huge)), "count 4294967295 at byte 5 exceeds the input");
}

#[test]
fn packets_are_slices_of_the_batch() {
    let encoded = encode_batch("r1", &[delivery()]);
    let decoded = decode_batch(&encoded).unwrap();
    let range = encoded.as_ptr_range();
    assert!(range.contains(&decoded.deliveries[0].packet.as_ptr()), "no copy");
}
