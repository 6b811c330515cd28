//! A webhook receiver for tests/webhooks.rs: a real HTTP/1.1 server on 127.0.0.1 (one thread)
//! that records every request and answers 500 while told to refuse, 200 otherwise.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One request received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// Raw body.
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

impl Hit {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON webhook body")
    }

    /// Header `name` (lower case).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// Whether `X-Abr-Signature` is the HMAC-SHA256 of `<X-Abr-Timestamp>.<body>` by `secret`.
    pub fn verifies(&self, secret: &[u8]) -> bool {
        let Some(hex) = self.header("x-abr-signature").strip_prefix("sha256=") else {
            return false;
        };
        let Ok(sig) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(self.header("x-abr-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&sig).is_ok()
    }
}

/// The receiver; stops accepting when dropped (the thread ends with the test process).
pub struct Receiver {
    /// Its URL.
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answer 500 while true.
    pub refuse: Arc<AtomicBool>,
    /// Answer 500 to this many more requests (then as `refuse` says).
    pub refuse_next: Arc<AtomicUsize>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let refuse_next = Arc::new(AtomicUsize::new(0));
        let (h, r, n) = (hits.clone(), refuse.clone(), refuse_next.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = serve(s, &h, &r, &n);
            }
        });
        Receiver {
            url,
            hits,
            refuse,
            refuse_next,
        }
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The requests answered 200 (the deliveries), in order.
    pub fn delivered(&self) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200)
            .collect()
    }
}

fn serve(
    s: TcpStream,
    hits: &Mutex<Vec<Hit>>,
    refuse: &AtomicBool,
    refuse_next: &AtomicUsize,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        let take_one = refuse_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let status = if take_one || refuse.load(Ordering::SeqCst) {
            500
        } else {
            200
        };
        hits.lock().unwrap().push(Hit {
            headers,
            body,
            status,
        });
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        (&s).write_all(
            format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )?;
    }
}

/// `abr monitor ARGS` with its stdout and stderr lines collected; killed (by its pid) when
/// dropped.
pub struct Monitor {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    errs: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    /// Starts it; returns once it follows the job events (every later one is shown).
    pub fn start(args: &[&str]) -> Monitor {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_abr"))
            .arg("monitor")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn abr monitor");
        let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        loop {
            let l = err
                .next()
                .unwrap_or_else(|| panic!("abr monitor ended before following: {said:?}"))
                .unwrap();
            if l.contains("following the job events") {
                break;
            }
            said.push(l);
        }
        let errs = Arc::new(Mutex::new(said));
        let e = errs.clone();
        std::thread::spawn(move || {
            for line in err.map_while(Result::ok) {
                e.lock().unwrap().push(line);
            }
        });
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Monitor { child, lines, errs }
    }

    /// Its stderr lines so far.
    pub fn stderr(&self) -> Vec<String> {
        self.errs.lock().unwrap().clone()
    }

    /// Its JSON lines so far.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
