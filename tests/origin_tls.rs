//! `abr serve` over TLS (issue 4, point 3): HTTP/2 and HTTP/1.1 by ALPN with Range, Chromium
//! playing through https, and SIGHUP swapping the certificate for new connections while a
//! connection opened before the reload completes its download.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::origin::*;
use common::*;

/// A self-signed certificate for 127.0.0.1 and localhost (P-256 key) written to `dir` as
/// `<name>.crt` / `<name>.key`, with subject `CN=<name>` and the given serial (hex).
fn make_cert(dir: &Path, name: &str, serial_hex: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-set_serial", &format!("0x{serial_hex}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl req");
    assert!(
        o.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (crt, key)
}

/// Runs `sh -c SCRIPT` and returns its output.
fn sh(script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("sh")
}

/// Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's
/// `--ignore-certificate-errors-spki-list` format).
fn spki_hash(crt: &Path) -> String {
    let o = sh(&format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64",
        crt.display()
    ));
    assert!(o.status.success(), "spki hash");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `serial=…` and `subject=…` of the certificate a new TLS connection to `port` is offered.
fn served_cert(port: u16) -> String {
    let o = sh(&format!(
        "timeout 10 openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null \
         2>/dev/null | openssl x509 -noout -serial -subject"
    ));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Starts `abr serve` with TLS (and `extra` flags); ready once /healthz answers over https
/// (trusting `crt`).
fn start_tls(root: &Path, crt: &Path, key: &Path, extra: &[&str]) -> Server {
    let ca = crt.to_path_buf();
    let mut args = vec![
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start_probed(root, &args, move |addr| {
        let o = Command::new("curl")
            .args(["-s", "--max-time", "2", "--cacert"])
            .arg(&ca)
            .arg(format!("https://{addr}/healthz"))
            .output()
            .expect("curl");
        o.status.success() && o.stdout == b"ok\n"
    })
}

fn https(s: &Server, path: &str) -> String {
    format!("https://{}{path}", s.addr)
}

/// HTTP/2 and HTTP/1.1 ranges over TLS, and hls.js / dash.js in Chromium through https.
#[test]
fn tls_serves_http2_and_http1_ranges_and_chromium_plays() {
    let t = tempfile::Builder::new()
        .prefix("abr-tls-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let (crt, key) = make_cert(t.path(), "abr-test-one", "1001");
    let root = sample_root();
    let s = start_tls(&root, &crt, &key, &[]);
    let seg = "/sample/hls/720p/seg_00001.ts";
    let first100 = std::fs::read(root.join(&seg[1..])).unwrap()[..100].to_vec();
    for (flag, want) in [("--http2", "2 206"), ("--http1.1", "1.1 206")] {
        let out = t.path().join("first100");
        let o = Command::new("curl")
            .args(["-sS", flag, "--cacert"])
            .arg(&crt)
            .args(["-r", "0-99", "-w", "%{http_version} %{http_code}", "-o"])
            .arg(&out)
            .arg(https(&s, seg))
            .output()
            .expect("curl");
        assert!(
            o.status.success(),
            "curl {flag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "curl {flag}");
        assert_eq!(std::fs::read(&out).unwrap(), first100, "curl {flag} bytes");
    }

    // Chromium trusts exactly this certificate (by its public key hash).
    let trust = format!(
        "--chromium-arg=--ignore-certificate-errors-spki-list={}",
        spki_hash(&crt)
    );
    for (player, manifest) in [
        ("hls", "/sample/hls/master.m3u8"),
        ("dash", "/sample/dash/manifest.mpd"),
    ] {
        let v = assert_plays(&https(&s, manifest), player, &[&trust]);
        eprintln!(
            "{player} over https: played {} s, {} s wall",
            v["played"], v["elapsedS"]
        );
    }
}

/// SIGHUP with new certificate files: new connections get the new certificate at once, a
/// download running on a connection opened before the reload completes intact.
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let t = tempfile::Builder::new()
        .prefix("abr-tls-reload-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let (crt1, key1) = make_cert(t.path(), "abr-test-one", "1001");
    let (crt2, key2) = make_cert(t.path(), "abr-test-two", "2002");
    let (crt, key) = (t.path().join("live.crt"), t.path().join("live.key"));
    std::fs::copy(&crt1, &crt).unwrap();
    std::fs::copy(&key1, &key).unwrap();

    let root = t.path().join("root");
    copy_tree(&sample_root(), &root);
    let big = root.join("big/dash/720p/seg_00001.m4s");
    let len: u64 = 32 << 20;
    write_pseudo_random(&big, len, 42);
    let s = start_tls(&root, &crt, &key, &[]);
    let port = s.addr.port();
    let before = served_cert(port);
    assert!(
        before.contains("serial=1001") && before.contains("abr-test-one"),
        "{before}"
    );

    // A slow download (~8 s at 4 MB/s) on a connection made with the first certificate.
    let part = t.path().join("slow");
    let mut slow = Command::new("curl")
        .args(["-sS", "-v", "--limit-rate", "4M", "--cacert"])
        .arg(&crt1)
        .args(["-w", "%{http_version} %{http_code} %{size_download}", "-o"])
        .arg(&part)
        .arg(https(&s, "/big/dash/720p/seg_00001.m4s"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    let size = || std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    wait_until(Duration::from_secs(20), "slow download under way", || {
        size() >= 1 << 20
    });

    // New certificate files, then SIGHUP.
    std::fs::copy(&crt2, &crt).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGHUP) }, 0);
    let mut after = String::new();
    wait_until(Duration::from_secs(10), "new certificate served", || {
        after = served_cert(port);
        after.contains("serial=2002")
    });
    assert!(after.contains("abr-test-two"), "{after}");
    assert!(
        slow.try_wait().unwrap().is_none(),
        "the slow download ended before the reload was confirmed; make it slower"
    );
    assert!(
        s.log_text().contains("TLS certificate reloaded"),
        "{}",
        s.log_text()
    );

    // New connections: trusted with the new certificate, refused with the old one.
    let healthz = |ca: &Path| {
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(ca)
            .arg(https(&s, "/healthz"))
            .output()
            .expect("curl")
    };
    let o = healthz(&crt2);
    assert!(o.status.success() && o.stdout == b"ok\n", "{o:?}");
    let o = healthz(&crt1);
    assert_eq!(
        o.status.code(),
        Some(60),
        "old certificate still accepted: {o:?}"
    );

    // The connection opened before the reload finishes its download intact.
    let o = slow.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "slow download failed: {err}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("2 200 {len}"),
        "{err}"
    );
    assert!(
        err.contains("subject: CN=abr-test-one"),
        "the slow download did not use the first certificate: {err}"
    );
    assert_eq!(sha256sum(&part), sha256sum(&big));
    // The server is still healthy.
    assert!(healthz(&crt2).status.success());
}

/// A kept-alive HTTP/1.1-over-TLS connection that drips the head of its second request is
/// closed by the header timeout (the first request's head is actix's; every later one is the
/// connection wrapper's), while the dripping would keep it open forever otherwise.
#[test]
fn slow_follow_up_head_over_tls_is_cut() {
    let t = tempfile::tempdir().unwrap();
    let root = sample_root();
    let (crt, key) = make_cert(t.path(), "slow", "5a");
    let s = start_tls(
        &root,
        &crt,
        &key,
        &["--header-timeout", "1", "--keep-alive", "30"],
    );
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-alpn", "http/1.1", "-connect"])
        .arg(s.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = client.stdin.take().unwrap();
    let mut stdout = client.stdout.take().unwrap();
    stdin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    // The second head, one byte every 200 ms: never complete, never silent for long.
    stdin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let start = Instant::now();
    let pid = libc::pid_t::try_from(client.id()).unwrap();
    let dripper = std::thread::spawn(move || {
        while start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(200));
            if stdin.write_all(b"a").and_then(|()| stdin.flush()).is_err() {
                return;
            }
        }
        // Still open after 20 s: end the client so that the assertion below reports it.
        // SAFETY: plain kill(2) of our own child (not yet waited for).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    // s_client exits (EOF on its stdout) when the server closes the connection.
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let took = start.elapsed();
    let _ = client.kill();
    let _ = client.wait();
    dripper.join().unwrap();
    assert!(rest.is_empty(), "an answer to half a head: {rest:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "closed after {took:?}, expected about the 1 s header timeout"
    );
}
