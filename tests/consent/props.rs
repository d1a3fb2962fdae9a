//! Property tests of the state machine: any sequence of operations keeps the invariants, and
//! every grant it produces survives the FHIR round trip.

use std::collections::BTreeSet;

use fhirguard::CategoryRegistry;
use fhirguard::consent::{Approver, Grant, GrantState, GrantStateKind, one_year_after};
use fhirguard::{CategoryId, GrantId};
use proptest::prelude::*;
use time::Duration;

use super::suite::{T0, request};

#[derive(Debug, Clone)]
enum Op {
    Revoke(i64),
    Narrow(i64, u8),
    Expire(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0i64..400).prop_map(Op::Revoke),
        ((0i64..400), any::<u8>()).prop_map(|(d, m)| Op::Narrow(d, m)),
        (0i64..400).prop_map(Op::Expire),
    ]
}

const CATS: [&str; 5] = [
    "vital-signs",
    "laboratory",
    "problems",
    "medications",
    "allergies",
];

proptest! {
    #[test]
    fn operations_keep_the_invariants(end_days in proptest::option::of(1i64..400), ops in proptest::collection::vec(op(), 0..12)) {
        let mut r = request("355", "app-a", T0);
        r.categories = CATS.iter().map(|c| CategoryId::new(*c).unwrap()).collect();
        if let Some(d) = end_days {
            r = r.with_chosen_end(T0 + Duration::days(d));
        }
        let ends_at = match r.validate(T0) {
            Ok(e) => e,
            Err(_) => {
                // Only an end beyond a year is refused here.
                prop_assert!(T0 + Duration::days(end_days.unwrap()) > one_year_after(T0));
                return Ok(());
            }
        };
        prop_assert!(ends_at <= one_year_after(T0));
        let mut g = Grant::new(GrantId::new("g1").unwrap(), r, ends_at);
        let mut day = 0;
        let mut final_state: Option<GrantState> = None;
        for op in ops {
            let before = g.clone();
            let result = match op {
                Op::Revoke(d) => { day += d; g.apply_revoke(Approver::Patient, "p", T0 + Duration::days(day)) }
                Op::Narrow(d, mask) => {
                    day += d;
                    let remove: BTreeSet<CategoryId> = g.categories.iter().enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0).map(|(_, c)| c.clone()).collect();
                    g.apply_narrow(&remove, T0 + Duration::days(day))
                }
                Op::Expire(d) => { day += d; g.apply_expire(T0 + Duration::days(day)) }
            };
            if result.is_err() {
                prop_assert_eq!(&g, &before, "a refused operation changes nothing");
            }
            if let Some(f) = &final_state {
                prop_assert_eq!(&g.state, f, "revoked and expired are final");
            } else if g.state.kind() != GrantStateKind::Active {
                final_state = Some(g.state.clone());
            }
            prop_assert!(!g.categories.is_empty());
            prop_assert!(g.categories.is_subset(&g.request.categories));
            let mut replay = g.request.categories.clone();
            for n in &g.narrowings {
                replay.retain(|c| !n.removed.contains(c));
            }
            prop_assert_eq!(&replay, &g.categories);
            let now = T0 + Duration::days(day);
            prop_assert_eq!(g.is_active_at(now), g.state == GrantState::Active && now < g.ends_at);
        }
        let registry = CategoryRegistry::default_registry();
        prop_assert_eq!(Grant::from_fhir_consent(&g.to_fhir_consent(&registry)).unwrap(), g);
    }
}
