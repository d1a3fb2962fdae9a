//! Fuzzes the scope parser and the algebra on whatever parses.
//!
//! Checks, beyond "never panics": a parsed set prints to a string that parses back to the same
//! set and prints identically; normalising is idempotent and keeps the meaning; a scope covers
//! itself; an intersection is covered by both sides; negotiation never grants more than asked.

#![no_main]

use fhirguard::scope::{ParseOptions, ScopeSet, negotiate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // First half of the input is the request, second half (after a newline) a limit.
    let (a, b) = text.split_once('\n').unwrap_or((text, "patient/*.rs openid launch/patient"));
    for opts in [
        ParseOptions::default(),
        ParseOptions::default().experimental_filters(true).accept_v1(false),
    ] {
        let _ = ScopeSet::parse_lenient(a, &opts);
        let Ok(set) = ScopeSet::parse_with(a, &opts) else {
            continue;
        };
        let printed = set.to_string();
        let again = ScopeSet::parse_with(&printed, &opts).expect("printed set parses");
        assert_eq!(again, set);
        assert_eq!(again.to_string(), printed);

        let n = set.normalized();
        assert_eq!(n.normalized(), n);
        assert!(set.covers_all(&n) && n.covers_all(&set));
        for s in &set {
            assert!(s.covers(s));
        }

        // Pairwise intersection is O(n·m) scopes and minimising it quadratic in that; keep the
        // fuzzer on inputs of realistic size so it explores instead of grinding.
        if let Ok(limit) = ScopeSet::parse_with(b, &opts)
            && set.len() * limit.len() <= 1024
        {
            let i = set.intersect(&limit);
            assert!(set.covers_all(&i) && limit.covers_all(&i));
            let got = negotiate(&set, &limit, &limit);
            assert!(set.covers_all(&got.granted) && limit.covers_all(&got.granted));
        }
    }
});
