//! The HTML pages. Everything a client could have written (the device label is its
//! `User-Agent`) is escaped.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use tether_sessions::{SessionHandle, SessionInfo};

use crate::app::USERS;

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}</style>\
         </head><body>{body}</body></html>"
    )
}

/// `text` with the five HTML metacharacters escaped, for text and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn time(millis: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(millis);
    humantime::format_rfc3339_seconds(at).to_string()
}

pub(crate) fn login(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p id=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let users = USERS.join(", ");
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{error}\
             <form id=\"login\" method=\"post\" action=\"/login\">\
             <label>User <input name=\"user\" autocomplete=\"username\"></label> \
             <label>Password <input name=\"password\" type=\"password\"></label> \
             <button type=\"submit\">Sign in</button></form>\
             <p>Demo users: {users}; any password.</p>"
        ),
    )
}

pub(crate) fn home(user: &str) -> String {
    layout(
        "Home",
        &format!(
            "<h1>Signed in as <span id=\"user\">{}</span></h1>\
             <p><a href=\"/devices\">Your devices</a></p>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form>",
            escape(user)
        ),
    )
}

pub(crate) fn devices(
    user: &str,
    sessions: &[SessionInfo],
    current: Option<SessionHandle>,
) -> String {
    let mut rows = String::new();
    for info in sessions {
        let this = Some(info.handle) == current;
        let action = if this {
            "<td class=\"current\">this device</td>".to_owned()
        } else {
            format!(
                "<td><form method=\"post\" action=\"/devices/sign-out\">\
                 <input type=\"hidden\" name=\"handle\" value=\"{}\">\
                 <button type=\"submit\" class=\"sign-out\">Sign out this device</button></form></td>",
                info.handle
            )
        };
        let _ = write!(
            rows,
            "<tr class=\"device\" data-handle=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{action}</tr>",
            info.handle,
            escape(info.device().unwrap_or("unknown device")),
            info.address()
                .map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
            time(info.created_at.as_millis()),
            info.last_seen()
                .map_or_else(|| "-".to_owned(), |t| time(t.as_millis())),
        );
    }
    layout(
        "Your devices",
        &format!(
            "<h1>Your devices, {}</h1>\
             <table><thead><tr><th>Device</th><th>Address</th><th>Signed in</th><th>Last seen</th><th></th></tr></thead>\
             <tbody>{rows}</tbody></table>\
             <form method=\"post\" action=\"/devices/sign-out-others\">\
             <button type=\"submit\" id=\"sign-out-others\">Sign out everywhere else</button></form>\
             <p><a href=\"/\">Home</a></p>",
            escape(user)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_written_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
