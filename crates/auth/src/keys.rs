//! Verification keys: turning a secret, a PEM public key or a JWK's numbers
//! into a `jsonwebtoken` [`DecodingKey`] bound to exactly one algorithm.
//!
//! Every check that can be made on a key is made here, when the server starts:
//! a bad key file must stop the start-up with a clear message, not turn every
//! later connection into an `Invalid token`.

use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// RFC 7518 §3.3: RS256 keys MUST be at least 2048 bits.
const RSA_MIN_BITS: usize = 2048;
/// The RustCrypto verifier refuses larger moduli, so refuse them up front.
const RSA_MAX_BITS: usize = 4096;
/// The RustCrypto verifier's bound on the public exponent.
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// A decoding key and the one algorithm it may verify.
#[derive(Debug)]
pub(crate) struct KeyMaterial {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The HS256 key for a shared secret.
pub(crate) fn hs256(secret: &str) -> KeyMaterial {
    KeyMaterial { alg: Algorithm::HS256, key: DecodingKey::from_secret(secret.as_bytes()) }
}

/// Reads a PEM public key: an RSA key becomes an RS256-only key, an EC P-256
/// key an ES256-only key. The error is a sentence for the operator.
pub(crate) fn from_pem(text: &str) -> Result<KeyMaterial, String> {
    let label = pem_label(text).ok_or("not a PEM file (no \"-----BEGIN\" line)")?;
    if label.contains("PRIVATE KEY") {
        return Err(format!(
            "holds a private key ({label}); give the public key instead \
             (openssl pkey -in private.pem -pubout -out public.pem)"
        ));
    }
    if label == "CERTIFICATE" {
        return Err("holds a certificate; give its public key instead \
                    (openssl x509 -in cert.pem -pubkey -noout > public.pem)"
            .into());
    }
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        return Err(format!("unsupported PEM block \"{label}\"; expected \"PUBLIC KEY\""));
    }

    // The PEM decoder of jsonwebtoken tells RSA from EC by the key's OID:
    // each constructor refuses the other family.
    if let Ok(key) = DecodingKey::from_rsa_pem(text.as_bytes()) {
        let der = der_bytes(&key).ok_or("malformed RSA public key")?;
        let (n, e) = parse_rsa_public_key(der).ok_or("malformed RSA public key")?;
        return rsa(n, e);
    }
    if let Ok(key) = DecodingKey::from_ec_pem(text.as_bytes()) {
        let point = der_bytes(&key).ok_or("malformed EC public key")?;
        return ec_p256(point);
    }
    Err("not an RSA or EC public key (supported: RSA for RS256, EC P-256 for ES256)".into())
}

/// An RS256 key from the big-endian modulus and exponent, after the checks the
/// verifier would otherwise only fail on at every token.
pub(crate) fn rsa(n: &[u8], e: &[u8]) -> Result<KeyMaterial, String> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = bit_length(n);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!("RSA key of {bits} bits; RS256 needs {RSA_MIN_BITS} to {RSA_MAX_BITS} bits"));
    }
    let exponent = (e.len() <= 8)
        .then(|| e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        .filter(|&x| x >= 3 && x % 2 == 1 && x <= RSA_MAX_EXPONENT);
    if exponent.is_none() {
        return Err("RSA key with an invalid public exponent".into());
    }
    Ok(KeyMaterial { alg: Algorithm::RS256, key: DecodingKey::from_rsa_raw_components(n, e) })
}

/// An ES256 key from a SEC1 point (`04 || x || y`, or compressed).
pub(crate) fn ec_p256(point: &[u8]) -> Result<KeyMaterial, String> {
    let key = DecodingKey::from_ec_der(point);
    // Building an ES256 verifier parses the point as P-256 and checks it is on
    // the curve; that fails here, before any signature is looked at, for a
    // P-384 key or garbage. The dummy signature only has to be valid base64.
    if jsonwebtoken::crypto::verify("AA", b"probe", &key, Algorithm::ES256).is_err() {
        return Err("EC key is not a valid P-256 point (ES256 needs curve P-256)".into());
    }
    Ok(KeyMaterial { alg: Algorithm::ES256, key })
}

/// The text between `-----BEGIN ` and the closing dashes.
fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    Some(rest[..rest.find("-----")?].trim())
}

fn der_bytes(key: &DecodingKey) -> Option<&[u8]> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => Some(bytes),
        DecodingKeyKind::RsaModulusExponent { .. } => None,
    }
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
/// Only these two positive integers are needed, so a full ASN.1 parser (and
/// another dependency) is not.
pub(crate) fn parse_rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, body, []) = read_tlv(der)? else { return None };
    let (0x02, n, rest) = read_tlv(body)? else { return None };
    let (0x02, e, []) = read_tlv(rest)? else { return None };
    // A set high bit would make the DER INTEGER negative.
    if n.first().is_none_or(|b| b & 0x80 != 0) || e.first().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    Some((n, e))
}

/// One DER tag-length-value: (tag, value, bytes after it).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(count);
        (len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), rest)
    };
    (rest.len() >= len).then(|| {
        let (value, after) = rest.split_at(len);
        (tag, value, after)
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(&top) => (bytes.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_rsa_public_key_is_parsed() {
        // SEQUENCE { INTEGER 0x00c3 (positive, padded), INTEGER 3 }
        let der = [0x30, 0x07, 0x02, 0x02, 0x00, 0xc3, 0x02, 0x01, 0x03];
        assert_eq!(parse_rsa_public_key(&der), Some((&[0x00, 0xc3][..], &[0x03][..])));
    }

    #[test]
    fn der_garbage_is_refused() {
        assert_eq!(parse_rsa_public_key(&[]), None);
        assert_eq!(parse_rsa_public_key(&[0x30, 0x05, 0x02]), None);
        // negative modulus
        assert_eq!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x03]), None);
        // trailing bytes after the sequence
        assert_eq!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x03, 0x00]), None);
    }

    #[test]
    fn long_form_length_is_read() {
        let mut der = vec![0x04, 0x81, 0x80];
        der.extend([7u8; 0x80]);
        let (tag, value, rest) = read_tlv(&der).unwrap();
        assert_eq!((tag, value.len(), rest.len()), (0x04, 0x80, 0));
    }

    #[test]
    fn bit_length_counts_from_top_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0x80, 0x00]), 16);
    }

    #[test]
    fn small_rsa_modulus_is_refused() {
        let err = rsa(&[0xc3; 128], &[1, 0, 1]).unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
    }

    #[test]
    fn even_rsa_exponent_is_refused() {
        assert!(rsa(&[0xc3; 256], &[2]).is_err());
        assert!(rsa(&[0xc3; 256], &[1, 0, 1]).is_ok());
    }

    #[test]
    fn pem_label_is_found() {
        assert_eq!(pem_label("x\n-----BEGIN PUBLIC KEY-----\nAA\n"), Some("PUBLIC KEY"));
        assert_eq!(pem_label("no pem here"), None);
    }
}
