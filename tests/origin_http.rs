//! HTTP conformance of `abr serve` against the real binary: Range (single, multipart,
//! coalescing, invalid, 416), If-Range, conditional requests (304/412), HEAD, MIME types,
//! Cache-Control, manifest compression, CORS, path traversal, signed URLs, rate limiting, the
//! slow-header timeout, metrics, request ids and the JSON access log, methods and health.
//!
//! Every body is compared with the bytes of the file on disk; every response's Content-Length
//! is checked against the bytes actually received.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::origin::{free_port, metric, parse_response, sample_root, Response, Server};

const SEG: &str = "sample/hls/720p/seg_00001.ts";
const MASTER: &str = "sample/hls/master.m3u8";
const MEDIA: &str = "sample/hls/720p/index.m3u8";
const MPD: &str = "sample/dash/manifest.mpd";
const INIT: &str = "sample/dash/720p/init.mp4";
const M4S: &str = "sample/dash/720p/seg_00001.m4s";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Request headers with owned values.
type Headers<'a> = Vec<(&'a str, String)>;

/// Bytes of a file of the shared sample ROOT.
fn disk(rel: &str) -> Vec<u8> {
    std::fs::read(sample_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `/rel`.
fn url(rel: &str) -> String {
    format!("/{rel}")
}

/// Sends one request (`Connection: close`) and returns the parsed response plus the raw bytes
/// that followed the head (for HEAD and 304 these must be none).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let r = parse_response(&raw, method == "HEAD")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {:?}", String::from_utf8_lossy(&raw)));
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (r, raw[end..].to_vec())
}

/// Sends a request and checks the framing: never chunked, and for responses with a body the
/// Content-Length equals the bytes received; HEAD, 204 and 304 carry no body bytes at all.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let (r, after_head) = exchange(addr, method, path, headers);
    assert!(
        r.header("transfer-encoding").is_none(),
        "{method} {path}: chunked response"
    );
    if method == "HEAD" || matches!(r.status, 204 | 304) {
        assert!(
            after_head.is_empty(),
            "{method} {path} ({}): {} body bytes sent",
            r.status,
            after_head.len()
        );
    } else {
        let cl: usize = r
            .header("content-length")
            .unwrap_or_else(|| panic!("{method} {path}: no Content-Length"))
            .parse()
            .unwrap();
        assert_eq!(cl, r.body.len(), "{method} {path}: Content-Length vs body");
    }
    r
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    send(addr, "GET", path, headers)
}

fn head(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    send(addr, "HEAD", path, headers)
}

fn hdr<'a>(r: &'a Response, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

/// Comma-separated header list, lowercased and trimmed.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

/// All values of a header joined into one list (Vary may be sent on several lines).
fn all_values(r: &Response, name: &str) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| list(v))
        .collect()
}

/// `bytes a-b/len` → (a, b, len).
fn parse_content_range(v: &str) -> (u64, u64, u64) {
    let rest = v
        .strip_prefix("bytes ")
        .unwrap_or_else(|| panic!("Content-Range {v:?}"));
    let (range, len) = rest.split_once('/').unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap(), len.parse().unwrap())
}

/// One part of a `multipart/byteranges` body.
#[derive(Debug)]
struct Part {
    headers: BTreeMap<String, String>,
    range: (u64, u64, u64),
    data: Vec<u8>,
}

/// Parses a `multipart/byteranges` response strictly: the boundary comes from Content-Type,
/// each part's length from its Content-Range, and nothing may follow the close delimiter.
fn parse_multipart(r: &Response) -> Vec<Part> {
    let ct = hdr(r, "content-type");
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("Content-Type {ct:?}"))
        .trim_matches('"')
        .to_string();
    assert!(!boundary.is_empty() && boundary.len() <= 70, "{boundary:?}");
    let body = &r.body[..];
    let delim = format!("--{boundary}");
    let mut i = 0;
    // Optional preamble: the origin sends an empty one (a lone CRLF).
    if body.starts_with(b"\r\n") {
        i = 2;
    }
    let mut parts = Vec::new();
    loop {
        assert!(
            body[i..].starts_with(delim.as_bytes()),
            "delimiter expected at {i}: {:?}",
            String::from_utf8_lossy(&body[i..(i + 80).min(body.len())])
        );
        i += delim.len();
        if body[i..].starts_with(b"--") {
            i += 2;
            assert_eq!(&body[i..], b"\r\n", "after the close delimiter");
            break;
        }
        assert!(body[i..].starts_with(b"\r\n"), "CRLF after delimiter");
        i += 2;
        let end = i + body[i..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of part headers");
        let text = std::str::from_utf8(&body[i..end]).expect("part headers are text");
        let headers: BTreeMap<String, String> = text
            .split("\r\n")
            .map(|l| {
                let (k, v) = l.split_once(':').expect("part header line");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        i = end + 4;
        let range = parse_content_range(headers.get("content-range").expect("part Content-Range"));
        let n = (range.1 - range.0 + 1) as usize;
        let data = body[i..i + n].to_vec();
        i += n;
        assert!(body[i..].starts_with(b"\r\n"), "CRLF after part data");
        i += 2;
        parts.push(Part {
            headers,
            range,
            data,
        });
    }
    parts
}

/// Headers that must agree between HEAD and GET (all but Date and X-Request-Id; the random
/// multipart boundary is masked).
fn comparable(r: &Response) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| k != "date" && k != "x-request-id")
        .map(|(k, v)| {
            let v = if k == "content-type" && v.starts_with("multipart/byteranges") {
                let b = v.rsplit('=').next().unwrap();
                assert_eq!(b.len(), 32, "boundary {v}");
                "multipart/byteranges; boundary=<B>".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    v.sort();
    v
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A private copy of the sample ROOT (for tests that add files): `(tempdir, tempdir/root)`.
fn private_root() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix("abr-origin-http-")
        .tempdir()
        .unwrap();
    let root = t.path().join("root");
    copy_dir(&sample_root(), &root);
    (t, root)
}

fn metrics_text(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics", &[]);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

/// Polls the server log until a JSON access line with `request_id == id` appears.
fn access_line(s: &Server, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&s.log).unwrap_or_default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if v["request_id"] == id {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {id} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a filter command with `input` on stdin and returns its stdout.
fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut c = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} is needed by this test: {e}"));
    let mut stdin = c.stdin.take().unwrap();
    let input = input.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&input));
    let o = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn gunzip(z: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-dc"], z)
}

fn unbrotli(z: &[u8]) -> Vec<u8> {
    pipe(
        "node",
        &[
            "-e",
            "process.stdout.write(require('zlib').brotliDecompressSync(require('fs').readFileSync(0)))",
        ],
        z,
    )
}

fn date_plus(date: &str, secs: i64) -> String {
    let t = origin::conditional::parse_http_date(date).expect("valid HTTP-date");
    let t = if secs >= 0 {
        t + Duration::from_secs(secs as u64)
    } else {
        t - Duration::from_secs((-secs) as u64)
    };
    origin::conditional::http_date(t)
}

// ---------------------------------------------------------------------------------------------
// Range
// ---------------------------------------------------------------------------------------------

#[test]
fn range_single_forms() {
    let s = Server::start(&sample_root(), &[]);
    for rel in [SEG, MASTER, M4S] {
        let file = disk(rel);
        let len = file.len() as u64;
        assert!(len > 200, "{rel} too small for this test");
        let full = get(s.addr, &url(rel), &[]);
        assert_eq!(full.status, 200, "{rel}");
        assert_eq!(full.body, file, "{rel}");
        assert_eq!(hdr(&full, "accept-ranges"), "bytes");
        assert!(full.header("content-range").is_none());

        let cases: Vec<(String, u64, u64)> = vec![
            ("bytes=0-99".into(), 0, 99),
            ("bytes=0-0".into(), 0, 0),
            ("bytes=100-199".into(), 100, 199),
            (format!("bytes={}-{}", len - 1, len - 1), len - 1, len - 1),
            ("bytes=100-".into(), 100, len - 1),
            ("bytes=-150".into(), len - 150, len - 1),
            ("bytes=-1".into(), len - 1, len - 1),
            // last-pos past the end is clamped.
            (
                format!("bytes={}-{}", len - 10, len + 1000),
                len - 10,
                len - 1,
            ),
            (format!("bytes=50-{}", u64::MAX), 50, len - 1),
            // A suffix longer than the file selects all of it (still 206).
            (format!("bytes=-{}", len + 100), 0, len - 1),
            ("bytes=0-".into(), 0, len - 1),
            // Case-insensitive unit, optional whitespace.
            ("BYTES=10-19".into(), 10, 19),
            (" bytes=10-19 ".into(), 10, 19),
        ];
        for (range, a, b) in cases {
            let r = get(s.addr, &url(rel), &[("Range", &range)]);
            assert_eq!(r.status, 206, "{rel} {range}");
            assert_eq!(
                hdr(&r, "content-range"),
                format!("bytes {a}-{b}/{len}"),
                "{rel} {range}"
            );
            assert_eq!(r.body, file[a as usize..=b as usize], "{rel} {range}");
            assert_eq!(hdr(&r, "accept-ranges"), "bytes");
            assert!(
                !hdr(&r, "content-type").starts_with("multipart"),
                "{rel} {range}"
            );
            assert!(r.header("content-encoding").is_none());
        }
    }
}

#[test]
fn range_multipart_and_coalescing() {
    let s = Server::start(&sample_root(), &[]);
    let file = disk(SEG);
    let len = file.len() as u64;
    // (header, expected parts after sorting and coalescing per origin/src/range.rs: ranges that
    // overlap or touch — next.start <= cur.end + 1 — are merged).
    let cases: Vec<(String, Vec<(u64, u64)>)> = vec![
        ("bytes=0-9,20-29".into(), vec![(0, 9), (20, 29)]),
        ("bytes=0-0,2-2,4-4".into(), vec![(0, 0), (2, 2), (4, 4)]),
        // Unsorted input comes out sorted.
        ("bytes=100-199,0-9".into(), vec![(0, 9), (100, 199)]),
        // Overlap merges.
        ("bytes=0-9,5-20,100-199".into(), vec![(0, 20), (100, 199)]),
        ("bytes=0-50,10-20,300-310".into(), vec![(0, 50), (300, 310)]),
        // Suffix and prefix.
        ("bytes=-10,0-0".into(), vec![(0, 0), (len - 10, len - 1)]),
        (
            format!("bytes=0-1,{}-", len - 5),
            vec![(0, 1), (len - 5, len - 1)],
        ),
        // Adjacent ranges merge; an unsatisfiable element is dropped.
        (
            format!("bytes=0-9,10-19,1000-1009,{len}-"),
            vec![(0, 19), (1000, 1009)],
        ),
        // Empty list elements are ignored; whitespace around elements is fine.
        ("bytes=0-4, ,10-14".into(), vec![(0, 4), (10, 14)]),
        ("bytes=0-4 , 10-14".into(), vec![(0, 4), (10, 14)]),
        // Exactly 16 ranges (the maximum honoured).
        (
            format!(
                "bytes={}",
                (0..16)
                    .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            (0..16).map(|i| (i * 10, i * 10 + 1)).collect(),
        ),
    ];
    for (range, want) in &cases {
        let r = get(s.addr, &url(SEG), &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        assert!(r.header("content-range").is_none(), "{range}");
        assert_eq!(hdr(&r, "accept-ranges"), "bytes");
        let parts = parse_multipart(&r);
        assert_eq!(parts.len(), want.len(), "{range}: {parts:?}");
        for (p, &(a, b)) in parts.iter().zip(want) {
            assert_eq!(p.range, (a, b, len), "{range}");
            assert_eq!(
                p.headers.get("content-type").map(String::as_str),
                Some("video/mp2t"),
                "{range}"
            );
            assert_eq!(p.data, file[a as usize..=b as usize], "{range}");
        }
    }
    // Ranges that coalesce into one give a single-part 206, not multipart.
    for (range, a, b) in [
        ("bytes=0-9,10-19".to_string(), 0, 19),
        ("bytes=0-0,1-1,2-2".into(), 0, 2),
        ("bytes=5-9,0-4".into(), 0, 9),
        ("bytes=0-99,50-149,0-".into(), 0, len - 1),
        ("bytes=10-19,12-15".into(), 10, 19),
        (format!("bytes=0-9,{len}-"), 0, 9),
    ] {
        let r = get(s.addr, &url(SEG), &[("Range", &range)]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(hdr(&r, "content-type"), "video/mp2t", "{range}");
        assert_eq!(
            hdr(&r, "content-range"),
            format!("bytes {a}-{b}/{len}"),
            "{range}"
        );
        assert_eq!(r.body, file[a as usize..=b as usize], "{range}");
    }
    // Multipart on a manifest labels its parts with the manifest type.
    let m = disk(MASTER);
    let r = get(s.addr, &url(MASTER), &[("Range", "bytes=0-6,10-12")]);
    assert_eq!(r.status, 206);
    let parts = parse_multipart(&r);
    assert_eq!(parts.len(), 2);
    for p in &parts {
        assert_eq!(p.headers["content-type"], "application/vnd.apple.mpegurl");
        assert_eq!(p.data, m[p.range.0 as usize..=p.range.1 as usize]);
    }
    // Two multipart responses use different boundaries.
    let r2 = get(s.addr, &url(MASTER), &[("Range", "bytes=0-6,10-12")]);
    assert_ne!(hdr(&r, "content-type"), hdr(&r2, "content-type"));
}

#[test]
fn range_invalid_is_full_and_unsatisfiable_is_416() {
    let s = Server::start(&sample_root(), &[]);
    let file = disk(SEG);
    let len = file.len() as u64;
    let seventeen = format!(
        "bytes={}",
        (0..17)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect::<Vec<_>>()
            .join(",")
    );
    // Syntactically invalid (or not "bytes") → the header is ignored: 200 with everything.
    for range in [
        "bytes=5-1",
        "bytes=0-9,5-1",
        "bytes=abc",
        "bytes=",
        "bytes=,",
        "bytes=--5",
        "bytes=1-2-3",
        "bytes=0-5;x",
        "bytes=+1-2",
        "bytes=0x10-0x20",
        "bytes=18446744073709551616-",
        "bytes 0-5",
        "items=0-5",
        "0-5",
        "=0-5",
        seventeen.as_str(),
    ] {
        let r = get(s.addr, &url(SEG), &[("Range", range)]);
        assert_eq!(r.status, 200, "{range:?}");
        assert!(r.header("content-range").is_none(), "{range:?}");
        assert_eq!(hdr(&r, "content-type"), "video/mp2t");
        assert_eq!(r.body, file, "{range:?}");
    }
    // Valid syntax, nothing satisfiable → 416 with `bytes */LEN`.
    for range in [
        format!("bytes={len}-"),
        format!("bytes={len}-{}", len + 10),
        format!("bytes={}-", len + 1_000_000),
        "bytes=-0".to_string(),
        format!("bytes={len}-,-0,{}-{}", len + 5, len + 6),
        format!("bytes={}-", u64::MAX),
    ] {
        let r = get(s.addr, &url(SEG), &[("Range", &range)]);
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(
            hdr(&r, "content-range"),
            format!("bytes */{len}"),
            "{range}"
        );
        assert_eq!(hdr(&r, "content-length"), "0", "{range}");
        assert!(r.body.is_empty());
        assert_eq!(hdr(&r, "accept-ranges"), "bytes");
    }
}

#[test]
fn if_range_match_and_mismatch() {
    let s = Server::start(&sample_root(), &[]);
    let file = disk(SEG);
    let full = get(s.addr, &url(SEG), &[]);
    let etag = hdr(&full, "etag").to_string();
    let lm = hdr(&full, "last-modified").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "strong ETag: {etag}"
    );
    // An ETag of an older version: same shape, different opaque part.
    let old = format!("\"{}0\"", etag.trim_matches('"'));
    let weak = format!("W/{etag}");
    let range = ("Range", "bytes=0-99");
    for (if_range, partial) in [
        (etag.clone(), true),
        (format!(" {etag} "), true),
        (lm.clone(), true),
        (old, false),
        (weak, false),
        ("\"\"".to_string(), false),
        (date_plus(&lm, -1), false),
        (date_plus(&lm, 1), false),
        (date_plus(&lm, 86_400), false),
        ("not a validator".to_string(), false),
        (format!("{etag}, {etag}"), false),
    ] {
        let r = get(s.addr, &url(SEG), &[range, ("If-Range", &if_range)]);
        if partial {
            assert_eq!(r.status, 206, "If-Range {if_range}");
            assert_eq!(
                hdr(&r, "content-range"),
                format!("bytes 0-99/{}", file.len())
            );
            assert_eq!(r.body, file[..100], "If-Range {if_range}");
        } else {
            assert_eq!(r.status, 200, "If-Range {if_range}");
            assert!(r.header("content-range").is_none());
            assert_eq!(r.body, file, "If-Range {if_range}");
        }
        assert_eq!(hdr(&r, "etag"), etag);
    }
    // If-Range also gates multipart ranges.
    let r = get(
        s.addr,
        &url(SEG),
        &[("Range", "bytes=0-1,10-11"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, file);
}

// ---------------------------------------------------------------------------------------------
// Conditional requests
// ---------------------------------------------------------------------------------------------

#[test]
fn conditional_requests_304_and_412() {
    let s = Server::start(&sample_root(), &[]);
    for rel in [SEG, MEDIA] {
        let file = disk(rel);
        let full = get(s.addr, &url(rel), &[]);
        assert_eq!(full.status, 200);
        let etag = hdr(&full, "etag").to_string();
        let lm = hdr(&full, "last-modified").to_string();
        let cc = hdr(&full, "cache-control").to_string();
        let not_modified: Headers = vec![
            ("If-None-Match", etag.clone()),
            ("If-None-Match", format!("\"nope\", {etag}")),
            ("If-None-Match", format!("\"a\",\"b\" , {etag} ,\"c\"")),
            ("If-None-Match", "*".into()),
            // If-None-Match uses the weak comparison.
            ("If-None-Match", format!("W/{etag}")),
            ("If-Modified-Since", lm.clone()),
            ("If-Modified-Since", date_plus(&lm, 3600)),
        ];
        for (name, value) in &not_modified {
            let r = get(s.addr, &url(rel), &[(name, value)]);
            assert_eq!(r.status, 304, "{rel} {name}: {value}");
            assert_eq!(hdr(&r, "etag"), etag, "{rel} {name}: {value}");
            assert_eq!(hdr(&r, "last-modified"), lm);
            assert_eq!(hdr(&r, "cache-control"), cc);
            assert!(r.body.is_empty());
            // A 304 also wins over a Range.
            let r = get(s.addr, &url(rel), &[(name, value), ("Range", "bytes=0-9")]);
            assert_eq!(r.status, 304, "{rel} {name}: {value} + Range");
        }
        let proceed: Vec<Headers> = vec![
            vec![("If-None-Match", "\"nope\"".into())],
            vec![("If-None-Match", etag.trim_matches('"').to_string())], // unquoted: malformed
            vec![("If-Modified-Since", date_plus(&lm, -1))],
            vec![("If-Modified-Since", "yesterday".into())], // invalid date: ignored
            // If-None-Match takes precedence over If-Modified-Since.
            vec![
                ("If-None-Match", "\"nope\"".into()),
                ("If-Modified-Since", lm.clone()),
            ],
            vec![("If-Match", etag.clone())],
            vec![("If-Match", format!("\"x\", {etag}"))],
            vec![("If-Match", "*".into())],
            vec![("If-Unmodified-Since", lm.clone())],
            vec![("If-Unmodified-Since", date_plus(&lm, 60))],
            vec![("If-Unmodified-Since", "garbage".into())],
        ];
        for hs in &proceed {
            let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = get(s.addr, &url(rel), &h);
            assert_eq!(r.status, 200, "{rel} {hs:?}");
            assert_eq!(r.body, file, "{rel} {hs:?}");
        }
        let failed: Vec<Headers> = vec![
            vec![("If-Match", "\"other\"".into())],
            // If-Match uses the strong comparison.
            vec![("If-Match", format!("W/{etag}"))],
            vec![("If-Unmodified-Since", date_plus(&lm, -1))],
            vec![(
                "If-Unmodified-Since",
                "Sun, 06 Nov 1994 08:49:37 GMT".into(),
            )],
            // Preconditions are evaluated before Range and before If-None-Match.
            vec![
                ("If-Match", "\"other\"".into()),
                ("Range", "bytes=0-9".into()),
            ],
            vec![
                ("If-Match", "\"other\"".into()),
                ("If-None-Match", etag.clone()),
            ],
        ];
        for hs in &failed {
            let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = get(s.addr, &url(rel), &h);
            assert_eq!(r.status, 412, "{rel} {hs:?}");
            assert!(!r.body.starts_with(&file[..16]), "{rel} {hs:?}");
        }
    }
}

#[test]
fn head_equals_get_minus_body() {
    let s = Server::start(&sample_root(), &[]);
    let full = get(s.addr, &url(SEG), &[]);
    let etag = hdr(&full, "etag").to_string();
    let len = disk(SEG).len();
    let cases: Vec<(&str, Headers, u16)> = vec![
        (SEG, vec![], 200),
        (SEG, vec![("Range", "bytes=0-99".into())], 206),
        (SEG, vec![("Range", "bytes=0-9,100-199,-5".into())], 206),
        (SEG, vec![("Range", format!("bytes={len}-"))], 416),
        (SEG, vec![("If-None-Match", etag.clone())], 304),
        (SEG, vec![("If-Match", "\"x\"".into())], 412),
        (MASTER, vec![], 200),
        (MASTER, vec![("Accept-Encoding", "gzip".into())], 200),
        (MPD, vec![("Accept-Encoding", "br".into())], 200),
        (INIT, vec![("Origin", "http://a.example".into())], 200),
        ("sample/hls/720p/seg_99999.ts", vec![], 404),
    ];
    for (rel, hs, status) in &cases {
        let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let g = get(s.addr, &url(rel), &h);
        let hd = head(s.addr, &url(rel), &h);
        assert_eq!(g.status, *status, "GET {rel} {hs:?}");
        assert_eq!(hd.status, *status, "HEAD {rel} {hs:?}");
        assert_eq!(comparable(&hd), comparable(&g), "{rel} {hs:?}");
        if *status == 206 && hs[0].1.contains(',') {
            assert!(hdr(&hd, "content-type").starts_with("multipart/byteranges"));
        }
    }
    // On a kept-alive connection a HEAD response is followed directly by the next response.
    let seg = disk(SEG);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    for (range, want) in [("", 200), ("Range: bytes=0-9,20-29\r\n", 206)] {
        let req = format!("HEAD /{SEG} HTTP/1.1\r\nHost: x\r\n{range}\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed after HEAD");
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let h = parse_response(&buf[..end], true).unwrap();
        assert_eq!(h.status, want);
        assert!(hdr(&h, "content-length").parse::<usize>().unwrap() > 0);
        assert_eq!(buf.len(), end, "bytes after a HEAD response head");
        buf.clear();
    }
    c.write_all(format!("GET /{SEG} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    c.read_to_end(&mut buf).unwrap();
    let g = parse_response(&buf, false).unwrap();
    assert_eq!(g.status, 200);
    assert_eq!(g.body, seg);
}

// ---------------------------------------------------------------------------------------------
// MIME types, unservable files, Cache-Control
// ---------------------------------------------------------------------------------------------

#[test]
fn mime_types_and_unservable_files() {
    let (t, root) = private_root();
    // Files that exist but are not package files.
    let secret = b"NOT-A-PACKAGE-FILE-0b5e";
    for rel in [
        "sample/notes.txt",
        "sample/hls/page.html",
        "sample/hls/README",
        "sample/hls/720p/seg_00001.TS",
        "sample/hls/720p/seg_00001.ts.bak",
        "sample/dash/720p/seg.m4s~",
        "sample/hls/720p/index.m3u",
        "sample/hls/720p/x.js",
    ] {
        std::fs::write(root.join(rel), secret).unwrap();
    }
    // A directory with a servable extension.
    std::fs::create_dir_all(root.join("sample/hls/dir.ts")).unwrap();
    std::fs::create_dir_all(root.join("sample/hls/dir.m3u8")).unwrap();
    let s = Server::start(&root, &[]);
    let disk_at = |rel: &str| std::fs::read(root.join(rel)).unwrap();
    for (rel, mime) in [
        (MASTER, "application/vnd.apple.mpegurl"),
        (MEDIA, "application/vnd.apple.mpegurl"),
        (MPD, "application/dash+xml"),
        (SEG, "video/mp2t"),
        ("sample/hls/240p/seg_00004.ts", "video/mp2t"),
        (M4S, "video/iso.segment"),
        ("sample/dash/audio_96k/seg_00001.m4s", "video/iso.segment"),
        (INIT, "video/mp4"),
        ("sample/dash/audio_96k/init.mp4", "video/mp4"),
    ] {
        let r = get(s.addr, &url(rel), &[]);
        assert_eq!(r.status, 200, "{rel}");
        assert_eq!(hdr(&r, "content-type"), mime, "{rel}");
        assert_eq!(r.body, disk_at(rel), "{rel}");
        assert!(r.header("content-disposition").is_none());
    }
    for path in [
        "/sample/notes.txt",
        "/sample/hls/page.html",
        "/sample/hls/README",
        "/sample/hls/720p/seg_00001.TS",
        "/sample/hls/720p/seg_00001.ts.bak",
        "/sample/dash/720p/seg.m4s~",
        "/sample/hls/720p/index.m3u",
        "/sample/hls/720p/x.js",
        "/sample/hls/dir.ts",
        "/sample/hls/dir.m3u8",
        // Directories: no listings.
        "/",
        "/sample",
        "/sample/",
        "/sample/hls",
        "/sample/hls/",
        "/sample/hls/720p",
        "/sample/hls/720p/",
        "/sample/dash/720p/",
        // Missing files.
        "/sample/hls/720p/seg_99999.ts",
        "/nosuch/hls/master.m3u8",
        "/master.m3u8",
    ] {
        let r = get(s.addr, path, &[]);
        assert_eq!(r.status, 404, "{path}");
        let body = String::from_utf8_lossy(&r.body);
        for needle in ["NOT-A-PACKAGE", "seg_0", "index.m3u8", "init.mp4", "720p"] {
            assert!(!body.contains(needle), "{path}: body {body:?}");
        }
        assert!(
            !hdr(&r, "content-type").starts_with("video/")
                && !hdr(&r, "content-type").contains("mpegurl")
        );
    }
    drop(t);
}

#[test]
fn cache_control_for_segments_and_manifests() {
    let s = Server::start(&sample_root(), &[]);
    let immutable = |cc: &str| {
        let l = list(cc);
        assert!(l.contains(&"immutable".to_string()), "{cc}");
        assert!(l.contains(&"public".to_string()), "{cc}");
        let age: u64 = l
            .iter()
            .find_map(|d| d.strip_prefix("max-age="))
            .unwrap_or_else(|| panic!("{cc}"))
            .parse()
            .unwrap();
        assert!(age >= 86_400 * 30, "{cc}");
    };
    for rel in [SEG, M4S, INIT] {
        immutable(hdr(&get(s.addr, &url(rel), &[]), "cache-control"));
        immutable(hdr(
            &get(s.addr, &url(rel), &[("Range", "bytes=0-1")]),
            "cache-control",
        ));
    }
    let stale = "stale-while-revalidate=30, stale-if-error=86400";
    for rel in [MASTER, MEDIA, MPD] {
        let r = get(s.addr, &url(rel), &[]);
        assert_eq!(
            hdr(&r, "cache-control"),
            format!("public, max-age=10, {stale}"),
            "{rel}"
        );
        assert_eq!(
            hdr(&r, "cdn-cache-control"),
            format!("max-age=60, {stale}"),
            "{rel}"
        );
        assert!(hdr(&r, "last-modified").ends_with(" GMT"));
    }
    assert!(get(s.addr, &url(SEG), &[])
        .header("cdn-cache-control")
        .is_none());
    let s5 = Server::start(&sample_root(), &["--manifest-max-age", "5"]);
    for rel in [MASTER, MEDIA, MPD] {
        let want = format!("public, max-age=5, {stale}");
        let r = get(s5.addr, &url(rel), &[]);
        assert_eq!(hdr(&r, "cache-control"), want, "{rel}");
        let r = get(s5.addr, &url(rel), &[("Accept-Encoding", "gzip")]);
        assert_eq!(hdr(&r, "cache-control"), want, "{rel}");
        // A 304 carries the same directives.
        let etag = hdr(&r, "etag").to_string();
        let r = get(
            s5.addr,
            &url(rel),
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
        );
        assert_eq!(r.status, 304, "{rel}");
        assert_eq!(hdr(&r, "cache-control"), want, "{rel}");
        assert_eq!(hdr(&r, "cdn-cache-control"), format!("max-age=60, {stale}"));
    }
    // Segments are unaffected by the manifest setting.
    immutable(hdr(&get(s5.addr, &url(SEG), &[]), "cache-control"));
    // The stale windows and CDN-Cache-Control are flags too; 0 leaves a directive out.
    let sw = Server::start(
        &sample_root(),
        &[
            "--manifest-stale-while-revalidate",
            "0",
            "--manifest-stale-if-error",
            "7",
            "--manifest-cdn-max-age",
            "0",
            "--segment-stale-while-revalidate",
            "3",
            "--segment-stale-if-error",
            "0",
        ],
    );
    let r = get(sw.addr, &url(MASTER), &[]);
    assert_eq!(
        hdr(&r, "cache-control"),
        "public, max-age=10, stale-if-error=7"
    );
    assert!(r.header("cdn-cache-control").is_none());
    let r = get(sw.addr, &url(SEG), &[]);
    assert_eq!(
        hdr(&r, "cache-control"),
        "public, max-age=31536000, immutable, stale-while-revalidate=3"
    );
}

// ---------------------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------------------

#[test]
fn manifest_compression() {
    let s = Server::start(&sample_root(), &[]);
    for rel in [MASTER, MEDIA, MPD] {
        let file = disk(rel);
        let plain = get(s.addr, &url(rel), &[]);
        assert!(plain.header("content-encoding").is_none());
        assert_eq!(plain.body, file);
        assert!(all_values(&plain, "vary").contains(&"accept-encoding".into()));
        let id_etag = hdr(&plain, "etag").to_string();

        let gz = get(s.addr, &url(rel), &[("Accept-Encoding", "gzip")]);
        assert_eq!(gz.status, 200);
        assert_eq!(hdr(&gz, "content-encoding"), "gzip", "{rel}");
        assert!(all_values(&gz, "vary").contains(&"accept-encoding".into()));
        assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "gzip magic");
        assert_eq!(gunzip(&gz.body), file, "{rel} gzip");
        let gz_etag = hdr(&gz, "etag").to_string();
        assert_ne!(gz_etag, id_etag);
        assert_eq!(hdr(&gz, "content-type"), hdr(&plain, "content-type"));

        let br = get(s.addr, &url(rel), &[("Accept-Encoding", "br")]);
        assert_eq!(hdr(&br, "content-encoding"), "br", "{rel}");
        assert!(all_values(&br, "vary").contains(&"accept-encoding".into()));
        assert_ne!(br.body, file);
        assert_eq!(unbrotli(&br.body), file, "{rel} br");
        let br_etag = hdr(&br, "etag").to_string();
        assert!(br_etag != id_etag && br_etag != gz_etag);

        // Browsers' usual header picks brotli; q=0 refuses a coding; identity gets identity.
        let r = get(
            s.addr,
            &url(rel),
            &[("Accept-Encoding", "gzip, deflate, br")],
        );
        assert_eq!(hdr(&r, "content-encoding"), "br");
        let r = get(s.addr, &url(rel), &[("Accept-Encoding", "br;q=0, gzip")]);
        assert_eq!(hdr(&r, "content-encoding"), "gzip");
        let r = get(s.addr, &url(rel), &[("Accept-Encoding", "identity")]);
        assert!(r.header("content-encoding").is_none());
        assert_eq!(r.body, file);

        // Each variant revalidates against its own ETag.
        let r = get(
            s.addr,
            &url(rel),
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &gz_etag)],
        );
        assert_eq!(r.status, 304);
        assert_eq!(hdr(&r, "etag"), gz_etag);
        let r = get(
            s.addr,
            &url(rel),
            &[("Accept-Encoding", "gzip"), ("If-None-Match", &id_etag)],
        );
        assert_eq!(r.status, 200);
        assert_eq!(gunzip(&r.body), file);

        // 206 responses are never compressed.
        let r = get(
            s.addr,
            &url(rel),
            &[("Accept-Encoding", "gzip, br"), ("Range", "bytes=0-9")],
        );
        assert_eq!(r.status, 206);
        assert!(r.header("content-encoding").is_none(), "{rel} 206");
        assert_eq!(r.body, file[..10]);
        let r = get(
            s.addr,
            &url(rel),
            &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-1,5-6")],
        );
        assert_eq!(r.status, 206);
        assert!(r.header("content-encoding").is_none());
        for p in parse_multipart(&r) {
            assert_eq!(p.data, file[p.range.0 as usize..=p.range.1 as usize]);
        }
    }
    // Segments and init files are never compressed.
    for rel in [SEG, M4S, INIT] {
        let file = disk(rel);
        for ae in ["gzip", "br", "gzip, deflate, br", "*"] {
            let r = get(s.addr, &url(rel), &[("Accept-Encoding", ae)]);
            assert_eq!(r.status, 200);
            assert!(r.header("content-encoding").is_none(), "{rel} {ae}");
            assert_eq!(r.body, file, "{rel} {ae}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

fn preflight(addr: SocketAddr, rel: &str, origin: &str, method: &str) -> Response {
    send(
        addr,
        "OPTIONS",
        &url(rel),
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", "range"),
        ],
    )
}

#[test]
fn cors_any_origin_and_preflight() {
    let s = Server::start(&sample_root(), &[]);
    for rel in [MASTER, SEG] {
        let r = get(s.addr, &url(rel), &[("Origin", "http://player.example")]);
        assert_eq!(r.status, 200);
        assert_eq!(hdr(&r, "access-control-allow-origin"), "*");
        let expose = list(hdr(&r, "access-control-expose-headers"));
        for h in ["content-range", "content-length", "etag"] {
            assert!(expose.contains(&h.to_string()), "{expose:?}");
        }
        let r = get(
            s.addr,
            &url(rel),
            &[("Origin", "http://player.example"), ("Range", "bytes=0-9")],
        );
        assert_eq!(r.status, 206);
        assert_eq!(hdr(&r, "access-control-allow-origin"), "*");
        // Not a CORS request: the same CORS headers (a shared cache may hand this response to a
        // browser), and nothing varies on Origin.
        let r = get(s.addr, &url(rel), &[]);
        assert_eq!(hdr(&r, "access-control-allow-origin"), "*");
        assert!(list(hdr(&r, "access-control-expose-headers")).contains(&"content-range".into()));
        assert!(!all_values(&r, "vary").contains(&"origin".into()));
    }
    // Errors too.
    let r = get(s.addr, "/sample/hls/missing.m3u8", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(hdr(&r, "access-control-allow-origin"), "*");
    let p = preflight(s.addr, SEG, "http://player.example", "GET");
    assert_eq!(p.status, 204);
    assert_eq!(hdr(&p, "access-control-allow-origin"), "*");
    assert!(list(hdr(&p, "access-control-allow-methods")).contains(&"get".into()));
    assert!(list(hdr(&p, "access-control-allow-headers")).contains(&"range".into()));
    assert!(p.body.is_empty());
    // A method the origin does not serve is not allowed.
    let p = preflight(s.addr, SEG, "http://player.example", "PUT");
    assert!(p.header("access-control-allow-origin").is_none());
    assert!(p.header("access-control-allow-methods").is_none());
}

#[test]
fn cors_restricted_origins() {
    let s = Server::start(&sample_root(), &["--cors-origins", "http://a.example"]);
    let r = get(s.addr, &url(SEG), &[("Origin", "http://a.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "access-control-allow-origin"), "http://a.example");
    assert!(all_values(&r, "vary").contains(&"origin".into()));
    let expose = list(hdr(&r, "access-control-expose-headers"));
    assert!(expose.contains(&"content-range".into()));
    for other in [
        "http://b.example",
        "http://a.example.evil",
        "null",
        "https://a.example",
    ] {
        let r = get(s.addr, &url(SEG), &[("Origin", other)]);
        assert_eq!(r.status, 200, "{other}");
        assert!(r.header("access-control-allow-origin").is_none(), "{other}");
        assert!(r.header("access-control-expose-headers").is_none());
        let p = preflight(s.addr, SEG, other, "GET");
        assert!(p.header("access-control-allow-origin").is_none(), "{other}");
    }
    // Every response varies on Origin, with or without one (one Vary line, merged with the
    // manifests' Accept-Encoding), so a cache keeps one copy per origin.
    for rel in [SEG, MASTER] {
        for h in [vec![], vec![("Origin", "http://b.example")]] {
            let r = get(s.addr, &url(rel), &h);
            assert_eq!(r.status, 200);
            assert!(
                r.header("access-control-allow-origin").is_none(),
                "{rel} {h:?}"
            );
            let vary: Vec<_> = r.headers.iter().filter(|(k, _)| k == "vary").collect();
            assert_eq!(vary.len(), 1, "{rel} {h:?}: {vary:?}");
            assert!(list(&vary[0].1).contains(&"origin".into()), "{rel} {h:?}");
        }
    }
    let r = get(s.addr, &url(MASTER), &[("Origin", "http://a.example")]);
    assert_eq!(list(hdr(&r, "vary")), ["accept-encoding", "origin"]);
    let p = preflight(s.addr, MASTER, "http://a.example", "GET");
    assert_eq!(p.status, 204);
    assert_eq!(hdr(&p, "access-control-allow-origin"), "http://a.example");
    assert!(list(hdr(&p, "access-control-allow-headers")).contains(&"range".into()));
}

// ---------------------------------------------------------------------------------------------
// Path traversal
// ---------------------------------------------------------------------------------------------

#[test]
fn traversal_never_escapes_root() {
    let t = tempfile::Builder::new()
        .prefix("abr-origin-trav-")
        .tempdir()
        .unwrap();
    let root = t.path().join("root");
    copy_dir(&sample_root().join("sample"), &root.join("sample"));
    let marker = format!(
        "ABR-CANARY-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let canary = format!("#EXTM3U\n# {marker}\n");
    // Canary files outside ROOT, with extensions the origin would serve.
    for name in ["canary.ts", "canary.m3u8", "canary"] {
        std::fs::write(t.path().join(name), &canary).unwrap();
    }
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("hls")).unwrap();
    std::fs::write(outside.join("canary.ts"), &canary).unwrap();
    std::fs::write(outside.join("hls/master.m3u8"), &canary).unwrap();
    // Symlinks inside ROOT pointing out of it: a file, a directory, a whole package.
    std::os::unix::fs::symlink(t.path().join("canary.ts"), root.join("sample/hls/evil.ts"))
        .unwrap();
    std::os::unix::fs::symlink("../../../canary.m3u8", root.join("sample/hls/rel.m3u8")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("sample/out")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("evilpkg")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("sample/hls/passwd.ts")).unwrap();
    // Hidden files and a leftover staging directory inside ROOT.
    std::fs::write(root.join("sample/hls/.hidden.ts"), &canary).unwrap();
    let staging = root.join(".sample.abr-staging.1/hls");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("master.m3u8"), &canary).unwrap();
    // Controls: a symlink that stays inside ROOT is served, and so would be the canary if it
    // were inside ROOT — so a refusal below is the containment check, not a broken fixture.
    std::os::unix::fs::symlink("720p/seg_00001.ts", root.join("sample/hls/alias.ts")).unwrap();
    std::fs::write(root.join("sample/hls/inside.m3u8"), &canary).unwrap();

    let s = Server::start(&root, &[]);
    let r = get(s.addr, "/sample/hls/alias.ts", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, disk(SEG));
    let r = get(s.addr, "/sample/hls/inside.m3u8", &[]);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains(&marker));

    let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    let variants: &[&str] = &[
        "/../canary.ts",
        "/sample/../../canary.ts",
        "/sample/hls/../../../canary.ts",
        "/sample/hls/720p/../../../../canary.m3u8",
        "/%2e%2e/canary.ts",
        "/sample/%2e%2e/%2e%2e/canary.ts",
        "/sample/%2E%2E%2F%2E%2E%2Fcanary.ts",
        "/sample/..%2f..%2fcanary.ts",
        "/sample%2f..%2f..%2fcanary.ts",
        "/sample/.%2e/.%2e/canary.ts",
        "/sample/%2e./%2e./canary.ts",
        "/sample/..%5c..%5ccanary.ts",
        "/sample/%5c..%5c..%5ccanary.ts",
        "/sample/..\\..\\canary.ts",
        "/sample/hls/..\\..\\..\\canary.ts",
        "//etc/passwd",
        "//etc/passwd.ts",
        "/%2Fetc%2Fpasswd",
        "/%2fetc/passwd",
        "/etc/passwd",
        "/%5c%5cetc%5cpasswd",
        "/sample/hls/evil.ts%00",
        "/sample/hls/canary.ts%00.m3u8",
        "/sample/..%00/canary.ts",
        "/sample/%c0%ae%c0%ae/%c0%ae%c0%ae/canary.ts",
        "/sample/%c0%ae%c0%ae%c0%afcanary.ts",
        "/sample/%e0%80%ae%e0%80%ae/%e0%80%ae%e0%80%ae/canary.ts",
        "/sample/%252e%252e/%252e%252e/canary.ts",
        "/sample/%252e%252e%252f%252e%252e%252fcanary.ts",
        "/sample/%u002e%u002e/%u002e%u002e/canary.ts",
        "/sample/./hls/master.m3u8",
        "/sample/hls/./../../../canary.ts",
        "/sample/....//....//canary.ts",
        "/sample/hls/720p/..;/..;/..;/canary.ts",
        "/sample/hls/720p/seg_00001.ts/../../../../canary.ts",
        "/.sample.abr-staging.1/hls/master.m3u8",
        "/%2esample.abr-staging.1/hls/master.m3u8",
        "/sample/hls/.hidden.ts",
        "/sample/hls/evil.ts",
        "/sample/hls/rel.m3u8",
        "/sample/hls/passwd.ts",
        "/sample/out/canary.ts",
        "/sample/out/hls/master.m3u8",
        "/evilpkg/hls/master.m3u8",
        "/evilpkg/canary.ts",
        "/proc/self/root/etc/passwd",
        "http://127.0.0.1/../canary.ts",
        "http://127.0.0.1/sample/%2e%2e/%2e%2e/canary.ts",
    ];
    assert!(variants.len() >= 20);
    for v in variants {
        let (r, after_head) = exchange(s.addr, "GET", v, &[]);
        assert!(
            r.status == 400 || r.status == 404,
            "{v}: status {}",
            r.status
        );
        let raw = String::from_utf8_lossy(&after_head);
        assert!(!raw.contains(&marker), "{v}: canary leaked");
        assert!(
            passwd.len() < 16 || !after_head.windows(16).any(|w| w == &passwd[..16]),
            "{v}: /etc/passwd leaked"
        );
        assert!(!raw.contains("root:"), "{v}: /etc/passwd leaked");
        // HEAD takes the same path.
        let h = head(s.addr, v, &[]);
        assert_eq!(h.status, r.status, "HEAD {v}");
    }
    // The server survived all of it.
    assert_eq!(get(s.addr, "/healthz", &[]).status, 200);
    assert_eq!(get(s.addr, &url(MASTER), &[]).body, disk(MASTER));
}

// ---------------------------------------------------------------------------------------------
// Signed URLs
// ---------------------------------------------------------------------------------------------

#[test]
fn signed_urls() {
    let (t, root) = private_root();
    // A second package with the same content, to reuse a signature across packages.
    copy_dir(&root.join("sample"), &root.join("other"));
    let s = Server::start(&root, &["--signing-key", "secretkey"]);
    let o = common::abr(&["sign", "sample", "--key", "secretkey", "--ttl", "60"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let prefix = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(
        prefix.starts_with("/_t/") && prefix.ends_with("/sample/"),
        "{prefix}"
    );
    let seg_rel = "hls/720p/seg_00002.ts";
    for (rel, file) in [
        ("hls/master.m3u8", disk(MASTER)),
        ("hls/720p/index.m3u8", disk(MEDIA)),
        (seg_rel, disk("sample/hls/720p/seg_00002.ts")),
        ("dash/manifest.mpd", disk(MPD)),
        ("dash/720p/init.mp4", disk(INIT)),
    ] {
        let r = get(s.addr, &format!("{prefix}{rel}"), &[]);
        assert_eq!(r.status, 200, "{prefix}{rel}");
        assert_eq!(r.body, file, "{prefix}{rel}");
    }
    let r = get(
        s.addr,
        &format!("{prefix}{seg_rel}"),
        &[("Range", "bytes=0-9")],
    );
    assert_eq!(r.status, 206);

    let forbidden = |path: &str, why: &str| {
        let r = get(s.addr, path, &[]);
        assert_eq!(r.status, 403, "{path}");
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert!(body.contains(why), "{path}: {body:?}");
        assert!(!body.contains("#EXTM3U"));
    };
    // Unsigned.
    forbidden("/sample/hls/master.m3u8", "required");
    forbidden("/other/hls/master.m3u8", "required");
    // Tampered signature (one character changed), expiry or package.
    let parts: Vec<&str> = prefix.trim_matches('/').split('/').collect();
    let (exp, sig) = (parts[1], parts[2]);
    let mut bad_sig = sig.to_string();
    let c = if bad_sig.starts_with('A') { "B" } else { "A" };
    bad_sig.replace_range(0..1, c);
    forbidden(
        &format!("/_t/{exp}/{bad_sig}/sample/hls/master.m3u8"),
        "invalid",
    );
    forbidden(
        &format!("/_t/{exp}/{}/sample/hls/master.m3u8", &sig[..sig.len() - 1]),
        "invalid",
    );
    let later: u64 = exp.parse::<u64>().unwrap() + 3600;
    forbidden(
        &format!("/_t/{later}/{sig}/sample/hls/master.m3u8"),
        "invalid",
    );
    forbidden(&format!("/_t/{exp}/{sig}/other/hls/master.m3u8"), "invalid");
    forbidden(&format!("/_t/{exp}/{sig}/other/{seg_rel}"), "invalid");
    forbidden(&format!("/_t/x/{sig}/sample/hls/master.m3u8"), "invalid");
    // Signed with another key.
    let other_key = origin::auth::signed_prefix(b"otherkey", later, "sample");
    forbidden(&format!("{other_key}hls/master.m3u8"), "invalid");
    // Expired: --ttl 0 expires now; a computed prefix from an hour ago.
    let o = common::abr(&["sign", "sample", "--key", "secretkey", "--ttl", "0"]);
    let expired = String::from_utf8(o.stdout).unwrap().trim().to_string();
    forbidden(&format!("{expired}hls/master.m3u8"), "expired");
    let past = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let old = origin::auth::signed_prefix(b"secretkey", past, "sample");
    forbidden(&format!("{old}hls/master.m3u8"), "expired");
    forbidden(&format!("{old}{seg_rel}"), "expired");
    // The same computation with a future expiry works (the test computes tokens correctly).
    let fresh = origin::auth::signed_prefix(b"secretkey", later, "other");
    let r = get(s.addr, &format!("{fresh}hls/master.m3u8"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, disk(MASTER));
    // A valid token does not open a path out of the package.
    let r = get(s.addr, &format!("{prefix}../other/hls/master.m3u8"), &[]);
    assert!(r.status == 400 || r.status == 404, "{}", r.status);
    // Health endpoints stay open.
    assert_eq!(get(s.addr, "/healthz", &[]).status, 200);
    drop(s);

    // Nested packages (the video service's `<principal>/<name>`): a token for alice/holiday
    // opens that package only; one for alice every package under it.
    copy_dir(&root.join("sample"), &root.join("alice/holiday"));
    copy_dir(&root.join("sample"), &root.join("alice/trip"));
    let s = Server::start(&root, &["--signing-key", "secretkey"]);
    let sign = |package: &str| {
        let o = common::abr(&["sign", package, "--key", "secretkey", "--ttl", "60"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let holiday = sign("alice/holiday");
    assert!(holiday.ends_with("/alice/holiday/"), "{holiday}");
    let r = get(s.addr, &format!("{holiday}hls/master.m3u8"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, disk(MASTER));
    let r = get(s.addr, &format!("{holiday}{seg_rel}"), &[]);
    assert_eq!(r.body, disk("sample/hls/720p/seg_00002.ts"));
    let trip = holiday.replace("/alice/holiday/", "/alice/trip/");
    assert_eq!(
        get(s.addr, &format!("{trip}hls/master.m3u8"), &[]).status,
        403
    );
    let alice = sign("alice");
    for p in ["holiday", "trip"] {
        let r = get(s.addr, &format!("{alice}{p}/hls/master.m3u8"), &[]);
        assert_eq!(r.status, 200, "{p}");
    }
    for bad in ["alice/../x", "", "a/.hidden", "_t/x", "a/b/c/d/e"] {
        let o = common::abr(&["sign", bad, "--key", "k"]);
        assert!(!o.status.success(), "abr sign '{bad}' succeeded");
    }
    drop(t);
}

// ---------------------------------------------------------------------------------------------
// Rate limiting
// ---------------------------------------------------------------------------------------------

#[test]
fn rate_limit_burst_then_429_with_retry_after() {
    let s = Server::start(&sample_root(), &["--rate-limit", "5", "--rate-burst", "5"]);
    let m0 = metrics_text(s.addr);
    let file = disk(MASTER);
    let start = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = get(s.addr, &url(MASTER), &[]);
        match r.status {
            200 => assert_eq!(r.body, file),
            429 => {
                let ra: u64 = hdr(&r, "retry-after")
                    .parse()
                    .expect("Retry-After is an integer");
                assert!((1..=60).contains(&ra), "Retry-After {ra}");
            }
            other => panic!("status {other}"),
        }
        statuses.push(r.status);
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    let limited = statuses.len() - ok;
    // At most the burst plus what refilled meanwhile (5/s).
    assert!(
        (ok as f64) <= 5.0 + (elapsed * 5.0).ceil() + 1.0,
        "{ok} allowed in {elapsed:.2}s: {statuses:?}"
    );
    assert!(limited >= 1, "{statuses:?}");
    let m1 = metrics_text(s.addr);
    let d = metric(&m1, "abr_http_rate_limited_total", &[])
        - metric(&m0, "abr_http_rate_limited_total", &[]);
    assert_eq!(d as usize, limited);
    // Health checks are not rate limited.
    for _ in 0..10 {
        assert_eq!(get(s.addr, "/healthz", &[]).status, 200);
    }
}

#[test]
fn rate_limit_keys_on_forwarded_for_only_from_trusted_proxies() {
    let flags = ["--rate-limit", "1", "--rate-burst", "2"];
    let xff = |ip: &'static str| [("X-Forwarded-For", ip)];
    // Trusted proxy: each X-Forwarded-For client has its own bucket.
    let mut args = flags.to_vec();
    args.extend(["--trusted-proxies", "127.0.0.1/32"]);
    let s = Server::start(&sample_root(), &args);
    let codes = |s: &Server, ip: &'static str, n: usize| -> Vec<u16> {
        (0..n)
            .map(|_| get(s.addr, &url(MASTER), &xff(ip)).status)
            .collect()
    };
    assert_eq!(codes(&s, "198.51.100.1", 3), [200, 200, 429]);
    assert_eq!(codes(&s, "198.51.100.2", 2), [200, 200]);
    assert_eq!(codes(&s, "203.0.113.9, 198.51.100.3", 1), [200]);
    assert_eq!(
        get(s.addr, &url(MASTER), &[]).status,
        200,
        "peer's own bucket"
    );
    let r = get(
        s.addr,
        &url(MASTER),
        &[
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Request-Id", "xff-trusted"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(access_line(&s, "xff-trusted")["client"], "198.51.100.7");

    // Untrusted peer: X-Forwarded-For is ignored, everything shares the peer's bucket.
    let s = Server::start(&sample_root(), &flags);
    assert_eq!(codes(&s, "198.51.100.1", 2), [200, 200]);
    assert_eq!(codes(&s, "198.51.100.2", 1), [429]);
    assert_eq!(get(s.addr, &url(MASTER), &[]).status, 429);
    let r = get(
        s.addr,
        "/healthz",
        &[
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Request-Id", "xff-untrusted"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(access_line(&s, "xff-untrusted")["client"], "127.0.0.1");
}

// ---------------------------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------------------------

/// Drips one header byte every 300 ms on `s` until the server closes the connection; returns
/// how long that took and what the server sent. Panics after `limit`.
fn drip_until_closed(
    mut s: TcpStream,
    limit: Duration,
    mut meanwhile: impl FnMut(),
) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut first = true;
    loop {
        assert!(
            start.elapsed() < limit,
            "connection still open after {:?}; received {:?}",
            start.elapsed(),
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut buf) {
            Ok(0) => return (start.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (start.elapsed(), got), // reset
        }
        if first {
            meanwhile();
            first = false;
        }
        if s.write_all(b"a").is_err() {
            // Closed under us; collect what was sent before.
            let _ = s.read_to_end(&mut got);
            return (start.elapsed(), got);
        }
    }
}

#[test]
fn slow_headers_are_cut_by_the_header_timeout() {
    let s = Server::start(&sample_root(), &["--header-timeout", "1"]);
    let file = disk(MASTER);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let (took, got) = drip_until_closed(c, Duration::from_secs(5), || {
        // Other clients are served while the slow one hangs.
        let r = get(s.addr, &url(MASTER), &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, file);
    });
    // Closed by the timer (actix's clock ticks every 500 ms, so 1 s means 0.5–1 s), not by a
    // parse error: anything sent is a 408.
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");
    if !got.is_empty() {
        assert!(
            got.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    // A connection that sends nothing at all is closed too.
    let c = TcpStream::connect(s.addr).unwrap();
    let mut c2 = c.try_clone().unwrap();
    c2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = c2.read_to_end(&mut rest);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "idle connection kept"
    );
    // Many slow clients at once do not starve others.
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(b"GET /sample/hls/master.m3u8 HTTP/1.1\r\nHo")
                .unwrap();
            c
        })
        .collect();
    let r = get(s.addr, &url(MASTER), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, file);
    drop(slow);
    drop(c);
}

/// actix-http arms its request-head timer only for the first request of a connection; the
/// origin's connection wrapper times the heads of the following ones (`head_deadline`).
#[test]
fn slow_headers_on_a_kept_alive_connection_are_cut() {
    let s = Server::start(
        &sample_root(),
        &["--header-timeout", "1", "--keep-alive", "2"],
    );
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"ok\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let (took, _) = drip_until_closed(c, Duration::from_secs(6), || {});
    assert!(took < Duration::from_secs(6));
}

/// The follow-up head deadline counts only while a head is arriving: a follow-up head that
/// stops half-way is cut, while idle time between requests (keep-alive's) and a handler slower
/// than the header timeout (on a follow-up request) are not.
#[test]
fn follow_up_head_deadline_times_heads_only() {
    let s = Server::start(
        &sample_root(),
        &["--header-timeout", "1", "--keep-alive", "10"],
    );
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = std::io::BufReader::new(c.try_clone().unwrap());
    let mut exchange = |req: &[u8]| {
        c.write_all(req).unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            assert!(r.read_until(b'\n', &mut head).unwrap() > 0, "closed");
        }
        let h = String::from_utf8_lossy(&head).to_lowercase();
        let len: usize = h
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        h.lines().next().unwrap_or_default().to_string()
    };
    assert!(exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").contains(" 200"));
    // Idle for twice the header timeout between requests: keep-alive, not a slow head.
    std::thread::sleep(Duration::from_secs(2));
    assert!(exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").contains(" 200"));
    // A handler taking longer than the header timeout.
    let t = Instant::now();
    let status = exchange(b"GET /debug/pprof/profile?seconds=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(status.contains(" 200"), "{status}");
    assert!(t.elapsed() >= Duration::from_secs(2));
    // Half a head, then silence: closed by the deadline (not keep-alive's 10 s).
    c.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "kept {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics, request ids, access log
// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_counters_move() {
    let s = Server::start(&sample_root(), &[]);
    let m0 = metrics_text(s.addr);
    let seg = disk(SEG);
    let req = |status: &'static str, kind: &'static str| [("status", status), ("kind", kind)];
    let a = get(s.addr, &url(SEG), &[]);
    assert_eq!(a.body, seg);
    let b = get(s.addr, &url(SEG), &[("Range", "bytes=100-1099")]);
    assert_eq!(b.body, seg[100..1100]);
    let c = get(s.addr, &url(SEG), &[("Range", "bytes=0-9,-10")]);
    assert_eq!(parse_multipart(&c).len(), 2);
    let h = head(s.addr, &url(SEG), &[]);
    assert_eq!(h.status, 200);
    let nm = get(s.addr, &url(SEG), &[("If-None-Match", hdr(&a, "etag"))]);
    assert_eq!(nm.status, 304);
    let init = get(s.addr, &url(INIT), &[]);
    assert_eq!(init.body, disk(INIT));
    let man = get(s.addr, &url(MASTER), &[("Accept-Encoding", "gzip")]);
    assert_eq!(hdr(&man, "content-encoding"), "gzip");
    let missing = get(s.addr, "/sample/hls/720p/seg_99999.ts", &[]);
    assert_eq!(missing.status, 404);
    let bad = get(s.addr, "/sample/%2e%2e/x.ts", &[]);
    assert_eq!(bad.status, 400);
    let m1 = metrics_text(s.addr);

    let delta =
        |name: &str, labels: &[(&str, &str)]| metric(&m1, name, labels) - metric(&m0, name, labels);
    let sent = (a.body.len() + b.body.len() + c.body.len()) as f64;
    assert_eq!(
        delta("abr_http_requests_total", &req("2xx", "segment")),
        4.0
    );
    assert_eq!(
        delta("abr_http_requests_total", &req("3xx", "segment")),
        1.0
    );
    assert_eq!(delta("abr_http_requests_total", &req("2xx", "init")), 1.0);
    assert_eq!(
        delta("abr_http_requests_total", &req("2xx", "manifest")),
        1.0
    );
    assert_eq!(delta("abr_http_requests_total", &req("4xx", "other")), 2.0);
    assert_eq!(
        delta("abr_http_sent_bytes_total", &[("kind", "segment")]),
        sent
    );
    assert_eq!(
        delta("abr_http_sent_bytes_total", &[("kind", "init")]),
        init.body.len() as f64
    );
    assert_eq!(
        delta("abr_http_sent_bytes_total", &[("kind", "manifest")]),
        man.body.len() as f64,
        "compressed bytes are counted as sent"
    );
    assert_eq!(
        delta(
            "abr_http_request_duration_seconds_count",
            &[("kind", "segment")]
        ),
        5.0
    );
    assert_eq!(
        metric(&m1, "abr_http_in_flight_requests", &[]),
        1.0,
        "only /metrics itself"
    );
}

#[test]
fn admin_listener_hosts_metrics() {
    let admin_port = free_port();
    let admin = format!("127.0.0.1:{admin_port}");
    let s = Server::start(&sample_root(), &["--admin-listen", &admin]);
    let admin: SocketAddr = admin.parse().unwrap();
    let r = get(s.addr, "/metrics", &[]);
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("abr_http"));
    assert_eq!(
        get(s.addr, "/debug/pprof/profile?seconds=1", &[]).status,
        404
    );
    let before = metrics_text(admin);
    assert_eq!(get(s.addr, &url(SEG), &[]).body, disk(SEG));
    let after = metrics_text(admin);
    let k = [("status", "2xx"), ("kind", "segment")];
    assert_eq!(
        metric(&after, "abr_http_requests_total", &k)
            - metric(&before, "abr_http_requests_total", &k),
        1.0
    );
    assert_eq!(
        metric(&after, "abr_http_sent_bytes_total", &[("kind", "segment")])
            - metric(&before, "abr_http_sent_bytes_total", &[("kind", "segment")]),
        disk(SEG).len() as f64
    );
}

#[test]
fn request_ids_and_json_access_log() {
    let s = Server::start(&sample_root(), &[]);
    let r = get(
        s.addr,
        &url(SEG),
        &[("X-Request-Id", "it-req-0001"), ("Range", "bytes=0-99")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(hdr(&r, "x-request-id"), "it-req-0001");
    let r2 = get(s.addr, &url(MASTER), &[]);
    let generated = hdr(&r2, "x-request-id").to_string();
    assert!(
        !generated.is_empty() && generated.len() >= 16,
        "{generated}"
    );
    assert!(generated.bytes().all(|b| b.is_ascii_graphic()));
    let r3 = get(s.addr, &url(MASTER), &[]);
    assert_ne!(hdr(&r3, "x-request-id"), generated, "ids are unique");
    // An id that is not a clean token is replaced.
    let r4 = get(s.addr, &url(MASTER), &[("X-Request-Id", "a b")]);
    assert_ne!(hdr(&r4, "x-request-id"), "a b");
    assert!(!hdr(&r4, "x-request-id").is_empty());
    // Errors carry ids too.
    let r5 = get(s.addr, "/nope/x.ts", &[("X-Request-Id", "it-req-404")]);
    assert_eq!(r5.status, 404);
    assert_eq!(hdr(&r5, "x-request-id"), "it-req-404");

    let l = access_line(&s, "it-req-0001");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/sample/hls/720p/seg_00001.ts");
    assert_eq!(l["status"], 206);
    assert_eq!(l["bytes"], 100);
    assert!(l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{l}");
    assert_eq!(l["range"], "bytes=0-99");
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["request_id"], "it-req-0001");
    let l = access_line(&s, &generated);
    assert_eq!(l["path"], "/sample/hls/master.m3u8");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes"], r2.body.len());
    assert_eq!(l["range"], "-");
    // HEAD sends no body bytes, whatever its Content-Length.
    let h = head(s.addr, &url(SEG), &[("X-Request-Id", "it-req-head")]);
    assert_eq!(hdr(&h, "content-length"), disk(SEG).len().to_string());
    let l = access_line(&s, "it-req-head");
    assert_eq!(l["method"], "HEAD");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes"], 0);
    let l = access_line(&s, "it-req-404");
    assert_eq!(l["status"], 404);
    assert_eq!(l["path"], "/nope/x.ts");
    // Every line of the log is JSON.
    let text = std::fs::read_to_string(&s.log).unwrap();
    assert!(text.lines().count() >= 5);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Methods and health
// ---------------------------------------------------------------------------------------------

#[test]
fn methods_and_health() {
    let s = Server::start(&sample_root(), &[]);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = send(s.addr, method, &url(SEG), &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{method}");
        let allow = list(hdr(&r, "allow"));
        assert!(
            allow.contains(&"get".into()) && allow.contains(&"head".into()),
            "{allow:?}"
        );
        assert!(!allow.contains(&method.to_ascii_lowercase()));
    }
    let r = get(s.addr, "/healthz", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok\n");
    let r = get(s.addr, "/readyz", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ready\n");
    let r = head(s.addr, "/healthz", &[]);
    assert_eq!(r.status, 200);
}
