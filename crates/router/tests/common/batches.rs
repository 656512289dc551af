//! Reading a gateway's channel `sb:gw:<id>`, for both test binaries of the
//! router (`cluster`, `grpc`).

use std::time::Duration;

use switchboard_broker::Subscription;
use switchboard_proto::v1;
use switchboard_router::decode_batch;

/// The next batch on a gateway's channel, with its sender, if one comes
/// within `within`.
pub(crate) async fn next_batch_from(subscription: &mut Subscription, within: Duration) -> Option<v1::DeliveryBatch> {
    match tokio::time::timeout(within, subscription.recv()).await {
        Ok(Ok(bytes)) => Some(decode_batch(&bytes).expect("batches decode")),
        Ok(Err(error)) => panic!("subscription to {} failed: {error}", subscription.channel()),
        Err(_) => None,
    }
}

/// The deliveries of the next batch on a gateway's channel, if one comes
/// within `within`.
#[allow(dead_code, reason = "used by one of the two test binaries")]
pub(crate) async fn next_batch(subscription: &mut Subscription, within: Duration) -> Option<Vec<v1::Delivery>> {
    next_batch_from(subscription, within).await.map(|batch| batch.deliveries)
}

/// Batches until `count` deliveries arrived (each within 5 s), and no more.
pub(crate) async fn batches_of(subscription: &mut Subscription, count: usize) -> Vec<Vec<v1::Delivery>> {
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < count {
        let batch = next_batch_from(subscription, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{seen} of {count} deliveries arrived"));
        seen += batch.deliveries.len();
        batches.push(batch.deliveries);
    }
    assert_eq!(seen, count, "no more deliveries than published");
    batches
}
