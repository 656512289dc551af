//! Token checks through the public API, with the test-only keys of
//! `tests/fixtures/` (see the README there).

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use switchboard_auth::*;

const SECRET: &str = "a test secret of thirty-two bytes";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "name": "Ada", "role": "admin", "exp": now() + 600 })
}

fn secret_auth() -> Authenticator {
    Authenticator::from_config(&AuthConfig { secret: Some(SECRET.into()), ..Default::default() }).unwrap()
}

fn pem_auth(file: &str) -> Authenticator {
    Authenticator::from_config(&AuthConfig { public_key_file: Some(fixture(file)), ..Default::default() }).unwrap()
}

fn jwks_auth(file: &str) -> Authenticator {
    Authenticator::from_config(&AuthConfig { jwks_file: Some(fixture(file)), ..Default::default() }).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, private_pem: &str, claims: &Value) -> String {
    let pem = fixture_text(private_pem);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::RS256, kid, "rsa_private.pem", claims)
}

fn es256(kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::ES256, kid, "ec_private.pem", claims)
}

fn hs256(secret: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// `header.payload.` with no signature, as an attacker would send it.
fn unsigned(header: &Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.", part(header), part(claims))
}

#[track_caller]
fn assert_ok(auth: &Authenticator, token: &str, user_id: &str) -> Identity {
    let identity = auth.authenticate(Some(token)).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(identity.user_id, user_id);
    identity
}

#[track_caller]
fn assert_invalid(auth: &Authenticator, token: &str) -> String {
    match auth.authenticate(Some(token)) {
        Err(e @ AuthError::Invalid(_)) => {
            assert_eq!(e.client_message(), "Invalid token");
            e.to_string()
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[track_caller]
fn config_error(config: AuthConfig) -> ConfigError {
    match Authenticator::from_config(&config) {
        Err(e) => e,
        Ok(auth) => panic!("expected a ConfigError, got {auth:?}"),
    }
}

// --- HS256 ---

#[test]
fn hs256_ok() {
    let identity = assert_ok(&secret_auth(), &hs256(SECRET, None, &claims("u1")), "u1");
    assert_eq!(identity, Identity { user_id: "u1".into(), name: "Ada".into(), role: "admin".into() });
}

#[test]
fn name_and_role_default() {
    let token = hs256(SECRET, None, &json!({ "sub": "u2", "exp": now() + 60 }));
    let identity = assert_ok(&secret_auth(), &token, "u2");
    assert_eq!((identity.name.as_str(), identity.role.as_str()), ("u2", "user"));
}

#[test]
fn mint_hs256_is_accepted() {
    let token = mint_hs256(SECRET, "u3", "Bob", "user", 60);
    let identity = assert_ok(&secret_auth(), &token, "u3");
    assert_eq!(identity.name, "Bob");
}

#[test]
fn wrong_secret_is_refused() {
    let reason = assert_invalid(&secret_auth(), &hs256("another secret", None, &claims("u1")));
    assert!(reason.contains("bad signature"), "{reason}");
}

#[test]
fn expired_token_is_refused() {
    let token = hs256(SECRET, None, &json!({ "sub": "u1", "exp": now() - 60 }));
    assert!(assert_invalid(&secret_auth(), &token).contains("expired"));
}

#[test]
fn expiry_within_leeway_is_tolerated_unless_leeway_is_zero() {
    let token = hs256(SECRET, None, &json!({ "sub": "u1", "exp": now() - 2 }));
    assert_ok(&secret_auth(), &token, "u1");
    assert_invalid(&secret_auth().with_leeway(0), &token);
}

#[test]
fn missing_exp_is_refused() {
    let token = hs256(SECRET, None, &json!({ "sub": "u1" }));
    assert!(assert_invalid(&secret_auth(), &token).contains("exp"));
}

#[test]
fn nbf_in_future_is_refused() {
    let token = hs256(SECRET, None, &json!({ "sub": "u1", "exp": now() + 600, "nbf": now() + 60 }));
    assert!(assert_invalid(&secret_auth(), &token).contains("nbf"));
}

#[test]
fn nbf_in_past_is_accepted() {
    let token = hs256(SECRET, None, &json!({ "sub": "u1", "exp": now() + 600, "nbf": now() - 60 }));
    assert_ok(&secret_auth(), &token, "u1");
}

#[test]
fn missing_or_empty_or_non_string_sub_is_refused() {
    let auth = secret_auth();
    assert!(assert_invalid(&auth, &hs256(SECRET, None, &json!({ "exp": now() + 60 }))).contains("sub"));
    assert_invalid(&auth, &hs256(SECRET, None, &json!({ "sub": "", "exp": now() + 60 })));
    assert_invalid(&auth, &hs256(SECRET, None, &json!({ "sub": 42, "exp": now() + 60 })));
}

#[test]
fn malformed_strings_are_refused() {
    let auth = secret_auth();
    for token in ["abc", "a.b.c", "a.b", "..", "eyJhbGciOiJIUzI1NiJ9.%%%.sig", "Bearer x.y.z"] {
        assert_invalid(&auth, token);
    }
}

#[test]
fn oversized_token_is_refused() {
    let token = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(assert_invalid(&secret_auth(), &token).contains("bytes"));
}

#[test]
fn missing_token_is_missing() {
    let auth = secret_auth();
    for token in [None, Some(""), Some("  ")] {
        let err = auth.authenticate(token).unwrap_err();
        assert!(matches!(err, AuthError::Missing), "{err:?}");
        assert_eq!(err.client_message(), "Authentication required");
    }
}

#[test]
fn alg_none_is_refused() {
    let claims = claims("u1");
    for header in [json!({ "alg": "none" }), json!({ "alg": "none", "typ": "JWT" }), json!({ "alg": "None" })] {
        let token = unsigned(&header, &claims);
        assert_invalid(&secret_auth(), &token);
        assert_invalid(&pem_auth("rsa_public.pem"), &token);
        assert_invalid(&jwks_auth("jwks_single.json"), &token);
    }
    // Even with a kid that exists.
    assert_invalid(&jwks_auth("jwks.json"), &unsigned(&json!({ "alg": "none", "kid": "rsa-1" }), &claims));
}

#[test]
fn hs256_token_with_empty_signature_is_refused() {
    let token = unsigned(&json!({ "alg": "HS256" }), &claims("u1"));
    assert_invalid(&secret_auth(), &token);
}

// --- issuer and audience ---

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let auth = Authenticator::from_config(&AuthConfig {
        secret: Some(SECRET.into()),
        issuer: Some("https://idp".into()),
        audience: Some("switchboard".into()),
        ..Default::default()
    })
    .unwrap();
    let exp = now() + 60;
    let good = json!({ "sub": "u1", "exp": exp, "iss": "https://idp", "aud": "switchboard" });
    assert_ok(&auth, &hs256(SECRET, None, &good), "u1");
    let list_aud = json!({ "sub": "u1", "exp": exp, "iss": "https://idp", "aud": ["other", "switchboard"] });
    assert_ok(&auth, &hs256(SECRET, None, &list_aud), "u1");

    let wrong_iss = json!({ "sub": "u1", "exp": exp, "iss": "https://evil", "aud": "switchboard" });
    assert!(assert_invalid(&auth, &hs256(SECRET, None, &wrong_iss)).contains("iss"));
    let wrong_aud = json!({ "sub": "u1", "exp": exp, "iss": "https://idp", "aud": "other" });
    assert!(assert_invalid(&auth, &hs256(SECRET, None, &wrong_aud)).contains("aud"));
    let no_iss = json!({ "sub": "u1", "exp": exp, "aud": "switchboard" });
    assert!(assert_invalid(&auth, &hs256(SECRET, None, &no_iss)).contains("iss"));
    let no_aud = json!({ "sub": "u1", "exp": exp, "iss": "https://idp" });
    assert!(assert_invalid(&auth, &hs256(SECRET, None, &no_aud)).contains("aud"));
}

#[test]
fn unconfigured_audience_ignores_aud_claim() {
    let token = hs256(SECRET, None, &json!({ "sub": "u1", "exp": now() + 60, "aud": "someone", "iss": "x" }));
    assert_ok(&secret_auth(), &token, "u1");
}

// --- RS256 / ES256 with a PEM file ---

#[test]
fn rs256_pem_ok() {
    let identity = assert_ok(&pem_auth("rsa_public.pem"), &rs256(None, &claims("r1")), "r1");
    assert_eq!(identity.role, "admin");
    // A kid in the token does not matter with a single key.
    assert_ok(&pem_auth("rsa_public.pem"), &rs256(Some("whatever"), &claims("r1")), "r1");
}

#[test]
fn rs256_pkcs1_pem_ok() {
    let token = sign(Algorithm::RS256, None, "rsa2_private.pem", &claims("r2"));
    assert_ok(&pem_auth("rsa2_public_pkcs1.pem"), &token, "r2");
}

#[test]
fn rs256_other_key_is_refused() {
    let token = sign(Algorithm::RS256, None, "rsa2_private.pem", &claims("r2"));
    assert!(assert_invalid(&pem_auth("rsa_public.pem"), &token).contains("bad signature"));
}

#[test]
fn es256_pem_ok() {
    assert_ok(&pem_auth("ec_public.pem"), &es256(None, &claims("e1")), "e1");
}

#[test]
fn rsa_key_accepts_only_rs256() {
    let auth = pem_auth("rsa_public.pem");
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        assert_invalid(&auth, &sign(alg, None, "rsa_private.pem", &claims("r1")));
    }
    assert_invalid(&auth, &es256(None, &claims("e1")));
}

#[test]
fn ec_key_accepts_only_es256() {
    let auth = pem_auth("ec_public.pem");
    assert_invalid(&auth, &rs256(None, &claims("r1")));
    assert_invalid(&auth, &hs256(&fixture_text("ec_public.pem"), None, &claims("x")));
}

#[test]
fn hs256_signed_with_public_pem_is_refused() {
    // The classic confusion attack: the public key, public by definition, used
    // as an HMAC secret.
    for file in ["rsa_public.pem", "ec_public.pem", "rsa2_public_pkcs1.pem"] {
        let token = hs256(&fixture_text(file), None, &claims("attacker"));
        let reason = assert_invalid(&pem_auth(file), &token);
        assert!(reason.contains("algorithm"), "{reason}");
    }
}

#[test]
fn rs256_against_secret_is_refused() {
    assert!(assert_invalid(&secret_auth(), &rs256(None, &claims("r1"))).contains("algorithm"));
    assert_invalid(&secret_auth(), &es256(None, &claims("e1")));
}

// --- JWKS ---

#[test]
fn jwks_chooses_key_by_kid() {
    let auth = jwks_auth("jwks.json");
    assert_ok(&auth, &rs256(Some("rsa-1"), &claims("r1")), "r1");
    assert_ok(&auth, &es256(Some("ec-1"), &claims("e1")), "e1");
}

#[test]
fn jwks_refuses_token_signed_by_another_key_under_a_known_kid() {
    let auth = jwks_auth("jwks.json");
    let token = sign(Algorithm::RS256, Some("rsa-1"), "rsa2_private.pem", &claims("r2"));
    assert!(assert_invalid(&auth, &token).contains("bad signature"));
    // A key embedded in the header (`jwk`) is the attacker's, and never trusted.
    let pem = fixture_text("rsa2_private.pem");
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.jwk = Some(jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap());
    let token = jsonwebtoken::encode(&header, &claims("r2"), &key).unwrap();
    assert!(assert_invalid(&auth, &token).contains("bad signature"));
    // The EC key under the RSA key's kid: the kid's key fixes RS256.
    assert!(assert_invalid(&auth, &es256(Some("rsa-1"), &claims("e1"))).contains("algorithm"));
}

#[test]
fn jwks_refuses_unknown_or_missing_kid() {
    let auth = jwks_auth("jwks.json");
    assert!(assert_invalid(&auth, &rs256(Some("nope"), &claims("r1"))).contains("unknown kid"));
    assert!(assert_invalid(&auth, &rs256(None, &claims("r1"))).contains("no kid"));
}

#[test]
fn jwks_never_uses_symmetric_or_encryption_keys() {
    let auth = jwks_auth("jwks.json");
    let k = "a shared secret that must never be accepted from a JWKS";
    assert!(assert_invalid(&auth, &hs256(k, Some("hmac-1"), &claims("h"))).contains("unknown kid"));
    let enc = sign(Algorithm::RS256, Some("enc-1"), "rsa2_private.pem", &claims("r2"));
    assert!(assert_invalid(&auth, &enc).contains("unknown kid"));
    assert!(!auth.describe().contains("hmac-1") && !auth.describe().contains("enc-1"), "{}", auth.describe());
}

#[test]
fn jwks_confusion_with_public_key_as_secret_is_refused() {
    let token = hs256(&fixture_text("rsa_public.pem"), Some("rsa-1"), &claims("attacker"));
    assert!(assert_invalid(&jwks_auth("jwks.json"), &token).contains("algorithm"));
}

#[test]
fn jwks_single_key_accepts_token_without_kid() {
    let auth = jwks_auth("jwks_single.json");
    let token = sign(Algorithm::RS256, None, "rsa2_private.pem", &claims("r2"));
    assert_ok(&auth, &token, "r2");
    assert_invalid(&auth, &rs256(None, &claims("r1")));
}

#[test]
fn expiry_is_enforced_for_public_keys_too() {
    let expired = json!({ "sub": "r1", "exp": now() - 60 });
    assert!(assert_invalid(&pem_auth("rsa_public.pem"), &rs256(None, &expired)).contains("expired"));
    assert!(assert_invalid(&jwks_auth("jwks.json"), &es256(Some("ec-1"), &expired)).contains("expired"));
}

// --- configuration ---

#[test]
fn no_setting_is_a_config_error_naming_the_secret() {
    let err = config_error(AuthConfig::default());
    assert_eq!(err.setting, "SWITCHBOARD_JWT_SECRET");
    assert_eq!(
        err.message,
        "no authentication configured: set SWITCHBOARD_JWT_SECRET, SWITCHBOARD_JWT_PUBLIC_KEY_FILE or SWITCHBOARD_JWKS_FILE"
    );
}

#[test]
fn two_key_settings_are_a_config_error_naming_both() {
    let err = config_error(AuthConfig {
        secret: Some(SECRET.into()),
        jwks_file: Some(fixture("jwks.json")),
        ..Default::default()
    });
    assert_eq!(err.setting, "SWITCHBOARD_JWT_SECRET");
    assert!(err.message.contains("found SWITCHBOARD_JWT_SECRET and SWITCHBOARD_JWKS_FILE"), "{err}");

    let err = config_error(AuthConfig {
        public_key_file: Some(fixture("rsa_public.pem")),
        jwks_file: Some(fixture("jwks.json")),
        ..Default::default()
    });
    assert!(err.message.contains("SWITCHBOARD_JWT_PUBLIC_KEY_FILE and SWITCHBOARD_JWKS_FILE"), "{err}");
}

#[test]
fn empty_secret_is_a_config_error() {
    let err = config_error(AuthConfig { secret: Some(String::new()), ..Default::default() });
    assert_eq!(err.setting, "SWITCHBOARD_JWT_SECRET");
}

#[test]
fn bad_public_key_files_are_config_errors() {
    let cases = [
        ("does-not-exist.pem", "cannot read"),
        ("jwks.json", "not a PEM file"),
        ("rsa_private.pem", "private key"),
        ("ec_p384_public.pem", "P-256"),
        ("rsa1024_public.pem", "1024 bits"),
    ];
    for (file, expected) in cases {
        let err = config_error(AuthConfig { public_key_file: Some(fixture(file)), ..Default::default() });
        assert_eq!(err.setting, "SWITCHBOARD_JWT_PUBLIC_KEY_FILE");
        assert!(err.message.contains(expected), "{file}: {err}");
        assert!(err.to_string().starts_with("SWITCHBOARD_JWT_PUBLIC_KEY_FILE: "), "{err}");
    }
}

#[test]
fn bad_jwks_files_are_config_errors() {
    for (file, expected) in [("does-not-exist.json", "cannot read"), ("rsa_public.pem", "not a JWKS")] {
        let err = config_error(AuthConfig { jwks_file: Some(fixture(file)), ..Default::default() });
        assert_eq!(err.setting, "SWITCHBOARD_JWKS_FILE");
        assert!(err.message.contains(expected), "{file}: {err}");
    }
}

// --- anonymous and demo ---

#[test]
fn anonymous_gives_fresh_identities_and_ignores_tokens() {
    let auth = Authenticator::anonymous();
    assert!(auth.is_anonymous());
    let a = auth.authenticate(None).unwrap();
    let b = auth.authenticate(Some("not even a token")).unwrap();
    assert_ne!(a.user_id, b.user_id);
    for id in [&a, &b] {
        let suffix = id.user_id.strip_prefix("anon-").unwrap();
        assert!(suffix.len() == 12 && suffix.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!((id.name.as_str(), id.role.as_str()), ("Anonymous", "user"));
    }
}

#[test]
fn allow_anonymous_without_keys_is_anonymous() {
    let auth = Authenticator::from_config(&AuthConfig { allow_anonymous: true, ..Default::default() }).unwrap();
    assert!(auth.is_anonymous());
    assert!(auth.authenticate(None).unwrap().user_id.starts_with("anon-"));
}

#[test]
fn keys_win_over_allow_anonymous() {
    let config = AuthConfig { secret: Some(SECRET.into()), allow_anonymous: true, ..Default::default() };
    assert!(Authenticator::is_configured(&config));
    let auth = Authenticator::from_config(&config).unwrap();
    assert!(!auth.is_anonymous());
    assert!(matches!(auth.authenticate(None), Err(AuthError::Missing)));
}

#[test]
fn demo_token_is_valid_for_a_day_and_only_for_its_own_run() {
    let (auth, token) = Authenticator::demo();
    let identity = assert_ok(&auth, &token, "demo");
    assert_eq!(identity, Identity { user_id: "demo".into(), name: "Demo User".into(), role: "admin".into() });

    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now() + DEMO_TOKEN_TTL_SECS) <= 5, "{claims}");

    let (other, _) = Authenticator::demo();
    assert_invalid(&other, &token);
}

#[test]
fn describe_names_no_secret() {
    assert_eq!(secret_auth().describe(), "HS256 tokens");
    assert!(!format!("{:?}", secret_auth()).contains(SECRET));
    assert_eq!(jwks_auth("jwks.json").describe(), "JWKS tokens, keys: rsa-1 RS256, ec-1 ES256");
}

#[test]
fn authenticator_is_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Authenticator>();
}
