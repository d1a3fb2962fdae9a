//! The encoded password-hash parser on arbitrary strings: no panic, a parsed hash prints back
//! to text that parses to the same hash, and verification never panics on what parsed.
#![no_main]

use std::sync::OnceLock;

use fhirguard::auth::{HashParams, Password, PasswordHash, PasswordHasher, dangerous};
use libfuzzer_sys::fuzz_target;

fn hasher() -> &'static PasswordHasher {
    static HASHER: OnceLock<PasswordHasher> = OnceLock::new();
    HASHER.get_or_init(|| {
        dangerous::weak_hasher(HashParams { iterations: 1_000, ..HashParams::OWASP_2023 })
            .expect("hasher")
            // Hostile stored hashes may ask for millions of iterations: keep each run short.
            .with_max_iterations(2_000)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(hash) = PasswordHash::parse(text) else { return };
    let encoded = hash.encode();
    let again = PasswordHash::parse(&encoded).expect("a printed hash parses");
    assert_eq!(again, hash, "parse ∘ print is the identity");
    // Either refused (too many iterations) or a clean verdict: never a panic.
    let _ = hasher().verify(&Password::new("fuzz"), &hash);
});
