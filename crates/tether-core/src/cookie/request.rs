//! Request `Cookie` headers, read and edited as bytes.
//!
//! A `Cookie` header is `name=value` pairs separated by `;` and optional spaces, without
//! attributes (RFC 6265 section 4.2). Header values may hold bytes that are not UTF-8
//! (`obs-text`), and browsers send whatever a page or a sibling subdomain set, so everything
//! here works on bytes: one pair that is not UTF-8 never hides or loses the pairs next to it.
//!
//! `cookie::Cookie::split_parse` parses every pair as a full `Set-Cookie` line with attributes:
//! measured with callgrind at about 1,900 instructions per request for a one-cookie header, the
//! largest single cost of a session read. Request cookies have no attributes, so a split is all
//! that is needed, and only the value asked for is ever decoded.

use std::borrow::Cow;

/// The `name=value` pairs of one request `Cookie` header, in order, with the spaces around
/// names and values trimmed. Pairs without `=` are skipped; values are not unquoted or decoded.
///
/// # Example
///
/// ```
/// use tether_core::cookie::request_cookies;
///
/// let pairs: Vec<_> = request_cookies(b"a=1; junk=\xff;flag; b = 2").collect();
/// assert_eq!(
///     pairs,
///     [(&b"a"[..], &b"1"[..]), (b"junk", b"\xff"), (b"b", b"2")],
/// );
/// ```
pub fn request_cookies(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(pair)
}

/// The values of every cookie called `name` in `headers` (the raw values of a request's
/// `Cookie` headers, in order), in the order they come. Several can arrive: browsers send one
/// per matching path and domain, so one planted for a parent domain can precede the real one.
///
/// # Example
///
/// ```
/// use tether_core::cookie::cookie_values;
///
/// // HTTP/2 clients may send one header per cookie.
/// let headers: [&[u8]; 2] = [b"sid=planted; theme=\xe9", b"sid=mine"];
/// let values: Vec<_> = cookie_values(headers, "sid").collect();
/// assert_eq!(values, [&b"planted"[..], b"mine"]);
/// ```
pub fn cookie_values<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .into_iter()
        .flat_map(request_cookies)
        .filter(move |(cookie, _)| *cookie == name.as_bytes())
        .map(|(_, value)| value)
}

/// `header` without the cookies called `name`: borrowed and unchanged when it has none, else the
/// other pairs, each byte for byte as it came, joined by `;` (empty when nothing is left, and
/// the header should then be dropped).
///
/// # Example
///
/// ```
/// use tether_core::cookie::without_cookie;
///
/// assert_eq!(&*without_cookie(b"a=1; route=x; b=\xe9", "route"), b"a=1; b=\xe9");
/// assert_eq!(&*without_cookie(b"route=x", "route"), b"");
/// assert!(matches!(without_cookie(b"a=1;b=2", "route"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn without_cookie<'a>(header: &'a [u8], name: &str) -> Cow<'a, [u8]> {
    let named = |segment: &[u8]| pair(segment).is_some_and(|(n, _)| n == name.as_bytes());
    let mut segments = header.split(|&b| b == b';');
    if !segments.clone().any(named) {
        return Cow::Borrowed(header);
    }
    let mut kept = Vec::with_capacity(header.len());
    for segment in segments.by_ref() {
        if named(segment) || segment.trim_ascii().is_empty() {
            continue;
        }
        if !kept.is_empty() {
            kept.push(b';');
        }
        kept.extend_from_slice(segment);
    }
    // The spaces that followed a removed `;` or preceded a removed last pair.
    match kept.trim_ascii() {
        trimmed if trimmed.len() == kept.len() => Cow::Owned(kept),
        trimmed => Cow::Owned(trimmed.to_vec()),
    }
}

/// One `name=value` segment, trimmed; `None` without `=`.
fn pair(segment: &[u8]) -> Option<(&[u8], &[u8])> {
    let segment = segment.trim_ascii();
    let eq = segment.iter().position(|&b| b == b'=')?;
    let (name, value) = segment.split_at(eq);
    Some((name.trim_ascii(), value.get(1..)?.trim_ascii()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn splits_request_cookie_headers() {
        let pairs: Vec<_> = request_cookies(b"a=1; b=2;c=3 ;  d = 4 ; flag; =x; e=; f=a=b")
            .map(|(n, v)| (text(n), text(v)))
            .collect();
        let expected = [
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("d", "4"),
            ("", "x"),
            ("e", ""),
            ("f", "a=b"),
        ];
        assert_eq!(pairs.len(), expected.len(), "{pairs:?}");
        for ((n, v), (en, ev)) in pairs.iter().zip(expected) {
            assert_eq!((n.as_str(), v.as_str()), (en, ev));
        }
        assert_eq!(request_cookies(b"").count(), 0);
        assert_eq!(request_cookies(b";;;").count(), 0);
    }

    #[test]
    fn a_pair_that_is_not_utf8_hides_none_of_its_neighbours() {
        let header = b"\xc3\x28=\xa0\xa1; sid=ok; x=\xff\xfe";
        let values: Vec<_> = cookie_values([&header[..]], "sid").collect();
        assert_eq!(values, [b"ok"]);
        assert_eq!(request_cookies(header).count(), 3);
    }

    #[test]
    fn values_come_from_every_header_in_order() {
        let headers: [&[u8]; 3] = [b"sid=1; other=x", b"nothing", b"sid=2;sid=3"];
        let values: Vec<_> = cookie_values(headers, "sid").collect();
        assert_eq!(values, [b"1", b"2", b"3"]);
        assert_eq!(cookie_values(headers, "si").count(), 0, "whole names only");
        assert_eq!(cookie_values(headers, "").count(), 0);
    }

    #[test]
    fn removes_only_the_named_cookie() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"a=1; route=x; b=2", b"a=1; b=2"),
            (b"route=x; a=1", b"a=1"),
            (b"a=1 ;route=x", b"a=1"),
            (b"route=x", b""),
            (b"route=x; route = y;", b""),
            (b"a=\xe9t\xe9; route=x;b=\xff", b"a=\xe9t\xe9;b=\xff"),
            (b"a=1;; route=x; ;b=2", b"a=1;b=2"),
            // Not the cookie: a longer name, a bare word, the name as a value.
            (
                b"router=1; route; x=route; route=x",
                b"router=1; route; x=route",
            ),
            (b"\xff=route=x; route=", b"\xff=route=x"),
        ];
        for (header, expected) in cases {
            let left = without_cookie(header, "route");
            assert!(matches!(left, Cow::Owned(_)), "{}", text(header));
            assert_eq!(text(&left), text(expected), "{}", text(header));
        }
    }

    #[test]
    fn headers_without_the_cookie_are_borrowed_unchanged() {
        for header in [
            &b""[..],
            b"a=1;b=2 ;; c",
            b"routes=1",
            b"\xff\xfe",
            b"route",
        ] {
            assert!(matches!(without_cookie(header, "route"), Cow::Borrowed(h) if h == header));
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Header bytes made mostly of cookie syntax, with any byte mixed in.
    fn header() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"route=x".to_vec()),
            Just(b"; ".to_vec()),
            Just(b";".to_vec()),
            Just(b"=".to_vec()),
            Just(b" ".to_vec()),
            Just(b"route".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        /// Removing a cookie removes exactly its pairs: the rest parse as before, in order.
        #[test]
        fn removal_keeps_every_other_pair(header in header()) {
            let left = without_cookie(&header, "route");
            let before: Vec<_> = request_cookies(&header).filter(|(n, _)| *n != b"route").collect();
            let after: Vec<_> = request_cookies(&left).collect();
            prop_assert_eq!(after, before);
            prop_assert_eq!(cookie_values([&left[..]], "route").count(), 0);
        }
    }
}
