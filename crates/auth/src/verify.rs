//! Verification of one token against the configured keys: the per-key
//! [`Verifier`] (key plus `jsonwebtoken` validation rules, built once at
//! start-up), the choice of a JWKS key by `kid`, and log reasons for refusals.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::claims::Claims;
use crate::keys::KeyMaterial;
use crate::{AuthConfig, AuthError, Identity, LEEWAY_SECS, MAX_TOKEN_BYTES};

/// One key with the validation rules of its one algorithm, built once.
#[derive(Debug)]
pub(crate) struct Verifier {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    key: DecodingKey,
    pub(crate) validation: Validation,
}

impl Verifier {
    pub(crate) fn new(kid: Option<String>, material: KeyMaterial, config: &AuthConfig) -> Self {
        let mut validation = Validation::new(material.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = non_empty(&config.issuer) {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match non_empty(&config.audience) {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience, a token's `aud` is someone else's
            // business: jsonwebtoken would otherwise refuse any token carrying one.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self { kid, alg: material.alg, key: material.key, validation }
    }
}

/// The JWKS key for a token: by `kid`, then by algorithm.
pub(crate) fn select_by_kid<'a>(keys: &'a [Verifier], token: &str) -> Result<&'a Verifier, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
    let candidates: Vec<&Verifier> = match header.kid.as_deref() {
        Some(kid) => keys.iter().filter(|v| v.kid.as_deref() == Some(kid)).collect(),
        // Without a kid there is no telling keys apart: only a one-key set works.
        None if keys.len() == 1 => keys.iter().collect(),
        None => return Err(AuthError::Invalid(format!("no kid in token and {} keys in the JWKS", keys.len()))),
    };
    if candidates.is_empty() {
        return Err(AuthError::Invalid(format!("unknown kid {:?}", header.kid.unwrap_or_default())));
    }
    // The key decides the algorithm: a token naming another one is refused
    // here, whatever its signature.
    candidates
        .into_iter()
        .find(|v| v.alg == header.alg)
        .ok_or_else(|| AuthError::Invalid(format!("algorithm {:?} not accepted for this kid", header.alg)))
}

/// Trims, and refuses absent, empty and oversized tokens.
pub(crate) fn checked_token(token: Option<&str>) -> Result<&str, AuthError> {
    let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Invalid(format!("token of {} bytes, over {MAX_TOKEN_BYTES}", token.len())));
    }
    Ok(token)
}

pub(crate) fn verify(verifier: &Verifier, token: &str) -> Result<Identity, AuthError> {
    let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
        .map_err(|e| AuthError::Invalid(reason(&e)))?;
    data.claims.into_identity()
}

/// A short reason for the logs.
fn reason(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired (exp)".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm => "algorithm not accepted for the configured key".into(),
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
        ErrorKind::InvalidAudience => "wrong audience (aud)".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim {claim}"),
        _ => format!("malformed token: {error}"),
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}
