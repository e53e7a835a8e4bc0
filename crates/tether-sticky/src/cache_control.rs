//! Keeping a response that sets the affinity cookie out of shared caches, without overriding
//! what the backend said about caching.

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderValue};

/// Makes sure no shared cache stores a response that carries a client's affinity cookie:
/// `private` when the backend set no `Cache-Control`; left alone when it already says `private`
/// or `no-store`; `public` becomes `private`; any other directives are kept, after `private`.
pub(crate) fn keep_private(headers: &mut HeaderMap) {
    let existing: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    let name = |d: &str| {
        d.split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    if existing
        .iter()
        .any(|d| matches!(name(d).as_str(), "private" | "no-store"))
    {
        return;
    }
    let kept: Vec<&str> = std::iter::once("private")
        .chain(
            existing
                .iter()
                .filter(|d| name(d) != "public")
                .map(String::as_str),
        )
        .collect();
    match HeaderValue::try_from(kept.join(", ")) {
        Ok(value) => {
            headers.insert(CACHE_CONTROL, value);
        }
        Err(_) => {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(values: &[&str]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        keep_private(&mut headers);
        headers
            .get_all(CACHE_CONTROL)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn merges_with_what_the_backend_said() {
        assert_eq!(after(&[]), ["private"]);
        assert_eq!(after(&["no-store, max-age=0"]), ["no-store, max-age=0"]);
        assert_eq!(after(&["Private"]), ["Private"]);
        assert_eq!(
            after(&["private=\"set-cookie\""]),
            ["private=\"set-cookie\""]
        );
        assert_eq!(after(&["public, max-age=60"]), ["private, max-age=60"]);
        assert_eq!(
            after(&["max-age=60", "must-revalidate"]),
            ["private, max-age=60, must-revalidate"]
        );
        assert_eq!(after(&["no-cache"]), ["private, no-cache"]);
    }
}
