//! Signed Engine.IO session ids, so that any gateway of a cluster can tell
//! which gateway holds a session (docs/cluster.md, "No sticky sessions").
//!
//! A signed sid is `<gateway id>.<random>.<signature>`: the random part is 20
//! characters of URL-safe base64 (15 random bytes, the shape of the reference
//! server's ids), the signature the first 16 bytes of
//! HMAC-SHA256(cluster secret, `<gateway id>.<random>`) in URL-safe base64
//! without padding (22 characters). Without the secret a sid naming another
//! gateway cannot be made up, so a client cannot make one gateway send
//! requests to another of its choosing.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a sid.
const SIGNATURE_BYTES: usize = 16;
/// Characters of the signature in a sid (16 bytes in unpadded base64).
const SIGNATURE_CHARS: usize = 22;
/// Characters of the random part (15 bytes in base64).
const RANDOM_CHARS: usize = 20;
/// The longest gateway id accepted, so that sids stay short.
pub const MAX_GATEWAY_ID_LEN: usize = 64;

/// Why a [`SidSigner`] cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidSignerError {
    /// The gateway id is empty, longer than [`MAX_GATEWAY_ID_LEN`], or has a
    /// character outside `[A-Za-z0-9_-]`.
    #[error("invalid gateway id {0:?}: expected 1 to 64 characters of [A-Za-z0-9_-]")]
    InvalidGatewayId(String),
    /// The cluster secret is empty.
    #[error("the cluster secret is empty")]
    EmptySecret,
}

/// Mints and checks signed Engine.IO session ids for one gateway.
///
/// Cheap to clone (the key is shared). Its `Debug` output shows the gateway
/// id only, never the key.
#[derive(Clone)]
pub struct SidSigner {
    gateway_id: Arc<str>,
    /// The HMAC already keyed with the cluster secret; cloned per use.
    mac: HmacSha256,
}

impl fmt::Debug for SidSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SidSigner").field("gateway_id", &self.gateway_id).finish_non_exhaustive()
    }
}

impl SidSigner {
    /// A signer for the gateway `gateway_id` (`[A-Za-z0-9_-]+`, at most 64
    /// characters) with the cluster's shared `secret`.
    ///
    /// # Panics
    ///
    /// When the gateway id is not of that form or the secret is empty: both
    /// come from the operator's configuration, which [`SidSigner::try_new`]
    /// checks without panicking.
    pub fn new(gateway_id: &str, secret: &[u8]) -> SidSigner {
        match SidSigner::try_new(gateway_id, secret) {
            Ok(signer) => signer,
            Err(error) => panic!("SidSigner::new: {error}"),
        }
    }

    /// [`SidSigner::new`], with an error instead of a panic.
    pub fn try_new(gateway_id: &str, secret: &[u8]) -> Result<SidSigner, SidSignerError> {
        if !valid_gateway_id(gateway_id) {
            return Err(SidSignerError::InvalidGatewayId(gateway_id.to_owned()));
        }
        if secret.is_empty() {
            return Err(SidSignerError::EmptySecret);
        }
        // HMAC takes keys of any length: this cannot fail.
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| SidSignerError::EmptySecret)?;
        Ok(SidSigner { gateway_id: Arc::from(gateway_id), mac })
    }

    /// The id of the gateway whose sids this signer mints.
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// A new session id: `<gateway id>.<20 random characters>.<signature>`,
    /// all characters URL-safe (`[A-Za-z0-9_.-]`).
    pub fn mint(&self) -> String {
        let random: [u8; 15] = rand::random();
        let mut sid = String::with_capacity(self.gateway_id.len() + RANDOM_CHARS + SIGNATURE_CHARS + 2);
        sid.push_str(&self.gateway_id);
        sid.push('.');
        URL_SAFE_NO_PAD.encode_string(random, &mut sid);
        let signature = self.sign(sid.as_bytes());
        sid.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature[..SIGNATURE_BYTES], &mut sid);
        sid
    }

    /// The gateway id in `sid` if its signature verifies with this signer's
    /// secret (compared in constant time); `None` for anything else, however
    /// malformed.
    pub fn owner<'a>(&self, sid: &'a str) -> Option<&'a str> {
        let (signed, signature) = sid.rsplit_once('.')?;
        let (gateway_id, random) = signed.split_once('.')?;
        if !valid_gateway_id(gateway_id)
            || random.len() != RANDOM_CHARS
            || !random.bytes().all(is_base64url)
            || signature.len() != SIGNATURE_CHARS
        {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if signature.len() != SIGNATURE_BYTES {
            return None;
        }
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_truncated_left(&signature).ok()?;
        Some(gateway_id)
    }

    fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

/// The gateway a sid claims to come from (its part before the first `.`),
/// without checking the signature: for telling "forged" from "not ours".
pub(crate) fn claimed_gateway(sid: &str) -> Option<&str> {
    let (gateway_id, _) = sid.split_once('.')?;
    valid_gateway_id(gateway_id).then_some(gateway_id)
}

fn valid_gateway_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_GATEWAY_ID_LEN && id.bytes().all(is_base64url)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Where the other gateways of a cluster can be reached.
///
/// The cluster's implementation reads the live gateways from `sb:gateways`;
/// tests use a fixed map.
pub trait Peers: Send + Sync + 'static {
    /// The internal HTTP address (host:port) of a live gateway, if known.
    fn address(&self, gateway_id: &str) -> Option<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"cluster secret";

    #[test]
    fn minted_sids_name_their_gateway() {
        let signer = SidSigner::new("gw-1_a", SECRET);
        let sid = signer.mint();
        let parts: Vec<&str> = sid.split('.').collect();
        assert_eq!(parts.len(), 3, "{sid}");
        assert_eq!(parts[0], "gw-1_a");
        assert_eq!(parts[1].len(), RANDOM_CHARS);
        assert_eq!(parts[2].len(), SIGNATURE_CHARS);
        assert!(sid.bytes().all(|b| is_base64url(b) || b == b'.'), "{sid}");
        assert_eq!(signer.owner(&sid), Some("gw-1_a"));
        assert_ne!(signer.mint(), sid, "sids are random");
    }

    #[test]
    fn any_gateway_with_the_secret_verifies_another_s_sid() {
        let a = SidSigner::new("a", SECRET);
        let b = SidSigner::new("b", SECRET);
        assert_eq!(b.owner(&a.mint()), Some("a"));
        assert_eq!(a.owner(&b.mint()), Some("b"));
    }

    #[test]
    fn a_changed_character_anywhere_fails() {
        let signer = SidSigner::new("gw", SECRET);
        let sid = signer.mint();
        for i in 0..sid.len() {
            if sid.as_bytes()[i] == b'.' {
                continue;
            }
            let mut bytes = sid.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).expect("ASCII");
            assert_eq!(signer.owner(&tampered), None, "{tampered}");
        }
    }

    #[test]
    fn another_gateway_id_with_the_same_signature_fails() {
        let signer = SidSigner::new("gw", SECRET);
        let sid = signer.mint();
        let moved = sid.replacen("gw.", "gx.", 1);
        assert_eq!(signer.owner(&moved), None);
    }

    #[test]
    fn a_sid_signed_with_another_secret_fails() {
        let ours = SidSigner::new("gw", SECRET);
        let theirs = SidSigner::new("gw", b"another secret");
        assert_eq!(ours.owner(&theirs.mint()), None);
        assert_eq!(theirs.owner(&ours.mint()), None);
    }

    #[test]
    fn malformed_sids_never_panic() {
        let signer = SidSigner::new("gw", SECRET);
        let good = signer.mint();
        let (signed, signature) = good.rsplit_once('.').expect("three parts");
        let cases = [
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "gw".into(),
            "gw.".into(),
            "gw..".into(),
            "abcdefghijklmnopqrst".into(),
            format!("{signed}."),
            format!("{signed}.{}", &signature[..SIGNATURE_CHARS - 1]),
            format!("{signed}.{signature}A"),
            format!("{signed}.{signature}.{signature}"),
            format!(".{good}"),
            format!("{good}."),
            format!("g w.{}", &good[3..]),
            format!("{signed}.{}", "=".repeat(SIGNATURE_CHARS)),
            format!("{signed}.{}", "é".repeat(11)),
            // Non-canonical base64: the last character carries bits that a
            // 16-byte value leaves zero.
            format!("{signed}.{}B", &signature[..SIGNATURE_CHARS - 1]),
            "é.ü.ß".into(),
            format!("{}.{}.{}", "a".repeat(MAX_GATEWAY_ID_LEN + 1), "b".repeat(RANDOM_CHARS), "c".repeat(22)),
        ];
        for case in &cases {
            assert_eq!(signer.owner(case), None, "{case:?}");
        }
    }

    #[test]
    fn the_last_character_of_a_signature_is_canonical() {
        // 22 base64 characters hold 132 bits; the 4 spare ones must be zero,
        // so each signature has exactly one spelling.
        let signer = SidSigner::new("gw", SECRET);
        let sid = signer.mint();
        let last = *sid.as_bytes().last().expect("non-empty");
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let accepted = alphabet
            .iter()
            .filter(|&&c| {
                let mut bytes = sid.clone().into_bytes();
                *bytes.last_mut().expect("non-empty") = c;
                signer.owner(std::str::from_utf8(&bytes).expect("ASCII")).is_some()
            })
            .count();
        assert_eq!(accepted, 1, "only {:?} itself verifies", last as char);
    }

    #[test]
    fn invalid_configuration_is_an_error() {
        assert_eq!(SidSigner::try_new("", SECRET).err(), Some(SidSignerError::InvalidGatewayId(String::new())));
        assert!(matches!(SidSigner::try_new("a.b", SECRET), Err(SidSignerError::InvalidGatewayId(_))));
        assert!(matches!(SidSigner::try_new("a b", SECRET), Err(SidSignerError::InvalidGatewayId(_))));
        assert!(matches!(SidSigner::try_new(&"a".repeat(65), SECRET), Err(SidSignerError::InvalidGatewayId(_))));
        assert_eq!(SidSigner::try_new("gw", b"").err(), Some(SidSignerError::EmptySecret));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let signer = SidSigner::new("gw", b"very-secret-key");
        let text = format!("{signer:?}");
        assert!(text.contains("gw"), "{text}");
        assert!(!text.contains("very-secret-key"), "{text}");
    }

    #[test]
    fn claimed_gateway_reads_the_prefix_only() {
        assert_eq!(claimed_gateway("gw.x.y"), Some("gw"));
        assert_eq!(claimed_gateway("abcdefghijklmnopqrst"), None);
        assert_eq!(claimed_gateway(".x"), None);
    }
}
