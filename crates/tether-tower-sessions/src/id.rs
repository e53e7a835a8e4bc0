//! How tower-sessions' ids and tether's ids name the same session.

use tower_sessions_core::session::Id as TowerId;

/// The tether id of a tower-sessions id: the `i128`'s 16 little-endian bytes.
///
/// tower-sessions prints its id as the unpadded base64url of `i128::to_le_bytes`, and tether
/// prints its id as the unpadded base64url of its 16 bytes, so an id and its mapping print as
/// the same 22 characters: a tower-sessions cookie value is the tether id of its session. The
/// mapping is a bijection; [`to_tower`] undoes it.
///
/// ```
/// use tower_sessions_core::session::Id;
///
/// let tower = Id(-42);
/// let tether = tether_tower_sessions::to_tether(tower);
/// assert_eq!(tether.to_string(), tower.to_string());
/// assert_eq!(tether_tower_sessions::to_tower(tether), tower);
/// ```
pub fn to_tether(id: TowerId) -> tether_core::Id {
    tether_core::Id::from_bytes(id.0.to_le_bytes())
}

/// The tower-sessions id of a tether id: its 16 bytes read as a little-endian `i128`. The
/// inverse of [`to_tether`].
///
/// ```
/// let tether = tether_core::Id::random()?;
/// let tower = tether_tower_sessions::to_tower(tether);
/// assert_eq!(tower.to_string(), tether.to_string());
/// assert_eq!(tether_tower_sessions::to_tether(tower), tether);
/// # Ok::<(), tether_core::Error>(())
/// ```
pub fn to_tower(id: tether_core::Id) -> TowerId {
    TowerId(i128::from_le_bytes(*id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_forms_agree_and_parse_both_ways() {
        let edges = [0, 1, -1, i128::MIN, i128::MAX];
        let random = (0..500).map(|_| to_tower(tether_core::Id::random().unwrap()).0);
        for n in edges.into_iter().chain(random) {
            let tower = TowerId(n);
            let text = tower.to_string();
            let tether = to_tether(tower);
            assert_eq!(tether.to_string(), text);
            assert_eq!(text.parse::<tether_core::Id>().unwrap(), tether);
            assert_eq!(text.parse::<TowerId>().unwrap(), tower);
            assert_eq!(to_tower(tether), tower);
        }
    }

    #[test]
    fn both_reject_what_tether_rejects() {
        // Non-canonical trailing bits, wrong lengths: neither side names a session with them.
        for text in [
            "AAAAAAAAAAAAAAAAAAAAAB",
            "AAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(text.parse::<tether_core::Id>().is_err(), "{text}");
            assert!(text.parse::<TowerId>().is_err(), "{text}");
        }
    }
}
