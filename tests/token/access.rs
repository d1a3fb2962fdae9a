//! RFC 9068 access tokens and their validation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhirguard::token::{
    AccessTokenClaims, AccessTokenValidator, Algorithm, InMemoryKeySource, KeySource,
    RevocationList, SigningKey, TokenRejection, ValidatorConfig, sign_access_token,
};
use fhirguard::{ClientId, GrantId, PatientId};
use http::{HeaderMap, HeaderValue, header};
use ring::hmac;
use time::{Duration, OffsetDateTime};

use super::support::*;

fn claims(now: OffsetDateTime) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: vec![FHIR_BASE.into()],
        exp: (now + Duration::minutes(60)).unix_timestamp(),
        iat: now.unix_timestamp(),
        nbf: None,
        jti: "jti-1".into(),
        client_id: ClientId::new("app").unwrap(),
        scope: "patient/Observation.rs openid".into(),
        grant_id: Some(GrantId::new("g1").unwrap()),
        patient: Some(PatientId::new("355").unwrap()),
        encounter: None,
        fhir_user: Some("Patient/355".into()),
        family: Some("fam-1".into()),
        context: None,
    }
}

struct Fixture {
    keys: Arc<InMemoryKeySource>,
    grants: Arc<fhirguard::token::MemoryGrantStatus>,
    validator: AccessTokenValidator,
}

fn fixture() -> Fixture {
    let keys = key_source();
    let grants = grants_with([grant("g1", "app", "355", START + Duration::days(365))]);
    let validator = AccessTokenValidator::new(
        ValidatorConfig::new(ISSUER, FHIR_BASE),
        keys.clone(),
        grants.clone(),
    );
    Fixture {
        keys,
        grants,
        validator,
    }
}

fn sign(keys: &dyn KeySource, claims: &AccessTokenClaims) -> String {
    sign_access_token(keys, Algorithm::ES256, claims).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn valid_token_passes_and_carries_its_grant() {
    let f = fixture();
    let token = sign(&*f.keys, &claims(START));
    let ok = f
        .validator
        .validate(&token, START + Duration::minutes(5))
        .unwrap();
    assert_eq!(ok.claims.grant_id.as_ref().unwrap().as_str(), "g1");
    assert_eq!(ok.grant.unwrap().patient.as_str(), "355");
    // Through the Authorization header as well.
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    assert!(f.validator.validate_headers(&headers, START).is_ok());
}

#[test]
fn header_is_typed_at_jwt_with_kid() {
    let f = fixture();
    let token = sign(&*f.keys, &claims(START));
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], "es-1");
}

#[test]
fn expired_token_refused_after_leeway_only() {
    let f = fixture();
    let token = sign(&*f.keys, &claims(START));
    let exp = START + Duration::minutes(60);
    assert!(
        f.validator
            .validate(&token, exp + Duration::seconds(29))
            .is_ok()
    );
    assert_eq!(
        f.validator
            .validate(&token, exp + Duration::seconds(30))
            .unwrap_err(),
        TokenRejection::Expired
    );
}

#[test]
fn not_yet_valid_token_refused() {
    let f = fixture();
    let mut c = claims(START);
    c.nbf = Some((START + Duration::minutes(10)).unix_timestamp());
    let token = sign(&*f.keys, &c);
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::NotYetValid
    );
}

#[test]
fn tampered_payload_fails_signature() {
    let f = fixture();
    let token = sign(&*f.keys, &claims(START));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut c = claims(START);
    c.scope = "patient/*.cruds".into();
    parts[1] = b64(&serde_json::to_value(&c).unwrap());
    let forged = parts.join(".");
    assert_eq!(
        f.validator.validate(&forged, START).unwrap_err(),
        TokenRejection::BadSignature
    );
    // A flipped signature bit too.
    let mut sig = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap())
        .unwrap();
    sig[10] ^= 1;
    let head = token.rsplit_once('.').unwrap().0;
    let flipped = format!("{head}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        f.validator.validate(&flipped, START).unwrap_err(),
        TokenRejection::BadSignature
    );
}

#[test]
fn alg_none_refused() {
    let f = fixture();
    let header = serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": "es-1"});
    let token = format!(
        "{}.{}.",
        b64(&header),
        b64(&serde_json::to_value(claims(START)).unwrap())
    );
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::AlgorithmNotAllowed
    );
}

#[test]
fn hs256_signed_with_the_public_key_refused() {
    let f = fixture();
    // The classic confusion attack: HMAC keyed with the published public key.
    for kid in ["es-1", "rs-1"] {
        let jwk = f
            .keys
            .jwks(START)
            .keys
            .into_iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .unwrap();
        let secret = serde_json::to_vec(&jwk).unwrap();
        let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(&header),
            b64(&serde_json::to_value(claims(START)).unwrap())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(
            f.validator.validate(&token, START).unwrap_err(),
            TokenRejection::AlgorithmNotAllowed
        );
    }
}

#[test]
fn rs256_token_refused_when_only_es256_configured() {
    // The id_token key is RS256 and published; a token it signs must not pass as an access
    // token: the allow-list comes from configuration.
    let f = fixture();
    let token = sign_access_token(&*f.keys, Algorithm::RS256, &claims(START)).unwrap();
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::AlgorithmNotAllowed
    );
}

#[test]
fn es256_header_with_rsa_kid_refused() {
    // Header claims ES256 but names the RSA key: the key's type must fit the algorithm.
    let f = fixture();
    let rogue = SigningKey::generate_ec(Algorithm::ES256, "rs-1").unwrap();
    let token = rogue.sign_jwt("at+jwt", &claims(START)).unwrap();
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::BadSignature
    );
}

#[test]
fn wrong_typ_refused() {
    let f = fixture();
    let key = f.keys.signing_key(Algorithm::ES256).unwrap();
    for typ in ["JWT", "id_token+jwt"] {
        let token = key.sign_jwt(typ, &claims(START)).unwrap();
        assert_eq!(
            f.validator.validate(&token, START).unwrap_err(),
            TokenRejection::WrongType
        );
    }
}

#[test]
fn unknown_kid_and_foreign_key_refused() {
    let f = fixture();
    let stranger = SigningKey::generate_ec(Algorithm::ES256, "stranger").unwrap();
    let token = stranger.sign_jwt("at+jwt", &claims(START)).unwrap();
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::UnknownKey
    );
    // Same kid as ours, different key.
    let impostor = SigningKey::generate_ec(Algorithm::ES256, "es-1").unwrap();
    let token = impostor.sign_jwt("at+jwt", &claims(START)).unwrap();
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::BadSignature
    );
}

#[test]
fn wrong_issuer_and_audience_refused() {
    let f = fixture();
    let mut c = claims(START);
    c.iss = "https://evil.example/auth".into();
    assert_eq!(
        f.validator
            .validate(&sign(&*f.keys, &c), START)
            .unwrap_err(),
        TokenRejection::WrongIssuer
    );
    let mut c = claims(START);
    c.aud = vec!["https://other.example.org/fhir".into()];
    assert_eq!(
        f.validator
            .validate(&sign(&*f.keys, &c), START)
            .unwrap_err(),
        TokenRejection::WrongAudience
    );
}

#[test]
fn grant_revoked_expired_unknown_and_mismatched() {
    let f = fixture();
    let token = sign(&*f.keys, &claims(START));
    f.grants.revoke(&GrantId::new("g1").unwrap());
    assert_eq!(
        f.validator.validate(&token, START).unwrap_err(),
        TokenRejection::GrantRevoked
    );

    let f = fixture();
    f.grants
        .insert(grant("g1", "app", "355", START + Duration::minutes(5)));
    assert_eq!(
        f.validator
            .validate(&token, START + Duration::minutes(6))
            .unwrap_err(),
        TokenRejection::GrantExpired
    );

    let mut c = claims(START);
    c.grant_id = Some(GrantId::new("nope").unwrap());
    assert_eq!(
        f.validator
            .validate(&sign(&*f.keys, &c), START)
            .unwrap_err(),
        TokenRejection::GrantUnknown
    );

    let mut c = claims(START);
    c.client_id = ClientId::new("other-app").unwrap();
    assert_eq!(
        f.validator
            .validate(&sign(&*f.keys, &c), START)
            .unwrap_err(),
        TokenRejection::GrantMismatch
    );
}

#[test]
fn rotated_key_still_verifies_until_retention_ends() {
    let f = fixture();
    let old = sign(&*f.keys, &claims(START));
    let next =
        SigningKey::from_pem(Algorithm::ES256, "es-2", &key_pem("as_es256_next.pem")).unwrap();
    f.keys.rotate(next, START).unwrap();
    let new = sign(&*f.keys, &claims(START));
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(new.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "es-2");
    assert!(
        f.validator
            .validate(&old, START + Duration::minutes(30))
            .is_ok()
    );
    assert!(
        f.validator
            .validate(&new, START + Duration::minutes(30))
            .is_ok()
    );
    let kids: Vec<_> = f
        .keys
        .jwks(START)
        .keys
        .into_iter()
        .filter_map(|k| k.kid)
        .collect();
    assert!(kids.contains(&"es-1".to_owned()) && kids.contains(&"es-2".to_owned()));
    // After retention the old key is gone from JWKS and verification.
    let later = START + Duration::hours(2);
    assert!(
        !f.keys
            .jwks(later)
            .keys
            .iter()
            .any(|k| k.kid.as_deref() == Some("es-1"))
    );
}

struct RevokedFamily;
impl RevocationList for RevokedFamily {
    fn is_revoked(&self, _jti: &str, family: Option<&str>, _now: OffsetDateTime) -> bool {
        family == Some("fam-1")
    }
}

#[test]
fn revoked_family_refused() {
    let f = fixture();
    let validator = AccessTokenValidator::new(
        ValidatorConfig::new(ISSUER, FHIR_BASE),
        f.keys.clone(),
        f.grants.clone(),
    )
    .with_revocations(Arc::new(RevokedFamily));
    let token = sign(&*f.keys, &claims(START));
    assert_eq!(
        validator.validate(&token, START).unwrap_err(),
        TokenRejection::Revoked
    );
}

#[test]
fn www_authenticate_is_generic() {
    assert_eq!(
        TokenRejection::Missing.www_authenticate(),
        "Bearer realm=\"fhir\""
    );
    for reason in [
        TokenRejection::Expired,
        TokenRejection::BadSignature,
        TokenRejection::GrantRevoked,
    ] {
        let response = reason.to_response();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"fhir\", error=\"invalid_token\""
        );
    }
    let f = fixture();
    assert_eq!(
        f.validator
            .validate_headers(&HeaderMap::new(), START)
            .unwrap_err(),
        TokenRejection::Missing
    );
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
    // Another scheme sent no bearer token: the challenge carries no error code (RFC 6750
    // §3.1), as for no header at all.
    let other = f.validator.validate_headers(&headers, START).unwrap_err();
    assert_eq!(other, TokenRejection::OtherScheme);
    assert_eq!(other.www_authenticate(), "Bearer realm=\"fhir\"");
    // A Bearer header without exactly one token is a malformed request (RFC 6750 §3.1).
    for value in ["Bearer", "Bearer ", "bearer a b"] {
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        let bad = f.validator.validate_headers(&headers, START).unwrap_err();
        assert_eq!(bad, TokenRejection::NotBearer, "{value}");
        assert_eq!(
            bad.www_authenticate(),
            "Bearer realm=\"fhir\", error=\"invalid_request\"",
            "{value}"
        );
        assert_eq!(bad.to_response().status(), 400, "{value}");
    }
    // So is a second Authorization header, even if each alone would be fine.
    let mut two = HeaderMap::new();
    two.append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer a.b.c"),
    );
    two.append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer d.e.f"),
    );
    assert_eq!(
        f.validator.validate_headers(&two, START).unwrap_err(),
        TokenRejection::NotBearer
    );
}
