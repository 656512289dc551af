//! The auth token each client sends in its CONNECT packet: none, one fixed
//! token, or one HS256 JWT minted per client with `sub` = `u<index>`.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

pub(crate) enum Tokens {
    None,
    Fixed(String),
    Minted(Box<EncodingKey>),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    iat: u64,
    exp: u64,
}

impl Tokens {
    pub(crate) fn new(secret: Option<&str>, fixed: Option<&str>) -> Self {
        match (secret, fixed) {
            (Some(s), _) => Self::Minted(Box::new(EncodingKey::from_secret(s.as_bytes()))),
            (None, Some(t)) => Self::Fixed(t.to_owned()),
            (None, None) => Self::None,
        }
    }

    /// The token of client `index`; minted on demand so that 100k clients
    /// never hold 100k tokens at once.
    pub(crate) fn for_client(&self, index: usize) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Self::None => None,
            Self::Fixed(t) => Some(t.clone()),
            Self::Minted(key) => {
                let user = format!("u{index}");
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                let claims = Claims { sub: &user, name: &user, iat: now, exp: now + 24 * 3600 };
                Some(encode(&Header::default(), &claims, key)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_hs256_with_sub() {
        let t = Tokens::new(Some("s3cret"), None).for_client(7).unwrap().unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&t, &jsonwebtoken::DecodingKey::from_secret(b"s3cret"), &v)
                .unwrap();
        assert_eq!(data.claims["sub"], "u7");
    }
}
