//! A redis-server (Debian package; `scripts/setup.sh` installs it) on a loopback port, for the
//! tests of shared state, the cluster's job queue and upload locks; killed by pid on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::origin::free_port;

/// A running redis-server.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one on a free port (no persistence) and waits until it answers PING.
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// Like [`Redis::start`] on `port`.
    pub fn start_on(port: u16) -> Redis {
        Self::spawn(port, &["--appendonly", "no"])
    }

    /// A durable one on `port`: append-only file in `dir` (started again on the same port and
    /// directory, it has what it had).
    pub fn start_durable(port: u16, dir: &Path) -> Redis {
        let dir = dir.to_str().expect("UTF-8 path");
        Self::spawn(port, &["--appendonly", "yes", "--dir", dir])
    }

    fn spawn(port: u16, persistence: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", ""])
            .args(persistence)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server; scripts/setup.sh does)");
        let r = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.inline("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// One inline command (no spaces in its arguments); the first line of the reply.
    pub fn inline(&self, command: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut b = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            s.read_exact(&mut b).ok()?;
            reply.push(b[0]);
        }
        reply.truncate(reply.len() - 2);
        String::from_utf8(reply).ok()
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &str) -> bool {
        self.inline(&format!("EXISTS {key}")).as_deref() == Some(":1")
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGTERM (a durable one writes its AOF out) and waits for its exit.
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
        let st = self.child.wait().expect("wait for redis-server");
        assert!(st.success(), "redis-server exited with {st}");
    }

    /// SIGKILLs it and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
