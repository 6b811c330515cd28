//! Conditional requests (RFC 9110 §13.1–13.2.2) and the validators they compare against:
//! strong ETags ([`make_etag`]) and `Last-Modified` dates ([`http_date`]).
//!
//! Everything here is pure (no I/O, no server types, no clock), so it is table-tested below and
//! fuzzed in `origin/fuzz`.
//!
//! # Order of evaluation ([`evaluate`], RFC 9110 §13.2.2)
//!
//! 1. `If-Match` present: unless it is `*` or lists an entity-tag that matches ours with the
//!    **strong** comparison, → 412 Precondition Failed.
//! 2. Otherwise, `If-Unmodified-Since` with a valid HTTP-date: if `Last-Modified` is later than
//!    that date → 412.
//! 3. `If-None-Match` present: if it is `*` or lists an entity-tag that matches ours with the
//!    **weak** comparison → 304 Not Modified for GET/HEAD, 412 for other methods.
//! 4. Otherwise, for GET/HEAD only, `If-Modified-Since` with a valid HTTP-date: if
//!    `Last-Modified` is not later than that date → 304. (This is nginx's
//!    `if_modified_since before`; nginx's default `exact` only answers 304 on equality, which
//!    RFC 9110 does not ask for.)
//! 5. Otherwise proceed. `If-Range` (step 5 of the RFC) only decides whether a `Range` header is
//!    honoured; the caller checks it with [`if_range_matches`] before evaluating `Range`.
//!
//! Dates that do not parse are ignored (the header is treated as absent), as RFC 9110 requires.
//! `Last-Modified` is compared at one-second resolution: it is truncated to the whole second
//! (the precision of an HTTP-date) before any comparison, so a file modified at `…:07.9` is
//! not "modified since" `…:07`.
//!
//! An entity-tag list that does not follow the grammar matches nothing from the first malformed
//! member on (`If-Match` then fails with 412, `If-None-Match` does not produce a 304). Unquoted
//! tags (`If-None-Match: abc`) are malformed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validators<'a> {
    /// Entity-tag as sent in `ETag`, quoted, normally strong (e.g. `"\"1-1a2b-3c-4d\""`); see
    /// [`make_etag`]. A weak tag (`W/"…"`) never satisfies a strong comparison.
    pub etag: &'a str,
    /// Modification time, as sent (truncated to the second) in `Last-Modified`.
    pub last_modified: SystemTime,
}

/// The request's conditional header values (`None` when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditions<'a> {
    /// `If-Match`.
    pub if_match: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a str>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a str>,
}

/// Result of evaluating the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the request (then consider `If-Range` / `Range`).
    Proceed,
    /// 304 Not Modified (only ever for GET/HEAD). Send the validators (`ETag`,
    /// `Last-Modified`) and caching headers, no body.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

/// Evaluates the preconditions in RFC 9110 §13.2.2 order; see the
/// [module documentation](self) for the exact rules.
pub fn evaluate(is_get_or_head: bool, c: &Conditions, v: &Validators) -> Decision {
    let last_modified = truncate_to_second(v.last_modified);
    if let Some(im) = c.if_match {
        if !etag_list_matches(im, v.etag, false) {
            return Decision::PreconditionFailed;
        }
    } else if let Some(date) = c.if_unmodified_since.and_then(parse_http_date) {
        if last_modified > date {
            return Decision::PreconditionFailed;
        }
    }
    if let Some(inm) = c.if_none_match {
        if etag_list_matches(inm, v.etag, true) {
            return if is_get_or_head {
                Decision::NotModified
            } else {
                Decision::PreconditionFailed
            };
        }
    } else if is_get_or_head {
        if let Some(date) = c.if_modified_since.and_then(parse_http_date) {
            if last_modified <= date {
                return Decision::NotModified;
            }
        }
    }
    Decision::Proceed
}

/// Whether an `If-Range` value still designates the current representation, i.e. whether the
/// `Range` header may be honoured (RFC 9110 §13.1.5). If false, send the full representation
/// with 200.
///
/// * An entity-tag matches only with the strong comparison: a weak tag (`W/"…"`) never does.
/// * An HTTP-date matches only if it exactly equals `Last-Modified` truncated to the second.
/// * Anything else (a list, garbage, an invalid date) → false.
///
/// RFC 9110 also calls a `Last-Modified` date weak when it is within a second of the response
/// `Date`; this function has no clock, so a caller serving files that may still be changing
/// should treat such dates as not matching.
pub fn if_range_matches(if_range: &str, v: &Validators) -> bool {
    let s = trim_ows(if_range);
    if s.starts_with('"') || s.starts_with("W/") {
        let mut p = TagParser {
            s: s.as_bytes(),
            i: 0,
        };
        return match (p.tag(), EntityTag::parse(v.etag)) {
            (Some(t), Some(ours)) => p.i == p.s.len() && t.strong_eq(&ours),
            _ => false,
        };
    }
    match parse_http_date(s) {
        Some(date) => date == truncate_to_second(v.last_modified),
        None => false,
    }
}

/// Whether an `If-Match` / `If-None-Match` value matches `etag` (RFC 9110 §8.8.3.2, §13.1.1–2).
///
/// `header` is `*` (matches any current representation, whatever `etag` is) or a
/// comma-separated list of entity-tags (`"x"`, `W/"x"`), with optional whitespace and empty
/// elements. With `weak == false` the strong comparison is used (both tags strong, opaque parts
/// equal); with `weak == true` the weak comparison (opaque parts equal, `W/` ignored). Commas
/// inside a quoted tag are part of the tag. A malformed member ends the list: it and what
/// follows match nothing. A malformed `etag` matches nothing but `*`.
pub fn etag_list_matches(header: &str, etag: &str, weak: bool) -> bool {
    let header = trim_ows(header);
    if header == "*" {
        return true;
    }
    let Some(ours) = EntityTag::parse(etag) else {
        return false;
    };
    let mut p = TagParser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_ows_and_commas();
        if p.i == p.s.len() {
            return false;
        }
        let Some(t) = p.tag() else {
            return false;
        };
        let matched = if weak {
            t.weak_eq(&ours)
        } else {
            t.strong_eq(&ours)
        };
        if matched {
            return true;
        }
        p.skip_ows();
        // Each tag must be followed by a comma or the end.
        if p.i < p.s.len() && p.s[p.i] != b',' {
            return false;
        }
    }
}

/// Formats `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), truncated to the second.
/// Times before 1970 are sent as the epoch and times after 9999 as the last second of 9999
/// (httpdate's range), instead of panicking.
pub fn http_date(t: SystemTime) -> String {
    const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_SECS);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Parses an HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms (all that
/// `httpdate` accepts; the weekday must be right). Surrounding whitespace is ignored; anything
/// else invalid gives `None`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(trim_ows(s)).ok()
}

/// A strong, deterministic entity-tag for a file:
/// `"<format_version hex>-<len hex>-<mtime ns since epoch hex>-<inode_or_hash hex>"`.
///
/// Any change of content length, modification time (nanoseconds), inode (or content hash) or of
/// the way the origin serves bytes (bump `format_version`) gives a new tag, in the style of
/// Moonfire NVR / http-serve. Modification times before 1970 are written as `n<ns before
/// epoch hex>`.
pub fn make_etag(format_version: u32, len: u64, mtime: SystemTime, inode_or_hash: u64) -> String {
    let mtime = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{:x}", d.as_nanos()),
        Err(e) => format!("n{:x}", e.duration().as_nanos()),
    };
    format!("\"{format_version:x}-{len:x}-{mtime}-{inode_or_hash:x}\"")
}

/// `t` rounded down to a whole second (HTTP-date precision).
fn truncate_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(e) => {
            let d = e.duration();
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs))
                .unwrap_or(t)
        }
    }
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// A parsed entity-tag: weakness and the opaque part between the quotes.
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// Parses exactly one entity-tag (surrounding whitespace allowed).
    fn parse(s: &'a str) -> Option<Self> {
        let s = trim_ows(s);
        let mut p = TagParser {
            s: s.as_bytes(),
            i: 0,
        };
        let t = p.tag()?;
        (p.i == p.s.len()).then_some(t)
    }

    fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    fn weak_eq(&self, other: &EntityTag) -> bool {
        self.opaque == other.opaque
    }
}

struct TagParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> TagParser<'a> {
    fn skip_ows(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] == b' ' || self.s[self.i] == b'\t') {
            self.i += 1;
        }
    }

    fn skip_ows_and_commas(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }

    /// `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`, `etagc = %x21 / %x23-7E / obs-text`.
    fn tag(&mut self) -> Option<EntityTag<'a>> {
        let rest = &self.s[self.i..];
        let (weak, rest) = match rest.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let rest = rest.strip_prefix(b"\"")?;
        let close = rest.iter().position(|&b| b == b'"')?;
        let opaque = &rest[..close];
        if !opaque
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return None;
        }
        self.i = self.s.len() - rest.len() + close + 1;
        Some(EntityTag { weak, opaque })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"v1-1a2b-3c\"";
    const LM_STR: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn lm() -> SystemTime {
        // 784111777 = 1994-11-06T08:49:37Z; plus a fraction, which must be ignored.
        UNIX_EPOCH + Duration::new(784_111_777, 500_000_000)
    }

    fn v() -> Validators<'static> {
        Validators {
            etag: ETAG,
            last_modified: lm(),
        }
    }

    #[test]
    fn etag_lists() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool, bool)] = &[
            // header, etag, strong result, weak result
            ("*", ETAG, true, true),
            (" * ", ETAG, true, true),
            ("*", "garbage", true, true),
            ("\"v1-1a2b-3c\"", ETAG, true, true),
            (" \"v1-1a2b-3c\"\t", ETAG, true, true),
            ("W/\"v1-1a2b-3c\"", ETAG, false, true),
            ("\"v1-1a2b-3c\"", "W/\"v1-1a2b-3c\"", false, true),
            ("W/\"v1-1a2b-3c\"", "W/\"v1-1a2b-3c\"", false, true),
            ("\"other\"", ETAG, false, false),
            ("\"V1-1A2B-3C\"", ETAG, false, false), // opaque tags are case-sensitive
            ("w/\"v1-1a2b-3c\"", ETAG, false, false), // "W/" is case-sensitive
            ("\"a\", \"v1-1a2b-3c\"", ETAG, true, true),
            ("\"a\",\"b\",W/\"v1-1a2b-3c\"", ETAG, false, true),
            ("\"a\" , W/\"v1-1a2b-3c\" , \"v1-1a2b-3c\"", ETAG, true, true),
            (",, \"a\",,\"v1-1a2b-3c\",", ETAG, true, true),
            ("\"a\", \"b\"", ETAG, false, false),
            ("\"\"", "\"\"", true, true),
            ("\"\"", ETAG, false, false),
            // Commas inside a tag belong to it.
            ("\"a,b\"", "\"a,b\"", true, true),
            ("\"a,b\"", "\"a\"", false, false),
            ("\"x\", \"a,b\"", "\"b\"", false, false),
            // Malformed members end the list.
            ("v1-1a2b-3c", ETAG, false, false),
            ("v1-1a2b-3c", "v1-1a2b-3c", false, false),
            ("\"v1-1a2b-3c", ETAG, false, false),
            ("\"a\" \"v1-1a2b-3c\"", ETAG, false, false),
            ("\"a\"x, \"v1-1a2b-3c\"", ETAG, false, false),
            ("garbage, \"v1-1a2b-3c\"", ETAG, false, false),
            ("\"v1-1a2b-3c\", garbage", ETAG, true, true),
            ("\"a b\"", "\"a b\"", false, false), // SP is not an etagc
            ("", ETAG, false, false),
            ("  ", ETAG, false, false),
            ("*, \"v1-1a2b-3c\"", ETAG, false, false),
            // Malformed own tag.
            ("\"a\"", "a", false, false),
            ("\"a\"", "", false, false),
            // obs-text is allowed.
            ("\"caf\u{e9}\"", "\"caf\u{e9}\"", true, true),
        ];
        for &(header, etag, strong, weak) in cases {
            assert_eq!(
                etag_list_matches(header, etag, false),
                strong,
                "strong {header:?} vs {etag:?}"
            );
            assert_eq!(
                etag_list_matches(header, etag, true),
                weak,
                "weak {header:?} vs {etag:?}"
            );
        }
    }

    /// if_match, if_unmodified_since, if_none_match, if_modified_since, GET/HEAD, other.
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Decision,
        Decision,
    );

    #[test]
    fn preconditions() {
        use Decision::{NotModified as NM, PreconditionFailed as PF, Proceed as OK};
        let bad_date = "not a date";
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // if_match, if_unmodified_since, if_none_match, if_modified_since, GET/HEAD, other
            (None, None, None, None, OK, OK),
            // If-Match (strong).
            (Some(ETAG), None, None, None, OK, OK),
            (Some("*"), None, None, None, OK, OK),
            (Some("\"x\", \"v1-1a2b-3c\""), None, None, None, OK, OK),
            (Some("\"x\""), None, None, None, PF, PF),
            (Some("W/\"v1-1a2b-3c\""), None, None, None, PF, PF),
            (Some("garbage"), None, None, None, PF, PF),
            (Some(""), None, None, None, PF, PF),
            // If-Unmodified-Since, only without If-Match.
            (None, Some(LM_STR), None, None, OK, OK),
            (None, Some(AFTER), None, None, OK, OK),
            (None, Some(BEFORE), None, None, PF, PF),
            (None, Some(bad_date), None, None, OK, OK),
            (Some(ETAG), Some(BEFORE), None, None, OK, OK),
            (Some("\"x\""), Some(AFTER), None, None, PF, PF),
            // If-None-Match (weak): 304 for GET/HEAD, 412 otherwise.
            (None, None, Some(ETAG), None, NM, PF),
            (None, None, Some("W/\"v1-1a2b-3c\""), None, NM, PF),
            (None, None, Some("*"), None, NM, PF),
            (None, None, Some("\"x\", \"v1-1a2b-3c\""), None, NM, PF),
            (None, None, Some("\"x\""), None, OK, OK),
            (None, None, Some("garbage"), None, OK, OK),
            // If-Modified-Since: GET/HEAD only, ignored when If-None-Match is present.
            (None, None, None, Some(LM_STR), NM, OK),
            (None, None, None, Some(AFTER), NM, OK),
            (None, None, None, Some(BEFORE), OK, OK),
            (None, None, None, Some(bad_date), OK, OK),
            (None, None, None, Some(""), OK, OK),
            (None, None, Some("\"x\""), Some(AFTER), OK, OK),
            (None, None, Some(ETAG), Some(BEFORE), NM, PF),
            // Obsolete date formats are accepted.
            (None, None, None, Some("Sunday, 06-Nov-94 08:49:37 GMT"), NM, OK),
            (None, None, None, Some("Sun Nov  6 08:49:37 1994"), NM, OK),
            (None, Some("Sunday, 06-Nov-94 08:49:36 GMT"), None, None, PF, PF),
            // Wrong weekday: invalid, ignored.
            (None, None, None, Some("Mon, 06 Nov 1994 08:49:37 GMT"), OK, OK),
            // Order: If-Match failure wins over a matching If-None-Match.
            (Some("\"x\""), None, Some(ETAG), None, PF, PF),
            // If-Unmodified-Since failure wins over If-None-Match / If-Modified-Since.
            (None, Some(BEFORE), Some(ETAG), None, PF, PF),
            (None, Some(BEFORE), None, Some(AFTER), PF, PF),
            // Passing If-Match, then If-None-Match decides.
            (Some(ETAG), None, Some(ETAG), None, NM, PF),
            (Some("*"), None, Some("*"), None, NM, PF),
            (Some(ETAG), None, None, Some(AFTER), NM, OK),
            (Some(ETAG), Some(AFTER), Some("\"x\""), Some(AFTER), OK, OK),
        ];
        for &(im, ius, inm, ims, get, other) in cases {
            let c = Conditions {
                if_match: im,
                if_none_match: inm,
                if_modified_since: ims,
                if_unmodified_since: ius,
            };
            assert_eq!(evaluate(true, &c, &v()), get, "GET {c:?}");
            assert_eq!(evaluate(false, &c, &v()), other, "other {c:?}");
        }
    }

    #[test]
    fn weak_own_etag() {
        let v = Validators {
            etag: "W/\"gz-1\"",
            last_modified: lm(),
        };
        let strong = Conditions {
            if_match: Some("\"gz-1\""),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &strong, &v), Decision::PreconditionFailed);
        let inm = Conditions {
            if_none_match: Some("\"gz-1\""),
            ..Default::default()
        };
        assert_eq!(evaluate(true, &inm, &v), Decision::NotModified);
        assert!(!if_range_matches("W/\"gz-1\"", &v));
        assert!(!if_range_matches("\"gz-1\"", &v));
    }

    #[test]
    fn if_range() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            (ETAG, true),
            (" \"v1-1a2b-3c\" ", true),
            ("W/\"v1-1a2b-3c\"", false),
            ("\"other\"", false),
            ("\"v1-1a2b-3c\", \"x\"", false),
            ("\"v1-1a2b-3c\"x", false),
            ("\"v1-1a2b-3c", false),
            ("*", false),
            ("", false),
            ("garbage", false),
            (LM_STR, true),
            ("Sunday, 06-Nov-94 08:49:37 GMT", true),
            ("Sun Nov  6 08:49:37 1994", true),
            (BEFORE, false),
            (AFTER, false),
            ("Mon, 06 Nov 1994 08:49:37 GMT", false),
        ];
        for &(h, want) in cases {
            assert_eq!(if_range_matches(h, &v()), want, "{h:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(lm()), LM_STR);
        assert_eq!(
            parse_http_date(LM_STR),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT "),
            parse_http_date(LM_STR)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            parse_http_date(LM_STR)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            parse_http_date(LM_STR)
        );
        for bad in [
            "",
            "0",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
        // Clamped instead of panicking.
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(10)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1 << 40)),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        // Round trip at second precision.
        for secs in [0u64, 1, 86_399, 951_782_400, 1_700_000_000, 253_402_300_799] {
            let t = UNIX_EPOCH + Duration::new(secs, 999_999_999);
            assert_eq!(
                parse_http_date(&http_date(t)),
                Some(UNIX_EPOCH + Duration::from_secs(secs))
            );
        }
    }

    #[test]
    fn truncation() {
        let t = UNIX_EPOCH + Duration::new(5, 1);
        assert_eq!(truncate_to_second(t), UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(truncate_to_second(UNIX_EPOCH), UNIX_EPOCH);
        let pre = UNIX_EPOCH - Duration::new(5, 1);
        assert_eq!(truncate_to_second(pre), UNIX_EPOCH - Duration::from_secs(6));
        assert_eq!(
            truncate_to_second(UNIX_EPOCH - Duration::from_secs(5)),
            UNIX_EPOCH - Duration::from_secs(5)
        );
    }

    #[test]
    fn etags() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        let e = make_etag(1, 0x1a2b, t, 0x3c);
        assert_eq!(
            e,
            format!("\"1-1a2b-{:x}-3c\"", 1_700_000_000_000_000_123u128)
        );
        assert_eq!(e, make_etag(1, 0x1a2b, t, 0x3c), "deterministic");
        // Every input matters.
        assert_ne!(e, make_etag(2, 0x1a2b, t, 0x3c));
        assert_ne!(e, make_etag(1, 0x1a2c, t, 0x3c));
        assert_ne!(e, make_etag(1, 0x1a2b, t + Duration::from_nanos(1), 0x3c));
        assert_ne!(e, make_etag(1, 0x1a2b, t, 0x3d));
        assert_ne!(
            make_etag(1, 1, UNIX_EPOCH + Duration::from_secs(1), 1),
            make_etag(1, 1, UNIX_EPOCH - Duration::from_secs(1), 1)
        );
        // Strong, well-formed, usable with every comparison.
        for e in [
            e,
            make_etag(
                u32::MAX,
                u64::MAX,
                UNIX_EPOCH - Duration::from_secs(1),
                u64::MAX,
            ),
        ] {
            assert!(EntityTag::parse(&e).is_some_and(|t| !t.weak), "{e}");
            let v = Validators {
                etag: &e,
                last_modified: t,
            };
            assert!(etag_list_matches(&e, &e, false));
            assert!(if_range_matches(&e, &v));
            let c = Conditions {
                if_none_match: Some(&e),
                ..Default::default()
            };
            assert_eq!(evaluate(true, &c, &v), Decision::NotModified);
        }
    }
}
