//! The contract of a read that may renew: `load_renewing`.

use std::time::Duration;

use tether_core::{Expiry, Renewal, Seen, SessionStore, Timestamp};

use super::{HOUR, assert_same_expiry, create, load, record_with};

/// `load_renewing` answers what `load` answers; when it says it renewed the session, the store
/// holds the renewed expiry and the renewal's last use, and a session not due is never
/// renewed; a session that is unknown, deleted or past its deadline at the renewal's instant
/// is `None` and stays as it was.
pub async fn load_renewing(store: &dyn SessionStore) {
    let now = Timestamp::now();
    let seen = Seen::new(now).with_device("conformance");
    let renewal = Renewal::new(now, 0.25).with_seen(seen.clone());
    let earlier = Renewal::new(
        Timestamp::from_millis(now.as_millis() - 30 * 60 * 1000),
        0.25,
    );

    // Renewed 40 minutes ago with an hour's idle timeout: due at a threshold of a quarter,
    // and not due ten minutes after that renewal (a store may note when it falls due).
    let mut due = record_with(&[("k", b"v")]);
    due.expiry = Expiry::from_parts(now + Duration::from_secs(20 * 60), HOUR, None);
    create(store, &due).await;
    let first = store
        .load_renewing(&due.id, &earlier)
        .await
        .expect("load_renewing")
        .expect("a live session loads");
    assert!(!first.renewed, "a session not due is never renewed");
    assert_same_expiry(&first.record.expiry, &due.expiry);

    let renewed = Expiry::from_parts(now + HOUR, HOUR, None);
    let loaded = store
        .load_renewing(&due.id, &renewal)
        .await
        .expect("load_renewing")
        .expect("a live session loads");
    assert_eq!(loaded.record.data, due.data, "the data as stored");
    let stored = load(store, &due.id).await.expect("still there");
    assert_eq!(stored.data, due.data, "renewal leaves data alone");
    if loaded.renewed {
        assert_same_expiry(&loaded.record.expiry, &renewed);
        assert_same_expiry(&stored.expiry, &renewed);
        assert_eq!(
            stored.seen.as_deref(),
            Some(&seen),
            "the renewal records the last use"
        );
        let again = store
            .load_renewing(&due.id, &renewal)
            .await
            .expect("load_renewing")
            .expect("a live session loads");
        assert!(
            !again.renewed,
            "a session renewed just now is not due again"
        );
        assert_same_expiry(&again.record.expiry, &renewed);
    } else {
        assert_same_expiry(&loaded.record.expiry, &due.expiry);
        assert_same_expiry(&stored.expiry, &due.expiry);
    }

    // A fresh session, an hour left: not due.
    let fresh = record_with(&[("k", b"v")]);
    create(store, &fresh).await;
    let loaded = store
        .load_renewing(&fresh.id, &Renewal::new(Timestamp::now(), 0.25))
        .await
        .expect("load_renewing")
        .expect("a live session loads");
    assert!(!loaded.renewed, "a session not due is left alone");
    assert_same_expiry(&loaded.record.expiry, &fresh.expiry);
    assert_same_expiry(
        &load(store, &fresh.id).await.expect("still there").expiry,
        &fresh.expiry,
    );

    // Its deadline has passed at the renewal's instant: not returned, not renewed.
    let renewal_later = Renewal::new(fresh.expiry.expires_at() + Duration::from_secs(1), 0.25);
    assert!(
        store
            .load_renewing(&fresh.id, &renewal_later)
            .await
            .expect("load_renewing")
            .is_none(),
        "a session past its deadline at the renewal's instant is not returned"
    );
    assert_same_expiry(
        &load(store, &fresh.id).await.expect("still there").expiry,
        &fresh.expiry,
    );

    let unknown = record_with(&[]);
    assert!(
        store
            .load_renewing(&unknown.id, &renewal)
            .await
            .expect("load_renewing")
            .is_none(),
        "an unknown id names nothing"
    );
    assert!(
        load(store, &unknown.id).await.is_none(),
        "load_renewing of an unknown id creates nothing"
    );

    store.delete(&due.id).await.expect("delete");
    assert!(
        store
            .load_renewing(&due.id, &renewal)
            .await
            .expect("load_renewing")
            .is_none(),
        "a deleted session is gone"
    );
    assert!(
        load(store, &due.id).await.is_none(),
        "load_renewing never brings back a deleted session"
    );
}
