//! Fuzzes `origin::range::evaluate` with arbitrary headers and lengths and checks the
//! invariants the server relies on: ranges sorted, non-overlapping, non-adjacent, within the
//! representation, at most MAX_RANGES of them, and an exact `multipart_length`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use origin::range::{self, RangeOutcome, MAX_RANGES};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    header: &'a str,
    len: u64,
    /// Picks how `len` is shaped, so small lengths are common.
    len_shape: u8,
    /// Usually prefixes `bytes=`: the fuzzer rarely finds a case-insensitive unit on its own.
    add_unit: u8,
    seed: u64,
    content_type: &'a str,
}

fuzz_target!(|input: Input| {
    let len = match input.len_shape % 4 {
        0 => input.len % 16,
        1 => input.len % 100_000,
        2 => u64::MAX - input.len % 4,
        _ => input.len,
    };
    let header = if input.add_unit.is_multiple_of(8) {
        input.header.to_string()
    } else {
        format!("bytes={}", input.header)
    };
    let out = range::evaluate(Some(&header), len);
    let RangeOutcome::Partial(ranges) = out else {
        return;
    };
    assert!(!ranges.is_empty());
    assert!(ranges.len() <= MAX_RANGES);
    assert!(len > 0);
    let mut total: u128 = 0;
    for (i, r) in ranges.iter().enumerate() {
        assert!(r.start <= r.end && r.end < len, "{r:?} / {len}");
        assert_eq!(r.len(), r.end - r.start + 1);
        if i > 0 {
            assert!(r.start > ranges[i - 1].end + 1, "{ranges:?}");
        }
        total += u128::from(r.len());
        let cr = range::content_range(r, len);
        assert_eq!(cr, format!("bytes {}-{}/{}", r.start, r.end, len));
    }
    assert!(total <= u128::from(len));

    // multipart_length equals the length of the body the server would build. Header values
    // never contain CR/LF; keep the fuzzed content type printable ASCII.
    let ct: String = input
        .content_type
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    let boundary = range::multipart_boundary(input.seed);
    assert!(boundary.len() >= 20 && boundary.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut body: u128 = 0;
    for r in &ranges {
        let h = range::multipart_part_header(&boundary, &ct, r, len);
        assert!(h.starts_with(&format!("\r\n--{boundary}\r\n")) && h.ends_with("\r\n\r\n"));
        body += h.len() as u128 + u128::from(r.len());
    }
    body += range::multipart_end(&boundary).len() as u128;
    let want = u64::try_from(body).unwrap_or(u64::MAX);
    assert_eq!(range::multipart_length(&boundary, &ct, &ranges, len), want);
});
