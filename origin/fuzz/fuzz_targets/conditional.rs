//! Fuzzes `origin::conditional`: `evaluate`, `if_range_matches`, `etag_list_matches` and the
//! date helpers must never panic, and must keep a few invariants.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use origin::conditional::{self, Conditions, Decision, Validators};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    if_match: Option<&'a str>,
    if_none_match: Option<&'a str>,
    if_modified_since: Option<&'a str>,
    if_unmodified_since: Option<&'a str>,
    if_range: &'a str,
    /// Our own ETag: either made by `make_etag` or arbitrary.
    raw_etag: Option<&'a str>,
    secs: i64,
    nanos: u32,
    len: u64,
    ino: u64,
    is_get_or_head: bool,
}

fuzz_target!(|input: Input| {
    let off = Duration::new(
        input.secs.unsigned_abs() % 253_402_300_800,
        input.nanos % 1_000_000_000,
    );
    let mtime = if input.secs >= 0 {
        UNIX_EPOCH + off
    } else {
        UNIX_EPOCH - off
    };
    let made = conditional::make_etag(1, input.len, mtime, input.ino);
    let etag = input.raw_etag.unwrap_or(&made);
    let v = Validators {
        etag,
        last_modified: mtime,
    };
    let c = Conditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
        if_modified_since: input.if_modified_since,
        if_unmodified_since: input.if_unmodified_since,
    };

    let d = conditional::evaluate(input.is_get_or_head, &c, &v);
    if !input.is_get_or_head {
        assert_ne!(d, Decision::NotModified);
    }
    if c == Conditions::default() {
        assert_eq!(d, Decision::Proceed);
    }
    let _ = conditional::if_range_matches(input.if_range, &v);
    for h in [input.if_match, input.if_none_match, Some(input.if_range)]
        .into_iter()
        .flatten()
    {
        let strong = conditional::etag_list_matches(h, etag, false);
        let weak = conditional::etag_list_matches(h, etag, true);
        // A strong match is always a weak match.
        assert!(!strong || weak);
    }

    // Our own strong tag and date always validate.
    let own = Validators {
        etag: &made,
        last_modified: mtime,
    };
    assert!(conditional::if_range_matches(&made, &own));
    assert!(conditional::etag_list_matches(&made, &made, false));
    let date = conditional::http_date(mtime);
    if mtime >= UNIX_EPOCH {
        assert!(conditional::if_range_matches(&date, &own));
        let ims = Conditions {
            if_modified_since: Some(&date),
            ..Default::default()
        };
        assert_eq!(
            conditional::evaluate(true, &ims, &own),
            Decision::NotModified
        );
    }

    // Any date that parses survives a format/parse round trip.
    for s in [
        input.if_modified_since,
        input.if_unmodified_since,
        Some(input.if_range),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(t) = conditional::parse_http_date(s) {
            let again = conditional::parse_http_date(&conditional::http_date(t));
            assert_eq!(again, Some(t), "{s:?}");
        }
    }
    let _: Option<SystemTime> = conditional::parse_http_date(input.if_range);
});
