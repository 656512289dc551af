//! JSON Web Key Set files (`SWITCHBOARD_JWKS_FILE`): the RS256 and ES256
//! signing keys of an identity provider, each with an optional `kid`.
//!
//! Keys this server cannot or must not use are skipped rather than refused,
//! because an identity provider's set routinely carries more than signing
//! keys: encryption keys (`use: enc`), other algorithms, and above all
//! symmetric (`oct`) keys, which must never verify anything here since a
//! published set is public. The set is refused only when a key meant for
//! RS256/ES256 is broken, or when nothing usable is left.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::keys::{self, KeyMaterial};

/// A usable key of the set.
#[derive(Debug)]
pub(crate) struct JwksKey {
    pub(crate) kid: Option<String>,
    pub(crate) material: KeyMaterial,
}

#[derive(Deserialize)]
struct JwkSetFile {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK this server reads (RFC 7517 / 7518); others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document into its usable keys. The error is a sentence for
/// the operator.
pub(crate) fn parse(text: &str) -> Result<Vec<JwksKey>, String> {
    let set: JwkSetFile = serde_json::from_str(text).map_err(|e| format!("not a JWKS document ({e})"))?;
    let mut usable: Vec<JwksKey> = Vec::new();
    let mut skipped = Vec::new();
    for (index, value) in set.keys.into_iter().enumerate() {
        let raw: RawJwk = serde_json::from_value(value).map_err(|e| format!("keys[{index}]: {e}"))?;
        let name = match &raw.kid {
            Some(kid) => format!("keys[{index}] (kid \"{kid}\")"),
            None => format!("keys[{index}]"),
        };
        match convert(&raw) {
            Ok(Some(material)) => {
                let duplicate = usable.iter().any(|k| k.kid == raw.kid && k.material.alg == material.alg);
                if duplicate {
                    return Err(format!("{name}: another {:?} key has the same kid", material.alg));
                }
                usable.push(JwksKey { kid: raw.kid, material });
            }
            Ok(None) => skipped.push(name),
            Err(message) => return Err(format!("{name}: {message}")),
        }
    }
    if usable.is_empty() {
        let detail = if skipped.is_empty() { String::new() } else { format!(" (skipped: {})", skipped.join(", ")) };
        return Err(format!("no RS256 or ES256 signing key in the set{detail}"));
    }
    Ok(usable)
}

/// `Ok(None)` for a key to skip, `Err` for a signing key that is broken.
fn convert(jwk: &RawJwk) -> Result<Option<KeyMaterial>, String> {
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = jwk.alg.as_deref();
    match jwk.kty.as_str() {
        "RSA" if alg.is_none_or(|a| a == "RS256") => {
            let n = member(&jwk.n, "n")?;
            let e = member(&jwk.e, "e")?;
            keys::rsa(&n, &e).map(Some)
        }
        "EC" if alg.is_none_or(|a| a == "ES256") => {
            match jwk.crv.as_deref() {
                Some("P-256") => {}
                // ES256 is P-256 only: a key saying ES256 on another curve is broken,
                // a key on another curve without `alg` is just not ours.
                _ if alg.is_some() => return Err("ES256 key not on curve P-256".into()),
                _ => return Ok(None),
            }
            let x = member(&jwk.x, "x")?;
            let y = member(&jwk.y, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes each".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            keys::ec_p256(&point).map(Some)
        }
        _ => Ok(None),
    }
}

/// A required base64url member. Padding is tolerated: some tools emit it.
fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let text = value.as_deref().ok_or_else(|| format!("missing \"{name}\""))?;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|e| format!("\"{name}\" is not base64url ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_json_is_refused() {
        assert!(parse("nope").unwrap_err().contains("not a JWKS document"));
    }

    #[test]
    fn only_symmetric_keys_leave_nothing_usable() {
        let err = parse(r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#).unwrap_err();
        assert!(err.contains("no RS256 or ES256") && err.contains("kid \"h\""), "{err}");
    }

    #[test]
    fn rsa_key_without_modulus_is_refused() {
        let err = parse(r#"{"keys":[{"kty":"RSA","kid":"r","e":"AQAB"}]}"#).unwrap_err();
        assert!(err.contains("missing \"n\""), "{err}");
    }

    #[test]
    fn es256_key_on_other_curve_is_refused() {
        let doc = r#"{"keys":[{"kty":"EC","alg":"ES256","crv":"P-384","x":"AA","y":"AA"}]}"#;
        assert!(parse(doc).unwrap_err().contains("P-256"));
    }
}
