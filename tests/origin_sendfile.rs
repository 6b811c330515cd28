//! The zero-copy path (`sendfile` on plain HTTP/1.1): bodies byte-identical to the copying path,
//! pipelined requests mixing sendfile, copied and HEAD responses on one connection, multipart
//! ranges, bytes counted in metrics, and a file truncated while it is being sent.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::origin::{get, write_pseudo_random, Response, Server};

const BIG: u64 = 5 * 1024 * 1024 + 12_345;

/// A ROOT with `pkg/hls/v/seg_00001.ts` (BIG pseudo-random bytes) and a small playlist.
fn root(dir: &Path) -> Vec<u8> {
    let seg = dir.join("pkg/hls/v/seg_00001.ts");
    write_pseudo_random(&seg, BIG, 7);
    std::fs::write(
        dir.join("pkg/hls/v/index.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    std::fs::read(seg).unwrap()
}

/// Reads one response off a kept-alive connection (Content-Length framing only).
fn read_response(r: &mut BufReader<TcpStream>, head_only: bool) -> Response {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let n = r.read_until(b'\n', &mut head).unwrap();
        assert!(n > 0, "connection closed inside a head: {head:?}");
    }
    let mut resp = common::origin::parse_response(&head, true).unwrap();
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    if !head_only {
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).unwrap();
    }
    resp
}

fn metric(s: &Server, line_start: &str) -> f64 {
    let m = String::from_utf8(get(s.addr, "/metrics", &[]).unwrap().body).unwrap();
    m.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Pieces of a multipart/byteranges body, as (Content-Range, bytes).
fn multipart(resp: &Response) -> Vec<(String, Vec<u8>)> {
    let ct = resp.header("content-type").unwrap();
    let boundary = ct.split("boundary=").nth(1).unwrap();
    let delim = format!("\r\n--{boundary}");
    let body = [b"\r\n".as_slice(), &resp.body].concat();
    let mut parts = Vec::new();
    let mut rest = &body[..];
    loop {
        let at = rest
            .windows(delim.len())
            .position(|w| w == delim.as_bytes())
            .expect("delimiter");
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            return parts;
        }
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&rest[..head_end]).unwrap().to_string();
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        let (a, b) = cr
            .trim_start_matches("bytes ")
            .split('/')
            .next()
            .unwrap()
            .split_once('-')
            .unwrap();
        let n = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        rest = &rest[head_end + 4..];
        parts.push((cr, rest[..n].to_vec()));
        rest = &rest[n..];
    }
}

#[test]
fn pipelined_requests_mix_sendfile_copied_and_head_responses() {
    let t = tempfile::tempdir().unwrap();
    let data = root(t.path());
    let s = Server::start(t.path(), &[]);
    let seg = "/pkg/hls/v/seg_00001.ts";
    let sent_before = metric(&s, "abr_http_sent_bytes_total");
    let multi = "bytes=0-99999,1000000-1199999,5000000-";
    let requests: Vec<(&str, &str, Option<&str>)> = vec![
        ("GET", seg, None),
        ("GET", seg, Some("bytes=100-200099")),
        ("HEAD", seg, None),
        ("GET", "/pkg/hls/v/index.m3u8", None),
        ("GET", seg, Some(multi)),
        ("GET", seg, Some("bytes=-70000")),
        ("GET", "/pkg/hls/v/missing.ts", None),
        ("GET", seg, None),
    ];
    let raw = |(m, p, range): &(&str, &str, Option<&str>)| {
        let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
        format!("{m} {p} HTTP/1.1\r\nHost: x\r\n{range}\r\n")
    };
    let conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    // The requests after the HEAD are pipelined (one write; their responses must come back
    // complete and in order). The HEAD is not pipelined: actix-http encodes a response with the
    // HEAD-ness of the last request it has parsed, so a pipelined HEAD breaks the connection
    // with either body path.
    let mut got = Vec::new();
    for req in &requests[..3] {
        (&conn).write_all(raw(req).as_bytes()).unwrap();
        got.push(read_response(&mut r, req.0 == "HEAD"));
    }
    let batch: String = requests[3..].iter().map(raw).collect();
    (&conn).write_all(batch.as_bytes()).unwrap();
    for _ in &requests[3..] {
        got.push(read_response(&mut r, false));
    }
    assert_eq!(got[0].status, 200);
    assert!(got[0].body == data, "whole file differs");
    assert_eq!(got[1].status, 206);
    assert_eq!(
        got[1].header("content-range"),
        Some(format!("bytes 100-200099/{BIG}").as_str())
    );
    assert!(got[1].body == data[100..200_100]);
    assert_eq!(got[2].status, 200);
    assert_eq!(
        got[2].header("content-length"),
        Some(BIG.to_string().as_str())
    );
    assert_eq!(got[3].status, 200);
    assert!(got[3].body.starts_with(b"#EXTM3U"));
    assert_eq!(got[4].status, 206);
    let parts = multipart(&got[4]);
    let want: Vec<(String, &[u8])> = [(0, 99_999), (1_000_000, 1_199_999), (5_000_000, BIG - 1)]
        .iter()
        .map(|&(a, b)| {
            (
                format!("bytes {a}-{b}/{BIG}"),
                &data[a as usize..=b as usize],
            )
        })
        .collect();
    assert_eq!(parts.len(), want.len());
    for ((cr, bytes), (wcr, wbytes)) in parts.iter().zip(&want) {
        assert_eq!(cr, wcr);
        assert!(bytes.as_slice() == *wbytes, "{cr}: bytes differ");
    }
    assert_eq!(got[5].status, 206);
    assert!(got[5].body == data[data.len() - 70_000..]);
    assert_eq!(got[6].status, 404);
    assert!(got[7].body == data, "whole file (again) differs");
    // Every body byte sent by sendfile is counted.
    let body_bytes: usize = got.iter().map(|g| g.body.len()).sum();
    let counted = metric(&s, "abr_http_sent_bytes_total") - sent_before;
    assert_eq!(counted as usize, body_bytes - got[6].body.len());
}

#[test]
fn sendfile_and_copying_paths_answer_identically() {
    let t = tempfile::tempdir().unwrap();
    root(t.path());
    let on = Server::start(t.path(), &[]);
    let off = Server::start(t.path(), &["--sendfile", "false"]);
    let seg = "/pkg/hls/v/seg_00001.ts";
    for range in [
        None,
        Some("bytes=0-0"),
        Some("bytes=65536-"),
        Some("bytes=-1"),
        Some("bytes=0-99999,4000000-4099999"),
        Some(&*format!("bytes={BIG}-")),
    ] {
        let h: Vec<(&str, &str)> = range.iter().map(|r| ("Range", *r)).collect();
        let (a, b) = (
            get(on.addr, seg, &h).unwrap(),
            get(off.addr, seg, &h).unwrap(),
        );
        assert_eq!(a.status, b.status, "{range:?}");
        let skip = ["date", "x-request-id", "content-type", "content-length"];
        let headers = |r: &Response| -> Vec<(String, String)> {
            let mut h: Vec<_> = r
                .headers
                .iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .cloned()
                .collect();
            h.sort();
            h
        };
        assert_eq!(headers(&a), headers(&b), "{range:?}");
        if a.header("content-type")
            .is_some_and(|c| c.starts_with("multipart/"))
        {
            assert_eq!(multipart(&a), multipart(&b), "{range:?}");
        } else {
            assert_eq!(a.header("content-length"), b.header("content-length"));
            assert_eq!(a.header("content-type"), b.header("content-type"));
            assert!(a.body == b.body, "{range:?}: bodies differ");
        }
    }
}

#[test]
fn a_file_truncated_while_sent_closes_the_connection() {
    let t = tempfile::tempdir().unwrap();
    let seg = t.path().join("pkg/hls/v/seg_00001.ts");
    // Far more than loopback socket buffers hold, so the server is still sending.
    let len: u64 = 96 << 20;
    write_pseudo_random(&seg, len, 3);
    let s = Server::start(t.path(), &[]);
    let conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (&conn)
        .write_all(b"GET /pkg/hls/v/seg_00001.ts HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(conn);
    let mut buf = vec![0u8; 1 << 20];
    r.read_exact(&mut buf).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let start = Instant::now();
    let mut total = buf.len() as u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e} after {total} bytes"),
        }
    }
    assert!(
        total < len,
        "received {total} of {len}: the truncation went unnoticed"
    );
    assert!(start.elapsed() < Duration::from_secs(15));
    // The server lives on.
    assert_eq!(get(s.addr, "/healthz", &[]).unwrap().status, 200);
}
