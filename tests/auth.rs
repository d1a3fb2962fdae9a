//! Authentication building blocks: hashing, policy, TOTP, recovery codes, step-up, throttling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use fhirguard::auth::dangerous::weak_hasher;
use fhirguard::auth::*;
use fhirguard::{CategoryId, ManualClock};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn fast(iterations: u32) -> PasswordHasher {
    weak_hasher(HashParams {
        iterations,
        ..HashParams::OWASP_2023
    })
    .unwrap()
}

// ------------------------------------------------------------------------------------------
// Password hashing
// ------------------------------------------------------------------------------------------

#[test]
fn hash_round_trip_through_the_encoded_form() {
    let hasher = fast(2_000);
    let pw = Password::new("tr0ub4dor & 3");
    let hash = hasher.hash(&pw).unwrap();
    let encoded = hash.encode();
    assert!(encoded.starts_with("$pbkdf2-sha256$i=2000$"), "{encoded}");
    let parsed: PasswordHash = encoded.parse().unwrap();
    assert_eq!(parsed, hash);
    assert_eq!(parsed.iterations(), 2_000);
    assert_eq!(parsed.salt_len(), 16);
    assert_eq!(
        hasher.verify_encoded(&pw, &encoded).unwrap(),
        PasswordCheck::Match
    );
    assert_eq!(
        hasher
            .verify_encoded(&Password::new("tr0ub4dor & 4"), &encoded)
            .unwrap(),
        PasswordCheck::Mismatch
    );
    // Two hashes of one password differ (fresh salt) but both verify.
    let again = hasher.hash(&pw).unwrap();
    assert_ne!(again.encode(), encoded);
    assert!(hasher.verify(&pw, &again).unwrap().is_match());
}

#[test]
fn unicode_equivalent_passwords_verify() {
    let hasher = fast(1_000);
    let hash = hasher.hash(&Password::new("Ma\u{f1}ana\u{FF01}")).unwrap();
    // Decomposed ñ and ASCII '!' (NFKC of the full-width one).
    assert!(
        hasher
            .verify(&Password::new("Man\u{303}ana!"), &hash)
            .unwrap()
            .is_match()
    );
}

#[test]
fn old_hashes_are_upgraded_on_next_login() {
    let pw = Password::new("a perfectly fine passphrase");
    // An old deployment used 100,000 iterations.
    let old = fast(100_000).hash(&pw).unwrap().encode();
    // Today's hasher: default parameters (600,000 iterations).
    let current = PasswordHasher::new(HashParams::default()).unwrap();
    let check = current.verify_encoded(&pw, &old).unwrap();
    assert_eq!(check, PasswordCheck::MatchNeedsRehash);
    // The login flow then re-hashes with the current parameters…
    let upgraded = current.hash(&pw).unwrap();
    assert_eq!(upgraded.iterations(), 600_000);
    assert!(!current.needs_rehash(&upgraded));
    // …and a wrong password never asks for a re-hash.
    assert_eq!(
        current
            .verify_encoded(&Password::new("wrong"), &old)
            .unwrap(),
        PasswordCheck::Mismatch
    );
}

#[test]
fn algorithm_change_triggers_rehash() {
    let pw = Password::new("another fine passphrase");
    let sha512 = weak_hasher(HashParams {
        algorithm: HashAlgorithm::Pbkdf2Sha512,
        iterations: 1_000,
        salt_len: 16,
    })
    .unwrap();
    let stored = sha512.hash(&pw).unwrap();
    assert!(stored.encode().starts_with("$pbkdf2-sha512$i=1000$"));
    assert_eq!(sha512.verify(&pw, &stored).unwrap(), PasswordCheck::Match);
    let sha256 = fast(1_000);
    assert_eq!(
        sha256.verify(&pw, &stored).unwrap(),
        PasswordCheck::MatchNeedsRehash
    );
}

#[test]
fn weak_parameters_are_refused_outside_dangerous() {
    assert_eq!(
        PasswordHasher::new(HashParams {
            iterations: 100_000,
            ..HashParams::OWASP_2023
        })
        .unwrap_err(),
        HashError::WeakParameters {
            algorithm: HashAlgorithm::Pbkdf2Sha256,
            minimum: 600_000
        }
    );
    assert!(
        PasswordHasher::new(HashParams {
            algorithm: HashAlgorithm::Pbkdf2Sha512,
            iterations: 210_000,
            salt_len: 16
        })
        .is_ok()
    );
    assert_eq!(
        PasswordHasher::new(HashParams {
            salt_len: 4,
            ..HashParams::OWASP_2023
        })
        .unwrap_err(),
        HashError::BadSaltLength
    );
}

#[test]
fn stored_hashes_cannot_demand_unbounded_work() {
    let hasher = fast(1_000); // verifies up to 4,000 iterations
    let pw = Password::new("pw");
    let heavy = fast(5_000).hash(&pw).unwrap();
    assert_eq!(
        hasher.verify(&pw, &heavy).unwrap_err(),
        HashError::IterationsAboveLimit {
            iterations: 5_000,
            limit: 4_000
        }
    );
    let hostile = "$pbkdf2-sha256$i=4000000000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert!(matches!(
        hasher.verify_encoded(&pw, hostile),
        Err(HashError::Parse(
            HashParseError::IterationsOutOfRange { .. }
        ))
    ));
    let raised = fast(1_000).with_max_iterations(10_000);
    assert!(raised.verify(&pw, &heavy).unwrap().is_match());
}

#[test]
fn unknown_user_is_a_mismatch_and_secrets_stay_out_of_debug() {
    let hasher = fast(1_000);
    let pw = Password::new("hunter2hunter2");
    assert_eq!(hasher.verify_unknown_user(&pw), PasswordCheck::Mismatch);
    let hash = hasher.hash(&pw).unwrap();
    let debug = format!("{pw:?} {hash:?} {hasher:?}");
    assert!(!debug.contains("hunter2"));
    assert!(!debug.contains(&hash.encode()[25..]));
    assert!(debug.contains("<redacted>"));
}

// ------------------------------------------------------------------------------------------
// Password policy (NIST SP 800-63B)
// ------------------------------------------------------------------------------------------

#[test]
fn policy_accept_refuse_table() {
    use RefusalReason::*;
    let policy = PasswordPolicy::default();
    let user = PasswordContext::user(["maria.lopez@example.org", "Sunrise Health"]);
    let staff = PasswordContext::privileged(["dr.chen"]);
    let long65 = "x1y2".repeat(16) + "z";
    let cases: Vec<(&str, &PasswordContext<'_>, Vec<RefusalReason>)> = vec![
        // Accepted: no composition rules, spaces and any Unicode welcome.
        ("correct horse battery staple", &user, vec![]),
        ("plainlowercasewords", &user, vec![]),
        ("mañana está lloviendo", &user, vec![]),
        ("日本語のパスワードです", &user, vec![]),
        ("8charsok", &user, vec![]),
        (&long65[..64], &user, vec![]),
        ("a staff passphrase!", &staff, vec![]),
        // Length.
        (
            "short",
            &user,
            vec![TooShort {
                minimum: 8,
                length: 5,
            }],
        ),
        (
            "7chars!",
            &user,
            vec![TooShort {
                minimum: 8,
                length: 7,
            }],
        ),
        (
            "fourteen chars",
            &staff,
            vec![TooShort {
                minimum: 15,
                length: 14,
            }],
        ),
        (&long65, &user, vec![TooLong { maximum: 64 }]),
        // Common and breached passwords, case-insensitively.
        ("password", &user, vec![Common]),
        ("Password1", &user, vec![Common]),
        ("iloveyou", &user, vec![Common]),
        ("qwertyuiop", &user, vec![Common]),
        ("trustno1", &user, vec![Common]),
        ("PASSWORD", &user, vec![Common]),
        // Context-specific words.
        ("maria.lopez2024!", &user, vec![ContainsIdentifier]),
        ("my sunrise health pw", &user, vec![ContainsIdentifier]),
        ("dr.chen is the best 1", &staff, vec![ContainsIdentifier]),
        // Repetition and sequences.
        ("zzzzzzzzzzzz", &user, vec![Repetitive]),
        ("xqzxqzxqzxqz", &user, vec![Repetitive]),
        ("3456789:;<=>", &user, vec![Sequential]),
        ("tuvwxyz{|}", &user, vec![Sequential]),
        // Control characters.
        ("tab\tinside here", &user, vec![ControlCharacter]),
        // Several reasons at once, length first.
        (
            "aaaa",
            &user,
            vec![
                TooShort {
                    minimum: 8,
                    length: 4,
                },
                Repetitive,
            ],
        ),
        (
            "password",
            &staff,
            vec![
                TooShort {
                    minimum: 15,
                    length: 8,
                },
                Common,
            ],
        ),
    ];
    for (typed, ctx, expected) in cases {
        let got = policy.check(&Password::new(typed), ctx);
        if expected.is_empty() {
            assert!(got.is_ok(), "{typed:?} should be accepted, got {got:?}");
        } else {
            assert_eq!(got.unwrap_err().reasons, expected, "{typed:?}");
        }
    }
}

#[test]
fn policy_counts_code_points_after_nfkc() {
    let policy = PasswordPolicy::default();
    let ctx = PasswordContext::default();
    // Eight code points after composition ("é" typed as e + combining accent counts once).
    let typed = "cafe\u{301}cafe";
    assert_eq!(Password::new(typed).char_count(), 8);
    assert!(policy.check(&Password::new(typed), &ctx).is_ok());
    // The ligature "ﬁ" expands to "fi" under NFKC.
    assert_eq!(Password::new("\u{FB01}").expose_secret(), "fi");
    let refused = policy.check(&Password::new("passwor\u{FF44}"), &ctx); // full-width d
    assert_eq!(refused.unwrap_err().reasons, [RefusalReason::Common]);
}

#[test]
fn policy_refusal_message_names_reasons_without_the_password() {
    let err = PasswordPolicy::default()
        .check(&Password::new("letmein1"), &PasswordContext::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("commonly used"), "{text}");
    assert!(!text.contains("letmein"));
}

// ------------------------------------------------------------------------------------------
// TOTP (RFC 6238) and recovery codes
// ------------------------------------------------------------------------------------------

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

#[test]
fn rfc_6238_appendix_b_vectors() {
    let sha1 = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
    let sha256 = TotpSecret::from_bytes(b"12345678901234567890123456789012").unwrap();
    let sha512 =
        TotpSecret::from_bytes(b"1234567890123456789012345678901234567890123456789012345678901234")
            .unwrap();
    let table: [(i64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];
    for (time, c1, c256, c512) in table {
        for (secret, algorithm, expected) in [
            (&sha1, TotpAlgorithm::Sha1, c1),
            (&sha256, TotpAlgorithm::Sha256, c256),
            (&sha512, TotpAlgorithm::Sha512, c512),
        ] {
            let params = TotpParams {
                algorithm,
                digits: 8,
                period: 30,
                skew: 1,
            };
            assert_eq!(
                code_at(secret, &params, at(time)).unwrap(),
                expected,
                "T={time} {algorithm:?}"
            );
            // And the verifier accepts it.
            let mut cred = TotpCredential::new(secret.clone(), params, None).unwrap();
            assert!(cred.verify(expected, at(time)).is_ok());
        }
    }
}

#[test]
fn a_code_works_once_and_the_window_is_small() {
    let secret = TotpSecret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
    let params = TotpParams::default();
    let mut cred = TotpCredential::new(secret.clone(), params, None).unwrap();
    let now = datetime!(2026-11-24 12:00:10 UTC);
    let code = code_at(&secret, &params, now).unwrap();
    let step = cred.verify(&code, now).unwrap();
    assert_eq!(cred.last_used_step(), Some(step));
    // Same code again, even ten seconds later and inside the window: refused.
    assert_eq!(
        cred.verify(&code, now + Duration::seconds(10)),
        Err(TotpError::Replayed)
    );
    // The previous step's code is older than the last used one: refused as a replay too.
    let previous = code_at(&secret, &params, now - Duration::seconds(30)).unwrap();
    if previous != code {
        assert_eq!(cred.verify(&previous, now), Err(TotpError::Replayed));
    }
    // The next step's code works once.
    let next_time = now + Duration::seconds(30);
    let next = code_at(&secret, &params, next_time).unwrap();
    assert!(cred.verify(&next, next_time).is_ok());
    assert_eq!(cred.verify(&next, next_time), Err(TotpError::Replayed));
    // A code from two minutes ago is outside the ±1 step window.
    let mut fresh = TotpCredential::new(secret.clone(), params, None).unwrap();
    let stale = code_at(&secret, &params, now - Duration::minutes(2)).unwrap();
    if stale != code_at(&secret, &params, now).unwrap() {
        assert_eq!(fresh.verify(&stale, now), Err(TotpError::Mismatch));
    }
    // A code one step ahead (phone clock a little fast) is accepted.
    let ahead = code_at(&secret, &params, now + Duration::seconds(30)).unwrap();
    assert!(fresh.verify(&ahead, now).is_ok());
    // Malformed input is told apart from a wrong code.
    assert_eq!(
        fresh.verify("12345", now),
        Err(TotpError::Malformed { digits: 6 })
    );
    assert_eq!(
        fresh.verify("12a456", now),
        Err(TotpError::Malformed { digits: 6 })
    );
}

#[test]
fn enrolment_gives_a_working_otpauth_uri() {
    let enrol = TotpEnrollment::start("Sunrise Health", "maria@example.org", TotpParams::default())
        .unwrap();
    let uri = enrol.uri.as_str();
    assert!(
        uri.starts_with("otpauth://totp/Sunrise%20Health:maria%40example.org?secret="),
        "{uri}"
    );
    assert!(uri.contains("&issuer=Sunrise%20Health&algorithm=SHA1&digits=6&period=30"));
    let secret_b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(secret_b32.len(), 32); // 20 bytes = 160 bits
    // An app that scanned the URI produces codes the credential accepts (confirmation step).
    let app_secret = TotpSecret::from_base32(secret_b32).unwrap();
    let now = datetime!(2026-11-24 23:00 UTC);
    let code = code_at(&app_secret, &TotpParams::default(), now).unwrap();
    let mut cred = enrol.credential;
    assert!(cred.verify(&code, now).is_ok());
    // Debug never shows the secret.
    let debug = format!("{cred:?}");
    assert!(!debug.contains(secret_b32));
    assert_eq!(
        TotpEnrollment::start("Bad:Issuer", "x", TotpParams::default()).unwrap_err(),
        TotpError::BadLabel
    );
    // Two enrolments never share a secret.
    let other = TotpEnrollment::start("Sunrise Health", "maria@example.org", TotpParams::default())
        .unwrap();
    assert_ne!(other.credential.secret().to_base32().as_str(), secret_b32);
}

#[test]
fn recovery_codes_are_hashed_and_single_use() {
    let (codes, mut set) = RecoveryCodeSet::generate(10).unwrap();
    assert_eq!(codes.len(), 10);
    let shown: Vec<String> = codes.iter().map(str::to_owned).collect();
    for code in &shown {
        assert_eq!(code.len(), 29, "{code}"); // 24 characters in 6 groups
    }
    let stored = set.encode();
    // The stored form holds no code, in any spelling.
    for code in &shown {
        assert!(!stored.contains(&code.replace('-', "")));
    }
    let mut reloaded: RecoveryCodeSet = stored.parse().unwrap();
    assert_eq!(reloaded, set);
    // A code works once, typed in upper case without hyphens even.
    let typed = shown[3].replace('-', " ").to_uppercase();
    assert_eq!(reloaded.redeem(&typed), Ok(9));
    assert_eq!(reloaded.redeem(&shown[3]), Err(RecoveryError::Mismatch));
    assert_eq!(reloaded.remaining(), 9);
    // The used slot survives a store round trip.
    let again: RecoveryCodeSet = reloaded.encode().parse().unwrap();
    assert_eq!(again.remaining(), 9);
    assert_eq!(set.redeem("not-a-code"), Err(RecoveryError::Malformed));
    assert!(!format!("{codes:?} {set:?}").contains(&shown[0]));
}

// ------------------------------------------------------------------------------------------
// Risk-based step-up
// ------------------------------------------------------------------------------------------

fn cats(ids: &[&str]) -> Vec<CategoryId> {
    ids.iter().map(|c| CategoryId::new(*c).unwrap()).collect()
}

#[test]
fn step_up_decision_table() {
    use Prompt::*;
    use UserType::*;
    let policy = DefaultRiskPolicy::default();
    let none = RiskContext::default();
    let dev = RiskContext {
        new_device: true,
        ..none
    };
    let addr = RiskContext {
        new_address: true,
        ..none
    };
    let both = RiskContext {
        new_device: true,
        new_address: true,
        ..none
    };
    let low = cats(&["vital-signs", "smoking-status", "demographics"]);
    let moderate = cats(&["laboratory", "medications", "vital-signs"]);
    let high = cats(&["clinical-notes"]);
    let unknown = cats(&["some-new-category"]);
    // (user, categories, context, required level, prompt with no session)
    let table: Vec<(UserType, &[CategoryId], RiskContext, Aal)> = vec![
        (Patient, &low, none, Aal::Aal1),
        (Patient, &low, dev, Aal::Aal1),
        (Patient, &low, addr, Aal::Aal1),
        (Patient, &low, both, Aal::Aal2),
        (Patient, &moderate, none, Aal::Aal1),
        (Patient, &moderate, dev, Aal::Aal2),
        (Patient, &moderate, addr, Aal::Aal2),
        (Patient, &high, none, Aal::Aal2),
        (Patient, &unknown, none, Aal::Aal2),
        (Patient, &[], none, Aal::Aal1),
        (Representative, &low, none, Aal::Aal1),
        (Representative, &low, dev, Aal::Aal1),
        (Representative, &moderate, none, Aal::Aal2),
        (Representative, &high, none, Aal::Aal2),
        (Clinician, &low, none, Aal::Aal2),
        (Clinician, &moderate, none, Aal::Aal2),
        (Administrator, &[], none, Aal::Aal2),
    ];
    for (user_type, categories, context, required) in table {
        let out = policy.assess(&RiskRequest {
            user_type,
            categories,
            context,
        });
        assert_eq!(
            out.required, required,
            "{user_type:?} {categories:?} {context:?}"
        );
        let expected_prompt = match required {
            Aal::Aal1 => Password,
            _ => PasswordAndSecondFactor,
        };
        assert_eq!(out.prompt, expected_prompt);
        assert!(out.reasons.contains(&RiskReason::NoSession));
    }
}

#[test]
fn step_up_uses_the_current_session() {
    use Prompt::*;
    let policy = DefaultRiskPolicy::default();
    let moderate = cats(&["laboratory"]);
    let high = cats(&["clinical-notes"]);
    let session = |achieved, ago| RiskContext {
        session: Some(Session {
            achieved,
            authenticated_ago: ago,
        }),
        ..RiskContext::default()
    };
    let ask = |categories: &[CategoryId], context| {
        policy
            .assess(&RiskRequest {
                user_type: UserType::Patient,
                categories,
                context,
            })
            .prompt
    };
    // An AAL1 session of one hour suffices for AAL1 data…
    assert_eq!(
        ask(&moderate, session(Aal::Aal1, Duration::hours(1))),
        Nothing
    );
    // …but clinical notes need the second factor added, not a new password.
    assert_eq!(
        ask(&high, session(Aal::Aal1, Duration::hours(1))),
        SecondFactor
    );
    // An AAL2 session covers them, for 12 hours.
    assert_eq!(ask(&high, session(Aal::Aal2, Duration::hours(11))), Nothing);
    assert_eq!(
        ask(&high, session(Aal::Aal2, Duration::hours(13))),
        PasswordAndSecondFactor
    );
    // AAL1 sessions last 30 days; after that, a password again.
    assert_eq!(
        ask(&moderate, session(Aal::Aal1, Duration::days(29))),
        Nothing
    );
    assert_eq!(
        ask(&moderate, session(Aal::Aal1, Duration::days(31))),
        Password
    );
    // A 2-day-old AAL1 session is too old to be stepped up: full AAL2 login.
    assert_eq!(
        ask(&high, session(Aal::Aal1, Duration::days(2))),
        PasswordAndSecondFactor
    );
}

#[test]
fn hosts_change_the_sensitivity_table() {
    let mut table = SensitivityTable::default();
    assert_eq!(
        table.get(&CategoryId::new("smoking-status").unwrap()),
        Sensitivity::Low
    );
    table.set(
        CategoryId::new("smoking-status").unwrap(),
        Sensitivity::High,
    );
    table.set_unknown(Sensitivity::Moderate);
    let policy = DefaultRiskPolicy::with_sensitivities(table);
    let out = policy.assess(&RiskRequest {
        user_type: UserType::Patient,
        categories: &cats(&["smoking-status"]),
        context: RiskContext::default(),
    });
    assert_eq!(out.required, Aal::Aal2);
    assert!(
        out.reasons
            .contains(&RiskReason::Sensitivity(Sensitivity::High))
    );
    let out = policy.assess(&RiskRequest {
        user_type: UserType::Patient,
        categories: &cats(&["brand-new"]),
        context: RiskContext::default(),
    });
    assert_eq!(out.required, Aal::Aal1);
    // The table is serde data.
    let json = serde_json::to_string(&SensitivityTable::default()).unwrap();
    let back: SensitivityTable = serde_json::from_str(&json).unwrap();
    assert_eq!(back, SensitivityTable::default());
}

#[test]
fn acr_and_amr_claims() {
    let pwd = id_token_claims(&[AuthMethod::Password]).unwrap();
    assert_eq!(pwd.acr, "http://idmanagement.gov/ns/assurance/aal/1");
    assert_eq!(pwd.amr, ["pwd"]);
    let mfa = id_token_claims(&[AuthMethod::Password, AuthMethod::Totp]).unwrap();
    assert_eq!(mfa.acr, ACR_AAL2);
    assert_eq!(mfa.amr, ["pwd", "otp", "mfa"]);
    let recovery = id_token_claims(&[AuthMethod::Password, AuthMethod::RecoveryCode]).unwrap();
    assert_eq!(recovery.acr, ACR_AAL2);
    assert_eq!(recovery.amr, ["pwd", "mfa"]);
    assert_eq!(id_token_claims(&[]), None);
    assert_eq!(Aal::from_acr(ACR_AAL2), Some(Aal::Aal2));
    assert_eq!(Aal::Aal2.acr(), mfa.acr);
}

// ------------------------------------------------------------------------------------------
// Throttling
// ------------------------------------------------------------------------------------------

#[test]
fn throttling_timeline_with_a_moved_clock() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-24 09:00 UTC)));
    let throttle = LoginThrottle::in_memory(clock.clone());
    let attacker = LoginAttempt {
        account: "maria@example.org",
        source: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        known_device: false,
    };
    // Five free failures: no delay.
    for n in 1..=5 {
        assert!(throttle.check(&attacker).is_ok());
        let event = throttle.record_failure(&attacker, FailureKind::WrongPassword);
        assert_eq!(event.account_failures, n);
        assert_eq!(event.retry_after, Duration::ZERO);
        assert_eq!(
            event.kind,
            SecurityEventKind::AuthenticationFailed(FailureKind::WrongPassword)
        );
    }
    // Then 1 s, 2 s, 4 s, … doubling.
    let mut expected = Duration::seconds(1);
    for _ in 6..=12 {
        assert!(throttle.check(&attacker).is_ok());
        let event = throttle.record_failure(&attacker, FailureKind::WrongPassword);
        assert_eq!(event.retry_after, expected);
        // Attempting during the back-off is refused unchecked, with its own event…
        let refused = throttle.check(&attacker).unwrap_err();
        assert_eq!(refused.scope, ThrottleScope::Account);
        assert_eq!(refused.retry_after, expected);
        assert_eq!(
            refused.event.kind,
            SecurityEventKind::AttemptThrottled(ThrottleScope::Account)
        );
        // …and does not lengthen it.
        clock.advance(expected - Duration::milliseconds(1));
        assert!(throttle.check(&attacker).is_err());
        clock.advance(Duration::milliseconds(1));
        assert!(throttle.check(&attacker).is_ok());
        expected *= 2;
    }
    // The delay is capped at 15 minutes, however long the attack goes on: no permanent lock.
    for _ in 0..40 {
        throttle.record_failure(&attacker, FailureKind::WrongPassword);
        clock.advance(Duration::minutes(15));
    }
    let event = throttle.record_failure(&attacker, FailureKind::UnknownAccount);
    assert_eq!(event.account_failures, 53);
    assert_eq!(event.retry_after, Duration::minutes(15));
    clock.advance(Duration::minutes(15));
    assert!(throttle.check(&attacker).is_ok());

    // Meanwhile the patient, on her own phone with a device cookie, is not locked out
    // (and her phone is on another network, so the attacker's address back-off doesn't touch her).
    let patient = LoginAttempt {
        account: "maria@example.org",
        source: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)),
        known_device: true,
    };
    throttle.record_failure(&attacker, FailureKind::WrongPassword);
    assert!(throttle.check(&attacker).is_err());
    assert!(throttle.check(&patient).is_ok());
    // Her success clears the account counter and is itself reported.
    let success = throttle.record_success(&patient).unwrap();
    assert_eq!(success.kind, SecurityEventKind::SucceededAfterFailures);
    assert_eq!(success.account_failures, 54);
    assert!(throttle.record_success(&patient).is_none());

    // A quiet day forgets everything.
    let other = LoginAttempt {
        account: "someone-else",
        ..attacker
    };
    clock.advance(Duration::hours(25));
    let event = throttle.record_failure(&other, FailureKind::WrongPassword);
    assert_eq!((event.account_failures, event.source_failures), (1, 1));
}

#[test]
fn source_back_off_spans_accounts_and_ipv6_networks() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-24 09:00 UTC)));
    let throttle = LoginThrottle::in_memory(clock.clone());
    // A password spray: one guess against each of many accounts from one /64.
    for i in 0..20u16 {
        let name = format!("user{i}");
        let attempt = LoginAttempt {
            account: &name,
            source: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1)),
            known_device: false,
        };
        assert!(throttle.check(&attempt).is_ok());
        let event = throttle.record_failure(&attempt, FailureKind::UnknownAccount);
        assert_eq!(event.source_failures, u32::from(i) + 1);
        assert_eq!(event.account_failures, 1);
    }
    let next = LoginAttempt {
        account: "user99",
        source: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xabcd, 0, 0, 9)),
        known_device: true,
    };
    let event = throttle.record_failure(&next, FailureKind::WrongPassword);
    assert_eq!(event.source_failures, 21);
    assert_eq!(event.retry_after, Duration::seconds(1));
    // Same /64, different host part and a known device: the source back-off still applies.
    let refused = throttle.check(&next).unwrap_err();
    assert_eq!(refused.scope, ThrottleScope::Source);
    // Another /64 is unaffected.
    let neighbour = LoginAttempt {
        source: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1)),
        ..next
    };
    assert!(throttle.check(&neighbour).is_ok());
    // Source delays cap at 10 minutes.
    for _ in 0..30 {
        throttle.record_failure(&next, FailureKind::WrongPassword);
    }
    assert_eq!(
        throttle.check(&next).unwrap_err().retry_after,
        Duration::minutes(10)
    );
    // Events serialise for the host's audit pipeline, with no secret in them.
    let json = serde_json::to_value(&refused.event).unwrap();
    assert_eq!(json["account"], "user99");
    assert_eq!(json["at"], "2026-11-24T09:00:00Z");
}

#[test]
fn memory_store_is_bounded() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-24 09:00 UTC)));
    let throttle = LoginThrottle::new(
        ThrottleConfig::default(),
        clock.clone(),
        MemoryThrottleStore::new(50),
    );
    for i in 0..200u32 {
        let name = format!("spray{i}");
        clock.advance(Duration::seconds(1));
        throttle.record_failure(
            &LoginAttempt {
                account: &name,
                source: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                known_device: false,
            },
            FailureKind::UnknownAccount,
        );
    }
    assert_eq!(throttle.store().len(), 50);
}
