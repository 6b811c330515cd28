//! Byte-range requests (RFC 9110 §14): parsing and resolving a `Range` header against a
//! representation length, plus the framing of `multipart/byteranges` bodies.
//!
//! Everything here is pure (no I/O, no server types), so it is table-tested below and fuzzed in
//! `origin/fuzz`.
//!
//! # What the caller does first
//!
//! * `Range` only applies to `GET` (RFC 9110 §14.2: a server MUST ignore it for other methods);
//!   pass `None` for anything else. A request with several `Range` field lines is best passed as
//!   `None` as well (the field is not a list; its value is a single ranges-specifier).
//! * Evaluate the preconditions first ([`crate::conditional::evaluate`]); if the request also has
//!   `If-Range` and [`crate::conditional::if_range_matches`] is false, send the full
//!   representation (200) without calling [`evaluate`].
//!
//! # Accepted syntax
//!
//! ```text
//! Range      = OWS range-unit "=" range-set OWS          ; unit case-insensitive, only "bytes" used
//! range-set  = element *( OWS "," OWS element )
//! element    = "" / int-range / suffix-range              ; empty elements ignored (RFC 9110 §5.6.1.2)
//! int-range  = first-pos OWS "-" OWS [ last-pos ]
//! suffix-range = "-" OWS suffix-length
//! first-pos / last-pos / suffix-length = 1*DIGIT          ; must fit in u64
//! ```
//!
//! RFC 9110 allows no whitespace inside a range-spec; like nginx we accept spaces and tabs around
//! the `-` as well (`bytes=0 - 99`). A range-set needs at least one non-empty element.
//!
//! # Rules (the outcome of [`evaluate`])
//!
//! * No header, a header that does not match the syntax above (garbage, signs, overflowing
//!   numbers, `last-pos < first-pos` in *any* element, no element at all), a unit other than
//!   `bytes`, or more than [`MAX_RANGES`] non-empty elements → [`RangeOutcome::Full`]: the header
//!   is ignored and the whole representation is sent with 200, as RFC 9110 §14.2 permits for
//!   invalid headers. (nginx answers 416 to some syntax errors; we do not.)
//! * `a-b`: satisfiable iff `a < len`; `b >= len` is clamped to `len - 1`.
//! * `a-`: satisfiable iff `a < len`; runs to `len - 1`.
//! * `-n`: the last `n` bytes; satisfiable iff `n > 0` (and `len > 0`); `n >= len` selects the
//!   whole representation.
//! * Unsatisfiable elements are dropped; if at least one element is satisfiable the outcome is
//!   [`RangeOutcome::Partial`], otherwise [`RangeOutcome::Unsatisfiable`] (416 with
//!   `Content-Range: bytes */len`, see [`unsatisfied_range`]).
//! * `len == 0`: every range is unsatisfiable, including `-n` with `n > 0`. RFC 9110 §14.1.1
//!   calls that suffix range satisfiable, but no 206 can describe zero bytes (`Content-Range`
//!   needs `first <= last`), so we answer 416 `bytes */0`.
//!
//! # Coalescing rule
//!
//! The satisfiable ranges are sorted by start, and ranges that overlap or are adjacent
//! (`next.start <= cur.end + 1`) are merged into one (RFC 9110 §14.2 lets a server coalesce).
//! So a [`RangeOutcome::Partial`] list is strictly increasing, never repeats a byte and never
//! has two parts that touch; its total size is at most `len`. If one range remains after
//! merging, the response is a single-part 206 with `Content-Range` (see [`content_range`]);
//! with two or more it is `multipart/byteranges` (see [`multipart_content_type`],
//! [`multipart_part_header`], [`multipart_end`], [`multipart_length`]). This also defuses the
//! "many overlapping ranges" amplification attack without nginx's "sum exceeds length" check.

use std::fmt::Write as _;

/// At most this many non-empty range elements are honoured; a header with more is ignored
/// entirely ([`RangeOutcome::Full`]), like nginx's `max_ranges` (which we fix at 16). The count
/// is taken before satisfiability checks and coalescing, so parsing a hostile header stops early.
pub const MAX_RANGES: usize = 16;

/// An inclusive byte range, already resolved against the representation length:
/// `start <= end < len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    /// Offset of the first byte.
    pub start: u64,
    /// Offset of the last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range (`end - start + 1`, at least 1).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// What to send for a `GET` given its `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No Range header, a syntactically invalid one (ignored per RFC 9110 §14.2), a non-"bytes"
    /// unit, or more than [`MAX_RANGES`] ranges: send the whole representation (200).
    Full,
    /// One or more satisfiable ranges, sorted and coalesced per the module's rule (206;
    /// `multipart/byteranges` if more than one). Never empty.
    Partial(Vec<ByteRange>),
    /// Valid syntax but no range satisfiable for `len` (416 with `Content-Range: bytes */len`).
    Unsatisfiable,
}

/// One parsed, not yet resolved range element.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// `first-` or `first-last` (with `first <= last`).
    Int(u64, Option<u64>),
    /// `-n`.
    Suffix(u64),
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A tiny cursor over the header bytes.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// `1*DIGIT` as a u64; `None` if there is no digit or the value overflows.
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        (self.i > start).then_some(v)
    }

    /// One range element (without surrounding OWS); `None` on any syntax error.
    fn spec(&mut self) -> Option<Spec> {
        if self.eat(b'-') {
            self.skip_ows();
            return Some(Spec::Suffix(self.number()?));
        }
        let first = self.number()?;
        self.skip_ows();
        if !self.eat(b'-') {
            return None;
        }
        self.skip_ows();
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            let last = self.number()?;
            if last < first {
                return None;
            }
            Some(Spec::Int(first, Some(last)))
        } else {
            Some(Spec::Int(first, None))
        }
    }
}

/// Parses the range-set after `bytes=`; `None` means "ignore the header" (invalid syntax, no
/// element, or more than [`MAX_RANGES`] elements).
fn parse_set(set: &[u8]) -> Option<Vec<Spec>> {
    let mut c = Cursor { s: set, i: 0 };
    let mut specs = Vec::new();
    loop {
        c.skip_ows();
        match c.peek() {
            None => break,
            Some(b',') => {
                // Empty list element.
                c.i += 1;
                continue;
            }
            Some(_) => {}
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        specs.push(c.spec()?);
        c.skip_ows();
        match c.peek() {
            None => break,
            Some(b',') => c.i += 1,
            Some(_) => return None,
        }
    }
    (!specs.is_empty()).then_some(specs)
}

/// Resolves one element against `len`; `None` if it is unsatisfiable.
fn resolve(spec: Spec, len: u64) -> Option<ByteRange> {
    if len == 0 {
        return None;
    }
    match spec {
        Spec::Int(first, _) if first >= len => None,
        Spec::Int(first, last) => Some(ByteRange {
            start: first,
            end: last.map_or(len - 1, |l| l.min(len - 1)),
        }),
        Spec::Suffix(0) => None,
        Spec::Suffix(n) => Some(ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }),
    }
}

/// Sorts by start and merges overlapping or adjacent ranges.
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            // `cur.end < len <= u64::MAX`, so `cur.end + 1` cannot overflow.
            Some(cur) if r.start <= cur.end + 1 => cur.end = cur.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Evaluates a `Range` header value against a representation of `len` bytes, following the
/// rules in the [module documentation](self).
///
/// ```
/// use origin::range::{evaluate, ByteRange, RangeOutcome};
/// assert_eq!(evaluate(Some("bytes=0-99"), 1000), RangeOutcome::Partial(vec![ByteRange { start: 0, end: 99 }]));
/// assert_eq!(evaluate(Some("bytes=-10"), 1000), RangeOutcome::Partial(vec![ByteRange { start: 990, end: 999 }]));
/// assert_eq!(evaluate(Some("bytes=1000-"), 1000), RangeOutcome::Unsatisfiable);
/// assert_eq!(evaluate(Some("bytes=5-1"), 1000), RangeOutcome::Full);
/// ```
pub fn evaluate(range_header: Option<&str>, len: u64) -> RangeOutcome {
    let Some(value) = range_header else {
        return RangeOutcome::Full;
    };
    let value = value.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return RangeOutcome::Full;
    };
    let (unit, set) = (&value[..eq], &value[eq + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        // Another (or malformed) unit: not ours to interpret.
        return RangeOutcome::Full;
    }
    let Some(specs) = parse_set(set) else {
        return RangeOutcome::Full;
    };
    let ranges: Vec<ByteRange> = specs.into_iter().filter_map(|s| resolve(s, len)).collect();
    if ranges.is_empty() {
        RangeOutcome::Unsatisfiable
    } else {
        RangeOutcome::Partial(coalesce(ranges))
    }
}

/// `Content-Range` value for a 206 part: `bytes a-b/len`.
pub fn content_range(r: &ByteRange, len: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end, len)
}

/// `Content-Range` value for a 416: `bytes */len`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// A `multipart/byteranges` boundary derived from `seed` (pass a random u64): 32 lowercase hex
/// digits, deterministic for a given seed. Hex digits are valid boundary characters and cannot
/// be confused with the part headers.
pub fn multipart_boundary(seed: u64) -> String {
    // SplitMix64: two well-mixed words, so nearby seeds give unrelated boundaries.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let a = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let b = a.wrapping_add(0x9e37_79b9_7f4a_7c15);
    format!("{:016x}{:016x}", mix(a), mix(b))
}

/// `Content-Type` value of a multipart response: `multipart/byteranges; boundary=B`.
pub fn multipart_content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// The bytes that precede range `r` in a multipart body:
/// `"\r\n--B\r\nContent-Type: T\r\nContent-Range: bytes a-b/len\r\n\r\n"`.
///
/// The `Content-Type` line is left out when `content_type` is empty. `content_type` must be a
/// valid header value (no CR/LF); it comes from the server's own MIME table. The leading CRLF on
/// the first part is an empty preamble (as nginx sends), so every part header has the same form.
pub fn multipart_part_header(
    boundary: &str,
    content_type: &str,
    r: &ByteRange,
    len: u64,
) -> String {
    let mut s = String::with_capacity(64 + boundary.len() + content_type.len());
    s.push_str("\r\n--");
    s.push_str(boundary);
    s.push_str("\r\n");
    if !content_type.is_empty() {
        s.push_str("Content-Type: ");
        s.push_str(content_type);
        s.push_str("\r\n");
    }
    let _ = write!(
        s,
        "Content-Range: bytes {}-{}/{}\r\n\r\n",
        r.start, r.end, len
    );
    s
}

/// The closing delimiter of a multipart body: `"\r\n--B--\r\n"`.
pub fn multipart_end(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

/// Exact length of the multipart body made of, for each range, [`multipart_part_header`]
/// followed by the range's bytes, then [`multipart_end`]: use it as `Content-Length` so that
/// HEAD and GET agree. Saturates at `u64::MAX` (only reachable with ranges not produced by
/// [`evaluate`]).
pub fn multipart_length(boundary: &str, content_type: &str, ranges: &[ByteRange], len: u64) -> u64 {
    let parts = ranges.iter().fold(0u64, |acc, r| {
        let header = multipart_part_header(boundary, content_type, r, len).len() as u64;
        acc.saturating_add(header).saturating_add(r.len())
    });
    parts.saturating_add(multipart_end(boundary).len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn p(v: &[(u64, u64)]) -> RangeOutcome {
        RangeOutcome::Partial(v.iter().map(|&(s, e)| br(s, e)).collect())
    }

    use RangeOutcome::{Full, Unsatisfiable};

    #[test]
    fn table() {
        let max = u64::MAX;
        #[rustfmt::skip]
        let cases: &[(Option<&str>, u64, RangeOutcome)] = &[
            // No header / not bytes / malformed unit.
            (None, 100, Full),
            (None, 0, Full),
            (Some(""), 100, Full),
            (Some("   "), 100, Full),
            (Some("0-10"), 100, Full),
            (Some("items=0-10"), 100, Full),
            (Some("byte=0-10"), 100, Full),
            (Some("bytes 0-10"), 100, Full),
            (Some("bytes =0-10"), 100, Full),
            (Some("bytes:0-10"), 100, Full),
            (Some("bytesx=0-10"), 100, Full),
            (Some("=0-10"), 100, Full),
            // Unit is case-insensitive; outer whitespace is trimmed.
            (Some("bytes=0-10"), 100, p(&[(0, 10)])),
            (Some("BYTES=0-10"), 100, p(&[(0, 10)])),
            (Some("Bytes=0-10"), 100, p(&[(0, 10)])),
            (Some("  bytes=0-10 \t"), 100, p(&[(0, 10)])),
            // int-range.
            (Some("bytes=0-0"), 100, p(&[(0, 0)])),
            (Some("bytes=0-99"), 100, p(&[(0, 99)])),
            (Some("bytes=99-99"), 100, p(&[(99, 99)])),
            (Some("bytes=5-10"), 100, p(&[(5, 10)])),
            (Some("bytes=0010-0020"), 100, p(&[(10, 20)])),
            // last-pos past the end is clamped.
            (Some("bytes=0-100"), 100, p(&[(0, 99)])),
            (Some("bytes=50-1000000"), 100, p(&[(50, 99)])),
            (Some("bytes=0-18446744073709551615"), 100, p(&[(0, 99)])),
            // first-pos at/after the end: unsatisfiable.
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=100-200"), 100, Unsatisfiable),
            (Some("bytes=18446744073709551615-"), 100, Unsatisfiable),
            // open-ended.
            (Some("bytes=0-"), 100, p(&[(0, 99)])),
            (Some("bytes=99-"), 100, p(&[(99, 99)])),
            (Some("bytes=42-"), 100, p(&[(42, 99)])),
            // suffix-range.
            (Some("bytes=-1"), 100, p(&[(99, 99)])),
            (Some("bytes=-10"), 100, p(&[(90, 99)])),
            (Some("bytes=-100"), 100, p(&[(0, 99)])),
            (Some("bytes=-1000"), 100, p(&[(0, 99)])),
            (Some("bytes=-18446744073709551615"), 100, p(&[(0, 99)])),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=-000"), 100, Unsatisfiable),
            // last < first: invalid, whole header ignored (even next to valid ranges).
            (Some("bytes=5-4"), 100, Full),
            (Some("bytes=500-400"), 100, Full),
            (Some("bytes=0-10,5-4"), 100, Full),
            (Some("bytes=5-4,-0"), 100, Full),
            // Other syntax errors.
            (Some("bytes="), 100, Full),
            (Some("bytes= "), 100, Full),
            (Some("bytes=,"), 100, Full),
            (Some("bytes= , ,"), 100, Full),
            (Some("bytes=-"), 100, Full),
            (Some("bytes=--5"), 100, Full),
            (Some("bytes=a-b"), 100, Full),
            (Some("bytes=0-a"), 100, Full),
            (Some("bytes=0-10a"), 100, Full),
            (Some("bytes=+1-2"), 100, Full),
            (Some("bytes=1-+2"), 100, Full),
            (Some("bytes=1--2"), 100, Full),
            (Some("bytes=0-1-2"), 100, Full),
            (Some("bytes=0x10-0x20"), 100, Full),
            (Some("bytes=1 2-3"), 100, Full),
            (Some("bytes=0-1;2-3"), 100, Full),
            (Some("bytes=0-1 2-3"), 100, Full),
            (Some("bytes=0-10,x"), 100, Full),
            (Some("bytes=0-10\r\n"), 100, Full),
            (Some("bytes=\u{663}-5"), 100, Full), // non-ASCII digit
            (Some("bytes=0-10=5"), 100, Full),
            // Overflowing numbers are invalid, not clamped.
            (Some("bytes=0-18446744073709551616"), 100, Full),
            (Some("bytes=18446744073709551616-"), 100, Full),
            (Some("bytes=-18446744073709551616"), 100, Full),
            (Some("bytes=0-99999999999999999999999"), 100, Full),
            // Whitespace: OWS around commas and, like nginx, around '-'.
            (Some("bytes=0-1, 5-6"), 100, p(&[(0, 1), (5, 6)])),
            (Some("bytes=0-1 ,5-6"), 100, p(&[(0, 1), (5, 6)])),
            (Some("bytes= 0-1 ,\t 5-6 "), 100, p(&[(0, 1), (5, 6)])),
            (Some("bytes=0 - 1"), 100, p(&[(0, 1)])),
            (Some("bytes=- 5"), 100, p(&[(95, 99)])),
            (Some("bytes=5 -"), 100, p(&[(5, 99)])),
            // Empty list elements are ignored.
            (Some("bytes=0-1,,5-6"), 100, p(&[(0, 1), (5, 6)])),
            (Some("bytes=,0-1"), 100, p(&[(0, 1)])),
            (Some("bytes=0-1,"), 100, p(&[(0, 1)])),
            (Some("bytes= , 0-1 , ,"), 100, p(&[(0, 1)])),
            // Lists: unsatisfiable elements are dropped, the rest count.
            (Some("bytes=0-1,200-300"), 100, p(&[(0, 1)])),
            (Some("bytes=200-300,-0,-5"), 100, p(&[(95, 99)])),
            (Some("bytes=200-300,-0,100-"), 100, Unsatisfiable),
            // Coalescing: sorted, overlapping and adjacent merged.
            (Some("bytes=50-60,0-10"), 100, p(&[(0, 10), (50, 60)])),
            (Some("bytes=0-10,5-20"), 100, p(&[(0, 20)])),
            (Some("bytes=0-10,11-20"), 100, p(&[(0, 20)])),
            (Some("bytes=0-10,12-20"), 100, p(&[(0, 10), (12, 20)])),
            (Some("bytes=11-20,0-10"), 100, p(&[(0, 20)])),
            (Some("bytes=0-50,10-20"), 100, p(&[(0, 50)])),
            (Some("bytes=0-0,0-0,0-0"), 100, p(&[(0, 0)])),
            (Some("bytes=0-,-1"), 100, p(&[(0, 99)])),
            (Some("bytes=-10,0-89"), 100, p(&[(0, 99)])),
            (Some("bytes=-10,0-88"), 100, p(&[(0, 88), (90, 99)])),
            (Some("bytes=90-95,-5"), 100, p(&[(90, 99)])),
            (Some("bytes=1-1,3-3,5-5"), 100, p(&[(1, 1), (3, 3), (5, 5)])),
            (Some("bytes=5-5,3-3,1-1,2-2"), 100, p(&[(1, 3), (5, 5)])),
            // MAX_RANGES: 16 elements are fine, 17 are ignored; empty elements do not count.
            (Some("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30"), 100,
                p(&[(0, 0), (2, 2), (4, 4), (6, 6), (8, 8), (10, 10), (12, 12), (14, 14), (16, 16), (18, 18), (20, 20), (22, 22), (24, 24), (26, 26), (28, 28), (30, 30)])),
            (Some("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30,32-32"), 100, Full),
            (Some("bytes=0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0,0-0"), 100, Full),
            (Some("bytes=,,,,,,,,,,,,,,,,,,,,0-0,,,,,,,,,,,,,,,,,,,"), 100, p(&[(0, 0)])),
            // len == 0: nothing is satisfiable, not even a suffix.
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=0-0"), 0, Unsatisfiable),
            (Some("bytes=-1"), 0, Unsatisfiable),
            (Some("bytes=-0"), 0, Unsatisfiable),
            (Some("bytes=5-4"), 0, Full),
            (Some("bytes=x"), 0, Full),
            // len == 1.
            (Some("bytes=0-"), 1, p(&[(0, 0)])),
            (Some("bytes=-1"), 1, p(&[(0, 0)])),
            (Some("bytes=-2"), 1, p(&[(0, 0)])),
            (Some("bytes=1-"), 1, Unsatisfiable),
            // Huge representations.
            (Some("bytes=0-"), max, p(&[(0, max - 1)])),
            (Some("bytes=-1"), max, p(&[(max - 1, max - 1)])),
            (Some("bytes=18446744073709551614-"), max, p(&[(max - 1, max - 1)])),
            (Some("bytes=18446744073709551615-"), max, Unsatisfiable),
            (Some("bytes=0-5,6-18446744073709551615"), max, p(&[(0, max - 1)])),
        ];
        for (header, len, want) in cases {
            assert_eq!(
                &evaluate(*header, *len),
                want,
                "header {header:?} len {len}"
            );
        }
    }

    #[test]
    fn byte_range_len() {
        assert_eq!(br(0, 0).len(), 1);
        assert_eq!(br(5, 14).len(), 10);
        assert_eq!(br(0, u64::MAX - 1).len(), u64::MAX);
    }

    #[test]
    fn header_values() {
        assert_eq!(content_range(&br(0, 99), 1000), "bytes 0-99/1000");
        assert_eq!(content_range(&br(999, 999), 1000), "bytes 999-999/1000");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
        assert_eq!(unsatisfied_range(0), "bytes */0");
        assert_eq!(
            multipart_content_type("abc"),
            "multipart/byteranges; boundary=abc"
        );
    }

    #[test]
    fn boundary() {
        let b = multipart_boundary(0);
        assert_eq!(b.len(), 32);
        assert!(b
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(b, multipart_boundary(0), "deterministic");
        let mut seen = std::collections::HashSet::new();
        for seed in 0..1000u64 {
            assert!(seen.insert(multipart_boundary(seed)));
        }
        assert!(seen.insert(multipart_boundary(u64::MAX)));
    }

    #[test]
    fn multipart_framing() {
        assert_eq!(
            multipart_part_header("B", "video/mp2t", &br(0, 9), 100),
            "\r\n--B\r\nContent-Type: video/mp2t\r\nContent-Range: bytes 0-9/100\r\n\r\n"
        );
        assert_eq!(
            multipart_part_header("B", "", &br(0, 9), 100),
            "\r\n--B\r\nContent-Range: bytes 0-9/100\r\n\r\n"
        );
        assert_eq!(multipart_end("B"), "\r\n--B--\r\n");
        assert_eq!(
            multipart_length("B", "", &[], 100),
            "\r\n--B--\r\n".len() as u64
        );
    }

    /// Builds the body the way the server does and checks [`multipart_length`] against it.
    fn check_multipart(ranges: &[ByteRange], len: u64, content_type: &str, seed: u64) {
        let boundary = multipart_boundary(seed);
        let mut body: u128 = 0;
        let mut text = String::new();
        for r in ranges {
            let h = multipart_part_header(&boundary, content_type, r, len);
            body += h.len() as u128 + u128::from(r.len());
            text.push_str(&h);
        }
        text.push_str(&multipart_end(&boundary));
        body += multipart_end(&boundary).len() as u128;
        // Saturates only for representations within a few hundred bytes of 16 EiB.
        let want = u64::try_from(body).unwrap_or(u64::MAX);
        assert_eq!(
            multipart_length(&boundary, content_type, ranges, len),
            want,
            "{ranges:?}/{len}"
        );
        // The boundary delimiter appears exactly once per part, plus the close delimiter.
        assert_eq!(
            text.matches(&format!("\r\n--{boundary}")).count(),
            ranges.len() + 1
        );
    }

    #[test]
    fn multipart_length_matches_concatenation() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for (header, ct) in [
            ("bytes=0-9,20-29", "video/mp2t"),
            ("bytes=0-0,2-2,4-4,999-", "application/vnd.apple.mpegurl"),
            ("bytes=-1,0-0", ""),
            ("bytes=1-1,3-3,5-5,7-7,9-9,11-11,13-13,15-15,17-17,19-19,21-21,23-23,25-25,27-27,29-29,31-31", "video/iso.segment"),
        ] {
            let RangeOutcome::Partial(ranges) = evaluate(Some(header), data.len() as u64) else {
                panic!("{header}");
            };
            assert!(ranges.len() > 1, "{header}");
            check_multipart(&ranges, data.len() as u64, ct, 7);
            // Build the real body bytes too.
            let boundary = multipart_boundary(7);
            let mut body = Vec::new();
            for r in &ranges {
                body.extend_from_slice(multipart_part_header(&boundary, ct, r, 1000).as_bytes());
                body.extend_from_slice(&data[r.start as usize..=r.end as usize]);
            }
            body.extend_from_slice(multipart_end(&boundary).as_bytes());
            assert_eq!(body.len() as u64, multipart_length(&boundary, ct, &ranges, 1000));
        }
        // Digit counts that change across ranges and a huge length.
        let max = u64::MAX;
        check_multipart(
            &[br(0, 9), br(10_000, 99_999), br(max - 2, max - 2)],
            max,
            "video/mp4",
            1,
        );
    }

    /// Deterministic SplitMix64 stream for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<T: Copy>(&mut self, v: &[T]) -> T {
            v[self.below(v.len() as u64) as usize]
        }

        /// A length biased towards small and boundary values.
        fn len(&mut self) -> u64 {
            match self.below(6) {
                0 => 0,
                1 => self.below(4),
                2 => self.below(64),
                3 => self.below(100_000),
                4 => u64::MAX - self.below(3),
                _ => self.next(),
            }
        }

        /// A number near `len`, small, or huge.
        fn number(&mut self, len: u64) -> u64 {
            match self.below(5) {
                0 => self.below(8),
                1 => len.wrapping_add(self.below(5)).wrapping_sub(2),
                2 => self.below(len.max(1)),
                3 => u64::MAX - self.below(2),
                _ => self.next(),
            }
        }

        fn ows(&mut self) -> &'static str {
            self.pick(&["", "", "", " ", "\t", "  "])
        }
    }

    /// Checks the invariants every outcome must satisfy.
    fn check_invariants(header: &str, len: u64, out: &RangeOutcome) {
        if let RangeOutcome::Partial(ranges) = out {
            assert!(!ranges.is_empty(), "{header:?}");
            assert!(ranges.len() <= MAX_RANGES, "{header:?}");
            assert!(len > 0, "{header:?}");
            let mut total: u64 = 0;
            for (i, r) in ranges.iter().enumerate() {
                assert!(r.start <= r.end && r.end < len, "{header:?} {len} {r:?}");
                if i > 0 {
                    // Sorted, non-overlapping, non-adjacent.
                    assert!(
                        r.start > ranges[i - 1].end + 1,
                        "{header:?} {len} {ranges:?}"
                    );
                }
                total += r.len();
            }
            assert!(total <= len);
            check_multipart(ranges, len, "video/mp2t", len);
        }
    }

    /// Structured headers: the outcome must match a direct model of the rules.
    #[test]
    fn property_structured_against_model() {
        let mut rng = Rng(0x5eed);
        for _ in 0..20_000 {
            let len = rng.len();
            let n = rng.below(20) as usize;
            let mut header =
                String::from(rng.pick(&["bytes=", "bytes=", "BYTES=", "Bytes=", " bytes="]));
            let mut specs = 0usize;
            let mut invalid = false;
            let mut model: Vec<(u64, u64)> = Vec::new(); // satisfiable ranges, unmerged
            for i in 0..n {
                if i > 0 {
                    header.push_str(rng.ows());
                    header.push(',');
                }
                header.push_str(rng.ows());
                match rng.below(8) {
                    0 => {} // empty element
                    1 | 2 => {
                        let k = rng.number(len);
                        header.push_str(&format!("-{k}"));
                        specs += 1;
                        if k > 0 && len > 0 {
                            model.push((len.saturating_sub(k), len - 1));
                        }
                    }
                    3 | 4 => {
                        let a = rng.number(len);
                        header.push_str(&format!("{a}-"));
                        specs += 1;
                        if a < len {
                            model.push((a, len - 1));
                        }
                    }
                    _ => {
                        let a = rng.number(len);
                        let b = if rng.below(8) == 0 {
                            rng.number(len)
                        } else {
                            a.saturating_add(rng.number(len) % 1000)
                        };
                        header.push_str(&format!("{a}{}-{}{b}", rng.ows(), rng.ows()));
                        specs += 1;
                        if b < a {
                            invalid = true;
                        } else if a < len {
                            model.push((a, b.min(len - 1)));
                        }
                    }
                }
            }
            header.push_str(rng.ows());
            let want = if invalid || specs == 0 || specs > MAX_RANGES {
                Full
            } else if model.is_empty() {
                Unsatisfiable
            } else if len <= 4096 {
                // Bitmap model of the coalescing rule.
                let mut bits = vec![false; len as usize];
                for (s, e) in &model {
                    bits[*s as usize..=*e as usize]
                        .iter_mut()
                        .for_each(|b| *b = true);
                }
                let mut v = Vec::new();
                let mut i = 0;
                while i < bits.len() {
                    if bits[i] {
                        let s = i;
                        while i < bits.len() && bits[i] {
                            i += 1;
                        }
                        v.push(br(s as u64, i as u64 - 1));
                    } else {
                        i += 1;
                    }
                }
                RangeOutcome::Partial(v)
            } else {
                // Too big for a bitmap: check coverage endpoints instead.
                let out = evaluate(Some(&header), len);
                let RangeOutcome::Partial(ref v) = out else {
                    panic!("{header:?} {len} {out:?}")
                };
                for (s, e) in &model {
                    assert!(
                        v.iter().any(|r| r.start <= *s && *e <= r.end),
                        "{header:?} {len} {v:?}"
                    );
                }
                for r in v {
                    assert!(
                        model.iter().any(|(s, _)| *s == r.start),
                        "{header:?} {len} {v:?}"
                    );
                    assert!(
                        model.iter().any(|(_, e)| *e == r.end),
                        "{header:?} {len} {v:?}"
                    );
                }
                out
            };
            let got = evaluate(Some(&header), len);
            check_invariants(&header, len, &got);
            assert_eq!(got, want, "header {header:?} len {len}");
        }
    }

    /// Mutated headers: range-like elements with random tokens spliced in, so that most inputs
    /// are near misses of the grammar. Only the invariants are checked.
    #[test]
    fn property_random_headers_keep_invariants() {
        let tokens = [
            "bytes=",
            "BYTES=",
            "items=",
            "=",
            "-",
            ",",
            " ",
            "\t",
            "0",
            "00",
            "100",
            "4096",
            "18446744073709551615",
            "18446744073709551616",
            "x",
            ";",
            "\u{e9}",
            "\r\n",
            "*",
            "+",
        ];
        let mut rng = Rng(42);
        let (mut full, mut partial, mut unsat) = (0, 0, 0);
        for _ in 0..50_000 {
            let len = rng.len();
            let mut header = String::new();
            if rng.below(8) != 0 {
                header.push_str(rng.pick(&["bytes=", "Bytes=", " bytes="]));
            }
            for i in 0..rng.below(20) {
                let mut pieces: Vec<String> = Vec::new();
                if i > 0 {
                    pieces.push(format!("{},{}", rng.ows(), rng.ows()));
                }
                if rng.below(4) != 0 {
                    pieces.push(rng.number(len).to_string());
                }
                pieces.push(rng.ows().to_string());
                pieces.push("-".to_string());
                if rng.below(2) == 0 {
                    pieces.push(rng.number(len).to_string());
                }
                for piece in pieces {
                    match rng.below(40) {
                        0 => {} // drop
                        1 => header.push_str(rng.pick(&tokens)),
                        2 => {
                            header.push_str(&piece);
                            header.push_str(rng.pick(&tokens));
                        }
                        _ => header.push_str(&piece),
                    }
                }
            }
            let out = evaluate(Some(&header), len);
            check_invariants(&header, len, &out);
            match out {
                Full => full += 1,
                RangeOutcome::Partial(_) => partial += 1,
                Unsatisfiable => unsat += 1,
            }
        }
        // The generator must exercise every outcome.
        assert!(
            full > 1000 && partial > 1000 && unsat > 100,
            "{full} {partial} {unsat}"
        );
    }
}
