use fhirguard::consent::{
    Approver, ConsentStore, GrantState, GrantStatus, GrantStatusSource, SqliteStore,
};
use fhirguard::token::{RefreshLookup, RevocationList, TokenHash, TokenStore};
use time::Duration;

use super::suite::{T0, consent_suite, request};
use super::token_suite::{family, token_suite};

#[test]
fn sqlite_in_memory_passes_the_suite() {
    consent_suite(&SqliteStore::open_in_memory().unwrap());
}

#[test]
fn sqlite_file_passes_both_suites() {
    let dir = tempfile::tempdir().unwrap();
    consent_suite(&SqliteStore::open(dir.path().join("a.db")).unwrap());
    token_suite(&SqliteStore::open(dir.path().join("b.db")).unwrap());
}

#[cfg(unix)]
#[test]
fn sqlite_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.db");
    let store = SqliteStore::open(&path).unwrap();
    store.approve(request("355", "app-a", T0), T0).unwrap();
    for file in ["consent.db", "consent.db-wal", "consent.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn sqlite_reopen_keeps_everything_and_warms_the_caches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.db");
    let (kept, revoked) = {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        let kept = store.approve(request("355", "app-a", T0), T0).unwrap();
        let revoked = store.approve(request("355", "app-b", T0), T0).unwrap();
        store
            .put_refresh(
                TokenHash::of("r-1"),
                family(&kept.id, "fam-1", T0 + Duration::days(30)),
            )
            .unwrap();
        store.revoke_family("fam-x").unwrap();
        store
            .revoke_access_token("jti-1", T0 + Duration::hours(1))
            .unwrap();
        let revoked = store
            .revoke(
                &revoked.id,
                Approver::Patient,
                "no",
                T0 + Duration::hours(1),
            )
            .unwrap();
        (kept, revoked)
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 1);
    assert_eq!(store.grant(&kept.id).unwrap().unwrap(), kept);
    assert_eq!(store.grant(&revoked.id).unwrap().unwrap(), revoked);
    assert!(matches!(
        store.grant_status(&kept.id, T0),
        GrantStatus::Active(_)
    ));
    assert_eq!(store.grant_status(&revoked.id, T0), GrantStatus::Revoked);
    assert!(matches!(revoked.state, GrantState::Revoked { .. }));
    assert!(matches!(
        store.lookup_refresh(&TokenHash::of("r-1"), T0).unwrap(),
        RefreshLookup::Current(_)
    ));
    assert!(store.is_revoked("other", Some("fam-x"), T0));
    assert!(store.is_revoked("jti-1", None, T0));
    assert_eq!(store.prune_tokens(T0 + Duration::hours(2)).unwrap(), 1);
    assert!(!store.is_revoked("jti-1", None, T0));
}

#[test]
fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = rusqlite_free_bump(&path);
        assert!(conn);
    }
    assert!(SqliteStore::open(&path).is_err());
}

/// Bumps `user_version` with the sqlite3 shell-free trick of reopening through the store's
/// own dependency is not possible from here, so write the header field directly: SQLite keeps
/// `user_version` as a big-endian u32 at byte offset 60 of the database header.
fn rusqlite_free_bump(path: &std::path::Path) -> bool {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(path, bytes).is_ok()
}
