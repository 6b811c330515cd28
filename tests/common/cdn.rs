//! Running the shipped CDN edge in tests: `scripts/cdn/edge.sh` (nginx with proxy_cache and
//! slice) on a free loopback port in front of `abr serve` processes, stopped (`down`) on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::origin::free_port;
use super::{fixture_dir, root};

/// An edge started by edge.sh.
pub struct Edge {
    /// State dir (config, cache, logs).
    pub dir: PathBuf,
    /// Public address.
    pub addr: SocketAddr,
    env: Vec<(String, String)>,
}

impl Edge {
    /// `edge.sh up` in front of `origins`, in a fresh state dir under target/fixtures.
    pub fn up(origins: &[SocketAddr]) -> Edge {
        let dir = tempfile::Builder::new()
            .prefix("abr-edge-")
            .tempdir_in(fixture_dir())
            .unwrap()
            .keep();
        let port = free_port();
        let list: Vec<String> = origins.iter().map(|a| a.to_string()).collect();
        let env = vec![
            ("EDGE_DIR".to_string(), dir.to_str().unwrap().to_string()),
            ("EDGE_PORT".to_string(), port.to_string()),
            ("EDGE_ORIGINS".to_string(), list.join(",")),
            ("EDGE_WORKERS".to_string(), "1".to_string()),
            ("EDGE_CACHE_MAX_SIZE".to_string(), "2g".to_string()),
        ];
        let e = Edge {
            dir,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            env,
        };
        let out = e.run(&["up"]);
        assert!(out.contains("edge up: "), "{out}");
        e
    }

    /// `edge.sh ARGS` with this edge's settings.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/cdn/edge.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs `edge.sh ARGS`, asserts success, returns stdout and stderr.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "edge.sh {args:?} failed:\n{text}");
        text
    }

    /// `http://<edge><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The edge's JSON access-log lines so far (one per client request; `cache` is nginx's
    /// `$upstream_cache_status`).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("nginx-access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("edge log {l}: {e}")))
            .collect()
    }

    /// `edge.sh purge PREFIX`: the number of cache files removed.
    pub fn purge(&self, prefix: &str) -> u64 {
        let out = self.run(&["purge", prefix]);
        out.lines()
            .find_map(|l| l.strip_prefix("purged ")?.strip_suffix(" files"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("purge output: {out}"))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

/// Every file of package `name` under `root` (manifests, init files, segments) as (URL path,
/// file), sorted.
pub fn package_files(root: &Path, name: &str) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root.join(name), &mut files);
    let mut out: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            (format!("/{rel}"), f)
        })
        .collect();
    out.sort();
    out
}

/// Whether a URL path names a segment or init file (what the edge caches in slices).
pub fn is_media(path: &str) -> bool {
    [".ts", ".m4s", ".mp4"].iter().any(|x| path.ends_with(x))
}
