//! Waiting for a condition in tests, bounded in time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `attempt` until it gives `Some`, for at most `within`; panics with
/// `what` when time runs out.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
