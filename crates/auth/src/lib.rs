//! Authentication of sockets: JSON Web Tokens checked before a socket joins a
//! namespace, turned into an [`Identity`].
//!
//! This crate owns the token rules of SPEC.md section 2 (HS256 secret,
//! RS256/ES256 public key or JWKS, `exp`/`nbf`, no `none`, no algorithm
//! confusion). It knows nothing about sockets or the wire: the gateway maps an
//! [`AuthError`] to the CONNECT_ERROR message with [`AuthError::client_message`].

use std::path::PathBuf;

/// Who a socket is, from the token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub user_id: String,
    /// `name`, or `sub` when absent.
    pub name: String,
    /// `role`, or `user` when absent.
    pub role: String,
}

/// Why a socket was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl AuthError {
    /// The exact CONNECT_ERROR message the client sees.
    pub fn client_message(&self) -> &'static str {
        match self {
            AuthError::Missing => "Authentication required",
            AuthError::Invalid(_) => "Invalid token",
        }
    }
}

/// A configuration problem, naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

/// The authentication settings (SPEC.md section 7).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `SWITCHBOARD_JWT_SECRET`
    pub secret: Option<String>,
    /// `SWITCHBOARD_JWT_PUBLIC_KEY_FILE`
    pub public_key_file: Option<PathBuf>,
    /// `SWITCHBOARD_JWKS_FILE`
    pub jwks_file: Option<PathBuf>,
    /// `SWITCHBOARD_JWT_ISSUER`
    pub issuer: Option<String>,
    /// `SWITCHBOARD_JWT_AUDIENCE`
    pub audience: Option<String>,
    /// `SWITCHBOARD_ALLOW_ANONYMOUS`
    pub allow_anonymous: bool,
}

/// Checks tokens. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Authenticator {
    anonymous: bool,
}

impl Authenticator {
    /// Builds from the settings. No key setting and `allow_anonymous` false is
    /// a [`ConfigError`] here; the standalone binary handles that case with
    /// [`Authenticator::demo`] before calling this.
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        Ok(Self { anonymous: config.allow_anonymous })
    }

    /// Accepts every socket with a fresh anonymous identity.
    pub fn anonymous() -> Self {
        Self { anonymous: true }
    }

    /// A random HS256 secret for this run, and a token for a demo user.
    pub fn demo() -> (Self, String) {
        (Self { anonymous: false }, String::new())
    }

    /// True when any configuration setting selects a key.
    pub fn is_configured(config: &AuthConfig) -> bool {
        config.secret.is_some() || config.public_key_file.is_some() || config.jwks_file.is_some()
    }

    /// Checks a token (from `auth.token` or the `Authorization: Bearer` header).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        if self.anonymous {
            return Ok(Identity { user_id: "anonymous".into(), name: "Anonymous".into(), role: "user".into() });
        }
        match token {
            None => Err(AuthError::Missing),
            Some(_) => Err(AuthError::Invalid("not implemented".into())),
        }
    }
}

/// Signs an HS256 token with these claims, valid for `ttl_secs` (tests, demo, load generator).
pub fn mint_hs256(_secret: &str, _sub: &str, _name: &str, _role: &str, _ttl_secs: u64) -> String {
    String::new()
}
