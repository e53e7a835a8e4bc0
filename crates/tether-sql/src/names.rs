//! Table names: an optional schema and a prefix, checked once, quoted into every statement.

use crate::Error;

/// Longest schema name or table prefix accepted, in bytes. PostgreSQL truncates identifiers at
/// 63 bytes, and the longest name built from the prefix adds 25.
pub const MAX_NAME_LEN: usize = 38;

/// Default prefix of the table names: `tether_sessions`, `tether_session_keys` (and, with
/// events, `tether_session_events`, `tether_session_event_cursors`).
pub const DEFAULT_TABLE_PREFIX: &str = "tether_";

/// Whether `name` is a plain identifier that needs no escaping.
fn check(what: &'static str, name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let valid = name.len() <= MAX_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

/// The quoted, schema-qualified names of the store's tables and index.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    /// `"schema"`, if one is set (SQLite has none).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) schema: Option<String>,
    /// `"schema"."prefix_sessions"`
    pub(crate) sessions: String,
    /// `"schema"."prefix_session_keys"`
    pub(crate) keys: String,
    /// The index name, unqualified: `"prefix_sessions_expires_at"`.
    pub(crate) expiry_index: String,
    /// The principal index name, unqualified: `"prefix_sessions_principal"`.
    pub(crate) principal_index: String,
    /// `"schema"."prefix_session_events"`
    pub(crate) events: String,
    /// `"schema"."prefix_session_event_cursors"`
    pub(crate) event_cursors: String,
    /// The index of events by time, unqualified: `"prefix_session_events_at"`.
    pub(crate) events_index: String,
}

impl Tables {
    /// Checks the names; the prefix may be empty, the schema may not.
    pub(crate) fn new(schema: Option<&str>, prefix: &str) -> Result<Self, Error> {
        if let Some(schema) = schema {
            check("schema", schema)?;
        }
        if !prefix.is_empty() {
            check("table prefix", prefix)?;
        }
        let qualify = |table: &str| match schema {
            Some(schema) => format!("\"{schema}\".\"{prefix}{table}\""),
            None => format!("\"{prefix}{table}\""),
        };
        Ok(Self {
            schema: schema.map(|s| format!("\"{s}\"")),
            sessions: qualify("sessions"),
            keys: qualify("session_keys"),
            expiry_index: format!("\"{prefix}sessions_expires_at\""),
            principal_index: format!("\"{prefix}sessions_principal\""),
            events: qualify("session_events"),
            event_cursors: qualify("session_event_cursors"),
            events_index: format!("\"{prefix}session_events_at\""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = Tables::new(Some("app"), "s_").unwrap();
        assert_eq!(t.sessions, "\"app\".\"s_sessions\"");
        assert_eq!(t.keys, "\"app\".\"s_session_keys\"");
        assert_eq!(t.expiry_index, "\"s_sessions_expires_at\"");
        assert_eq!(t.principal_index, "\"s_sessions_principal\"");
        assert_eq!(t.events, "\"app\".\"s_session_events\"");
        assert_eq!(t.event_cursors, "\"app\".\"s_session_event_cursors\"");
        assert_eq!(t.events_index, "\"s_session_events_at\"");
        let t = Tables::new(None, "").unwrap();
        assert_eq!(t.sessions, "\"sessions\"");
        for bad in [
            "",
            "1a",
            "a-b",
            "a\"b",
            "a;drop",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(Tables::new(Some(bad), "").is_err(), "{bad}");
        }
        assert!(Tables::new(None, "a b").is_err());
    }
}
