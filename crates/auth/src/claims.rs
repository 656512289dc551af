//! The token claims this server reads (`sub`, `name`, `role`) and writes
//! (when it mints a token), and the mapping of claims to an [`Identity`].
//!
//! `exp`, `nbf`, `iss` and `aud` are checked by `jsonwebtoken`'s validation,
//! configured in `lib.rs`; they are not read here.

use serde::{Deserialize, Serialize};

use crate::{AuthError, Identity};

/// Role of a token without a `role` claim.
pub(crate) const DEFAULT_ROLE: &str = "user";

/// Claims read from a verified token. A claim of the wrong JSON type fails
/// deserialization, and so the token.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    sub: Option<String>,
    name: Option<String>,
    role: Option<String>,
}

impl Claims {
    /// `sub` is required and non-empty; `name` defaults to `sub`, `role` to
    /// `user`. An empty `name` or `role` counts as absent.
    pub(crate) fn into_identity(self) -> Result<Identity, AuthError> {
        let user_id = self
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Invalid("missing or empty sub claim".into()))?;
        let name = self.name.filter(|n| !n.is_empty()).unwrap_or_else(|| user_id.clone());
        let role = self.role.filter(|r| !r.is_empty()).unwrap_or_else(|| DEFAULT_ROLE.into());
        Ok(Identity { user_id, name, role })
    }
}

/// Claims written by [`crate::mint_hs256`].
#[derive(Debug, Serialize)]
pub(crate) struct MintedClaims<'a> {
    pub(crate) sub: &'a str,
    pub(crate) name: &'a str,
    pub(crate) role: &'a str,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: Option<&str>, name: Option<&str>, role: Option<&str>) -> Claims {
        Claims { sub: sub.map(Into::into), name: name.map(Into::into), role: role.map(Into::into) }
    }

    #[test]
    fn defaults_apply() {
        let id = claims(Some("u1"), None, Some("")).into_identity().unwrap();
        assert_eq!((id.user_id.as_str(), id.name.as_str(), id.role.as_str()), ("u1", "u1", "user"));
    }

    #[test]
    fn empty_sub_is_refused() {
        assert!(matches!(claims(Some(""), None, None).into_identity(), Err(AuthError::Invalid(_))));
        assert!(matches!(claims(None, Some("n"), None).into_identity(), Err(AuthError::Invalid(_))));
    }
}
