//! [`RouterError`]: everything the router's operations can fail with. The
//! gRPC layer ([`grpc`](crate::grpc)) maps each variant to a wire outcome
//! in one place: a `Refused` code for a publish, a status for a unary call.

use switchboard_broker::BrokerError;

use crate::RouterId;

/// Everything that can go wrong in the router.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The broker (Redis) could not do what was needed, or the router is
    /// shutting down: the operation did not complete and nothing was
    /// delivered by it; it may be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This router does not own `key` in its view of the live routers;
    /// `owner` is who does (`None` when no router is live).
    #[error("not the owner of {key} (owner: {})", owner.as_ref().map_or("none", |id| id.as_str()))]
    NotOwner { key: String, owner: Option<RouterId> },
    /// A router or gateway id that is empty, too long or not printable
    /// ASCII without `|`.
    #[error("invalid node id {0:?}")]
    InvalidId(String),
    /// A delivery batch that does not decode.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// A request that breaks the contract (volatile with store, an
    /// `id_field` on a packet whose first argument is not an object, a
    /// history position that is not a stream id, ...): a bug of the
    /// caller, not worth retrying.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl From<BrokerError> for RouterError {
    /// Every broker failure the router meets is an outage to its callers:
    /// the ids and names it passes are its own, so `InvalidId` or `Config`
    /// would be a bug that retrying after an outage cannot fix either.
    fn from(error: BrokerError) -> Self {
        RouterError::Unavailable(error.to_string())
    }
}
