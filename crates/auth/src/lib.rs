//! Authentication of sockets: JSON Web Tokens checked before a socket joins a
//! namespace, turned into an [`Identity`].
//!
//! This crate owns the token rules of SPEC.md section 2 (HS256 secret,
//! RS256/ES256 public key or JWKS, `exp`/`nbf`, no `none`, no algorithm
//! confusion). It knows nothing about sockets or the wire: the gateway maps an
//! [`AuthError`] to the CONNECT_ERROR message with [`AuthError::client_message`].
//!
//! Here live the public types, the [`Authenticator`] and token minting; the
//! claims mapping is in `claims`, key parsing and checking in `keys`, JWKS
//! files in `jwks`, the check of one token in `verify`.
//!
//! Every key is parsed and checked once, in the constructor: the connect path
//! only verifies. Each key verifies exactly one algorithm, fixed by the key and
//! never by the token, which is what refuses `none` and algorithm confusion.

mod claims;
mod jwks;
mod keys;
mod verify;

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::claims::MintedClaims;
use crate::verify::{Verifier, checked_token, select_by_kid, verify};

/// `SWITCHBOARD_JWT_SECRET`: HS256 shared secret.
pub const ENV_JWT_SECRET: &str = "SWITCHBOARD_JWT_SECRET";
/// `SWITCHBOARD_JWT_PUBLIC_KEY_FILE`: PEM public key (RSA for RS256, EC P-256 for ES256).
pub const ENV_JWT_PUBLIC_KEY_FILE: &str = "SWITCHBOARD_JWT_PUBLIC_KEY_FILE";
/// `SWITCHBOARD_JWKS_FILE`: JSON Web Key Set file.
pub const ENV_JWKS_FILE: &str = "SWITCHBOARD_JWKS_FILE";
/// `SWITCHBOARD_JWT_ISSUER`: required `iss` when set.
pub const ENV_JWT_ISSUER: &str = "SWITCHBOARD_JWT_ISSUER";
/// `SWITCHBOARD_JWT_AUDIENCE`: required `aud` when set.
pub const ENV_JWT_AUDIENCE: &str = "SWITCHBOARD_JWT_AUDIENCE";

/// Clock skew tolerated on `exp` and `nbf`, in seconds: enough for hosts whose
/// clocks drift a little, too little to matter for a token's lifetime.
pub const LEEWAY_SECS: u64 = 5;
/// Longest token accepted, in bytes. Real JWTs are far smaller (HTTP headers
/// cap them near 8 KiB); the bound keeps a hostile client from making the
/// server base64-decode and parse megabytes on the connect path.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest leeway [`Authenticator::with_leeway`] sets: more would no longer be
/// clock skew but a longer token lifetime.
pub const MAX_LEEWAY_SECS: u64 = 60 * 60;
/// Lifetime of the token [`Authenticator::demo`] prints.
pub const DEMO_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

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
    /// No token, or an empty one.
    #[error("no token")]
    Missing,
    /// Any other failure; the text is for logs, never for the client.
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

/// A token could not be signed (claims that do not serialize to a JSON object).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign token: {0}")]
pub struct SignError(String);

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
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Anonymous,
    /// A secret or a PEM key: one verifier, whatever `kid` the token names.
    Single(Box<Verifier>),
    /// A JWKS: the token's `kid` picks the verifier.
    Jwks(Vec<Verifier>),
}

impl Authenticator {
    /// Builds from the settings. No key setting and `allow_anonymous` false is
    /// a [`ConfigError`] here; the standalone binary handles that case with
    /// [`Authenticator::demo`] before calling this. When a key is set,
    /// `allow_anonymous` is ignored: tokens are required.
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        ensure_crypto_provider();
        let chosen: Vec<&'static str> = [
            (config.secret.is_some(), ENV_JWT_SECRET),
            (config.public_key_file.is_some(), ENV_JWT_PUBLIC_KEY_FILE),
            (config.jwks_file.is_some(), ENV_JWKS_FILE),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if chosen.len() > 1 {
            return Err(ConfigError {
                setting: chosen[0],
                message: format!(
                    "set only one of {ENV_JWT_SECRET}, {ENV_JWT_PUBLIC_KEY_FILE}, {ENV_JWKS_FILE}; found {}",
                    chosen.join(" and ")
                ),
            });
        }

        let mode = if let Some(secret) = &config.secret {
            if secret.is_empty() {
                // An empty HMAC key would let anyone sign tokens.
                return Err(ConfigError { setting: ENV_JWT_SECRET, message: "must not be empty".into() });
            }
            Mode::Single(Box::new(Verifier::new(None, keys::hs256(secret), config)))
        } else if let Some(path) = &config.public_key_file {
            let text = read_key_file(ENV_JWT_PUBLIC_KEY_FILE, path)?;
            let material = keys::from_pem(&text).map_err(|message| ConfigError {
                setting: ENV_JWT_PUBLIC_KEY_FILE,
                message: format!("{}: {message}", path.display()),
            })?;
            Mode::Single(Box::new(Verifier::new(None, material, config)))
        } else if let Some(path) = &config.jwks_file {
            let text = read_key_file(ENV_JWKS_FILE, path)?;
            let keys = jwks::parse(&text).map_err(|message| ConfigError {
                setting: ENV_JWKS_FILE,
                message: format!("{}: {message}", path.display()),
            })?;
            Mode::Jwks(keys.into_iter().map(|k| Verifier::new(k.kid, k.material, config)).collect())
        } else if config.allow_anonymous {
            Mode::Anonymous
        } else {
            return Err(ConfigError {
                setting: ENV_JWT_SECRET,
                message: format!(
                    "no authentication configured: set {ENV_JWT_SECRET}, {ENV_JWT_PUBLIC_KEY_FILE} or {ENV_JWKS_FILE}"
                ),
            });
        };
        Ok(Self { mode })
    }

    /// Accepts every socket with a fresh anonymous identity.
    pub fn anonymous() -> Self {
        Self { mode: Mode::Anonymous }
    }

    /// A random HS256 secret for this run, and a token for a demo user.
    pub fn demo() -> (Self, String) {
        ensure_crypto_provider();
        let secret = hex(&rand::random::<[u8; 32]>());
        let verifier = Verifier::new(None, keys::hs256(&secret), &AuthConfig::default());
        let token = mint_hs256(&secret, "demo", "Demo User", "admin", DEMO_TOKEN_TTL_SECS);
        (Self { mode: Mode::Single(Box::new(verifier)) }, token)
    }

    /// True when any configuration setting selects a key.
    pub fn is_configured(config: &AuthConfig) -> bool {
        config.secret.is_some() || config.public_key_file.is_some() || config.jwks_file.is_some()
    }

    /// True when every socket is let in without a token.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.mode, Mode::Anonymous)
    }

    /// What this authenticator accepts, for the start-up log (never key material).
    pub fn describe(&self) -> String {
        match &self.mode {
            Mode::Anonymous => "anonymous (no token required)".into(),
            Mode::Single(v) => format!("{:?} tokens", v.alg),
            Mode::Jwks(keys) => {
                let list: Vec<String> =
                    keys.iter().map(|v| format!("{} {:?}", v.kid.as_deref().unwrap_or("(no kid)"), v.alg)).collect();
                format!("JWKS tokens, keys: {}", list.join(", "))
            }
        }
    }

    /// Replaces the clock skew tolerated on `exp`/`nbf` (default [`LEEWAY_SECS`],
    /// at most [`MAX_LEEWAY_SECS`]).
    pub fn with_leeway(mut self, secs: u64) -> Self {
        // The bound also keeps jsonwebtoken's `now - leeway` from underflowing.
        let secs = secs.min(MAX_LEEWAY_SECS);
        let verifiers = match &mut self.mode {
            Mode::Anonymous => return self,
            Mode::Single(v) => std::slice::from_mut(&mut **v),
            Mode::Jwks(keys) => keys.as_mut_slice(),
        };
        for verifier in verifiers {
            verifier.validation.leeway = secs;
        }
        self
    }

    /// Checks a token (from `auth.token` or the `Authorization: Bearer` header).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match &self.mode {
            Mode::Anonymous => Ok(anonymous_identity()),
            Mode::Single(verifier) => verify(verifier, checked_token(token)?),
            Mode::Jwks(keys) => {
                let token = checked_token(token)?;
                verify(select_by_kid(keys, token)?, token)
            }
        }
    }
}

fn anonymous_identity() -> Identity {
    Identity {
        user_id: format!("anon-{}", hex(&rand::random::<[u8; 6]>())),
        name: "Anonymous".into(),
        role: "user".into(),
    }
}

fn read_key_file(setting: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError { setting, message: format!("cannot read {}: {e}", path.display()) })
}

/// Lowercase hex, without a `format!` per byte (anonymous ids are made per connect).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]).map(char::from).collect()
}

/// jsonwebtoken picks its crypto backend from its crate features, and panics at
/// the first token if a dependency elsewhere in the build also turns on
/// `aws_lc_rs`. Installing the RustCrypto backend explicitly makes that feature
/// unification harmless. If a backend was installed already, it stays.
fn ensure_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
}

/// Signs an HS256 token with these claims, valid for `ttl_secs` (tests, demo, load generator).
pub fn mint_hs256(secret: &str, sub: &str, name: &str, role: &str, ttl_secs: u64) -> String {
    let iat = jsonwebtoken::get_current_timestamp();
    let claims = MintedClaims { sub, name, role, iat, exp: iat.saturating_add(ttl_secs) };
    // Strings and numbers always serialize, and HMAC takes keys of any length,
    // so this cannot fail.
    sign_hs256(secret, &claims).expect("HS256 signing of plain claims is infallible")
}

/// Signs arbitrary claims with HS256: tokens with `iss`/`aud` or custom claims
/// (load generator), or deliberately broken ones (tests). Nothing is added:
/// without an `exp` the token will be refused.
pub fn sign_hs256<C: Serialize>(secret: &str, claims: &C) -> Result<String, SignError> {
    ensure_crypto_provider();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| SignError(e.to_string()))
}
