//! `Mode` and `Ack` in configuration files: written and read as the strings they print.

use tether_replicated::{Ack, Mode};

#[test]
fn modes_and_acks_are_their_display_strings() {
    for mode in [
        Mode::AllToAll,
        Mode::Backup { copies: 1 },
        Mode::Backup { copies: 3 },
    ] {
        let json = serde_json::to_string(&mode).unwrap();
        assert_eq!(json, format!("\"{mode}\""));
        assert_eq!(serde_json::from_str::<Mode>(&json).unwrap(), mode);
    }
    for ack in [Ack::Sync, Ack::Async] {
        let json = serde_json::to_string(&ack).unwrap();
        assert_eq!(json, format!("\"{ack}\""));
        assert_eq!(serde_json::from_str::<Ack>(&json).unwrap(), ack);
    }
}

#[test]
fn a_bad_string_names_itself_and_what_was_expected() {
    let error = serde_json::from_str::<Mode>("\"backup-0\"")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"backup-0\"") && error.contains("all-to-all or backup-N"),
        "{error}"
    );
    let error = serde_json::from_str::<Ack>("\"Sync\"")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"Sync\"") && error.contains("sync or async"),
        "{error}"
    );
    assert!(serde_json::from_str::<Mode>("1").is_err());
}
