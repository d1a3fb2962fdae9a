//! A revoke racing a refresh-token rotation never leaves a usable token.

use std::sync::{Arc, Barrier};

use fhirguard::consent::{Approver, ConsentStore, GrantStatusSource};
use fhirguard::token::{AuthorizationServer, TokenStore};

use super::cutoff::{code, exchange, refresh, server};
use super::suite::{T0, request};

/// `rounds` races of revoke (through `revoker`) against refresh (through `server`); after each
/// settles (`settle` covers cross-node propagation), no token obtained may work.
fn race(
    revoker: Arc<dyn ConsentStore>,
    server: Arc<AuthorizationServer>,
    issuer_store: Arc<dyn ConsentStore>,
    rounds: usize,
    settle: std::time::Duration,
) -> (usize, usize) {
    let (mut refresh_won, mut revoke_won) = (0, 0);
    for i in 0..rounds {
        let now = T0 + time::Duration::seconds(i64::try_from(i).unwrap());
        let grant = issuer_store
            .approve(request("355", "app-a", now), now)
            .unwrap();
        assert!(issuer_store.grant_status(&grant.id, now).active().is_some());
        let first = exchange(&server, &code(&server, &grant, now), now).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let revoking = {
            let (revoker, barrier, id) =
                (Arc::clone(&revoker), Arc::clone(&barrier), grant.id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                revoker.revoke(&id, Approver::Patient, "race", now).unwrap();
            })
        };
        let refreshing = {
            let (server, barrier) = (Arc::clone(&server), Arc::clone(&barrier));
            let token = first.refresh_token.clone().unwrap();
            std::thread::spawn(move || {
                barrier.wait();
                refresh(&server, &token, now).ok()
            })
        };
        revoking.join().unwrap();
        let rotated = refreshing.join().unwrap();
        std::thread::sleep(settle);
        let mut access = vec![first.access_token.clone()];
        let mut refresh_tokens = vec![first.refresh_token.clone().unwrap()];
        match rotated {
            Some(r) => {
                refresh_won += 1;
                access.push(r.access_token);
                refresh_tokens.extend(r.refresh_token);
            }
            None => revoke_won += 1,
        }
        for token in &access {
            assert!(
                server.validator().validate(token, now).is_err(),
                "round {i}: an access token survived the revocation"
            );
        }
        for token in &refresh_tokens {
            assert!(
                refresh(&server, token, now).is_err(),
                "round {i}: a refresh token survived the revocation"
            );
        }
    }
    (refresh_won, revoke_won)
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_revoke_racing_refresh_leaves_no_usable_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(fhirguard::consent::SqliteStore::open(dir.path().join("r.db")).unwrap());
    let tokens: Arc<dyn TokenStore> = store.clone();
    let grants: Arc<dyn GrantStatusSource> = store.clone();
    let server = Arc::new(server(tokens, grants));
    let (a, b) = race(store.clone(), server, store, 40, std::time::Duration::ZERO);
    println!("sqlite race: refresh first {a}, revoke first {b}");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_revoke_on_one_node_racing_refresh_on_another_leaves_no_usable_token() {
    let schema = super::pg::fresh_schema();
    let node_a = Arc::new(super::pg::store(&schema));
    let node_b = Arc::new(super::pg::store(&schema));
    let tokens: Arc<dyn TokenStore> = node_b.clone();
    let grants: Arc<dyn GrantStatusSource> = node_b.clone();
    let server = Arc::new(server(tokens, grants));
    // Revocations reach node B within one second; settle a little longer than that bound.
    let (a, b) = race(
        node_a,
        server,
        node_b,
        10,
        std::time::Duration::from_millis(1100),
    );
    println!("postgres two-node race: refresh first {a}, revoke first {b}");
}
