//! Settings of the origin (the data plane of `abr serve`): defaults, then a TOML file, then
//! `ABR_*` environment variables and command-line flags (flags win). One declaration per setting:
//! the field of [`Config`] is its TOML key, and its `#[arg]` its flag and variable, applied over
//! the file with clap's update mode (`FromArgMatches::update_from_arg_matches`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::OriginError;

/// Settings of the data plane. Every field has a default; each is a key of the TOML file (its
/// name), a flag and an `ABR_*` variable (the `#[arg]` beside it). Unknown keys are refused by the
/// caller that reads the file, which knows every part of it (`abr serve` also reads the control
/// plane's settings from the same file).
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(default)]
#[group(id = "origin")]
pub struct Config {
    /// Directory holding packages (`ROOT/<name>/hls/…`, `ROOT/<name>/dash/…`).
    #[arg(long, env = "ABR_ROOT")]
    pub root: PathBuf,
    /// Public listener.
    #[arg(long, env = "ABR_LISTEN")]
    pub listen: SocketAddr,
    /// Optional separate listener for /metrics and /debug/pprof (else they are on `listen`).
    #[arg(long, env = "ABR_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Worker threads (0 = number of CPUs).
    #[arg(long, env = "ABR_WORKERS")]
    pub workers: usize,
    /// Maximum concurrent connections in total (split across workers).
    #[arg(long, env = "ABR_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Seconds a client may take to send its request head (slowloris guard); 0 disables.
    #[arg(long = "header-timeout", env = "ABR_HEADER_TIMEOUT")]
    pub header_timeout_s: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long = "keep-alive", env = "ABR_KEEP_ALIVE")]
    pub keep_alive_s: f64,
    /// Seconds between SIGTERM and closing the listener (/readyz is 503 meanwhile).
    #[arg(long = "shutdown-grace", env = "ABR_SHUTDOWN_GRACE")]
    pub shutdown_grace_s: f64,
    /// Seconds in-flight responses may take to finish after the listener closes.
    #[arg(long = "drain-timeout", env = "ABR_DRAIN_TIMEOUT")]
    pub drain_timeout_s: f64,
    /// `Cache-Control` max-age for manifests (VOD manifests may be republished with --force).
    #[arg(long = "manifest-max-age", env = "ABR_MANIFEST_MAX_AGE")]
    pub manifest_max_age_s: u64,
    /// `Cache-Control` max-age for segments and init files (they never change once published).
    #[arg(long = "segment-max-age", env = "ABR_SEGMENT_MAX_AGE")]
    pub segment_max_age_s: u64,
    /// `stale-while-revalidate` of manifests (RFC 5861): seconds past max-age a cache may answer
    /// with the stale manifest while it revalidates in the background. 0 = not sent.
    #[arg(
        long = "manifest-stale-while-revalidate",
        env = "ABR_MANIFEST_STALE_WHILE_REVALIDATE"
    )]
    pub manifest_stale_while_revalidate_s: u64,
    /// `stale-if-error` of manifests (RFC 5861): seconds past max-age a cache may answer with
    /// the stale manifest while the origin fails (errors, 5xx, unreachable). 0 = not sent.
    #[arg(long = "manifest-stale-if-error", env = "ABR_MANIFEST_STALE_IF_ERROR")]
    pub manifest_stale_if_error_s: u64,
    /// `CDN-Cache-Control: max-age` of manifests (RFC 9213; CDNs that honour it use it instead
    /// of `Cache-Control`, with the same stale windows). 0 = no CDN-Cache-Control.
    #[arg(long = "manifest-cdn-max-age", env = "ABR_MANIFEST_CDN_MAX_AGE")]
    pub manifest_cdn_max_age_s: u64,
    /// `stale-while-revalidate` of segments and init files. 0 = not sent.
    #[arg(
        long = "segment-stale-while-revalidate",
        env = "ABR_SEGMENT_STALE_WHILE_REVALIDATE"
    )]
    pub segment_stale_while_revalidate_s: u64,
    /// `stale-if-error` of segments and init files. 0 = not sent.
    #[arg(long = "segment-stale-if-error", env = "ABR_SEGMENT_STALE_IF_ERROR")]
    pub segment_stale_if_error_s: u64,
    /// Allowed CORS origins (comma-separated on the command line); `*` allows any.
    #[arg(long, env = "ABR_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Per-client requests per second (0 = no rate limit).
    #[arg(long = "rate-limit", env = "ABR_RATE_LIMIT")]
    pub rate_limit_rps: u32,
    /// Per-client burst size.
    #[arg(long = "rate-burst", env = "ABR_RATE_BURST")]
    pub rate_limit_burst: u32,
    /// Peers whose `X-Forwarded-For` is trusted for the client address (CIDRs, comma-separated
    /// on the command line).
    #[arg(long, env = "ABR_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// In-memory hot-file cache budget in bytes (0 = off).
    #[arg(long, env = "ABR_CACHE_BYTES")]
    pub cache_bytes: u64,
    /// Largest file kept in the hot cache.
    #[arg(long, env = "ABR_CACHE_MAX_FILE_BYTES")]
    pub cache_max_file_bytes: u64,
    /// Seconds an opened package file is reused by later requests (nginx's `open_file_cache`);
    /// a replaced or removed file is served as it was for up to this long. 0 = off.
    #[arg(long = "open-file-cache", env = "ABR_OPEN_FILE_CACHE")]
    pub open_file_cache_s: f64,
    /// Most files kept open by that cache, per worker (as nginx's `open_file_cache max`).
    #[arg(long, env = "ABR_OPEN_FILE_CACHE_ENTRIES")]
    pub open_file_cache_entries: u64,
    /// Send file bodies with `sendfile(2)` on plain HTTP/1.1 connections (zero-copy, as nginx's
    /// `sendfile on`); TLS and HTTP/2 always copy. `true` or `false`.
    #[arg(long, env = "ABR_SENDFILE", action = clap::ArgAction::Set)]
    pub sendfile: bool,
    /// HMAC key for signed URLs (`hex:…` or text); when set, package files need a token.
    #[arg(long, env = "ABR_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "ABR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "ABR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Directory with the player scripts installed from npm (hls.js, dashjs).
    #[arg(long, env = "ABR_PLAYER_ASSETS")]
    pub player_assets: PathBuf,
    /// Log format: "json" (default) or "text".
    #[arg(long, env = "ABR_LOG_FORMAT")]
    pub log_format: String,
    /// Node name: the `node` label of metrics, recorded in playback events (default: host name).
    #[arg(long, env = "ABR_NODE")]
    pub node: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("."),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            workers: 0,
            max_connections: 25_000,
            header_timeout_s: 10.0,
            keep_alive_s: 30.0,
            shutdown_grace_s: 2.0,
            drain_timeout_s: 30.0,
            manifest_max_age_s: 10,
            segment_max_age_s: 31_536_000,
            manifest_stale_while_revalidate_s: 30,
            manifest_stale_if_error_s: 86_400,
            manifest_cdn_max_age_s: 60,
            segment_stale_while_revalidate_s: 86_400,
            segment_stale_if_error_s: 604_800,
            cors_origins: vec!["*".into()],
            rate_limit_rps: 0,
            rate_limit_burst: 200,
            trusted_proxies: Vec::new(),
            cache_bytes: 0,
            cache_max_file_bytes: 8 << 20,
            sendfile: true,
            open_file_cache_s: 1.0,
            open_file_cache_entries: 1024,
            signing_key: None,
            tls_cert: None,
            tls_key: None,
            player_assets: PathBuf::from("origin/player/node_modules"),
            log_format: "json".into(),
            node: None,
        }
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

impl Config {
    /// Checks the settings can work.
    pub fn validate(&self) -> Result<(), OriginError> {
        let bad = |m: String| Err(OriginError::Config(m));
        if !self.root.is_dir() {
            return bad(format!("root {} is not a directory", self.root.display()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("--tls-cert and --tls-key go together".into());
        }
        if !["json", "text"].contains(&self.log_format.as_str()) {
            return bad(format!(
                "log_format '{}' must be json or text",
                self.log_format
            ));
        }
        if self.rate_limit_rps > 0 && self.rate_limit_burst == 0 {
            return bad("rate_limit_burst must be at least 1".into());
        }
        if self.cors_origins.is_empty() {
            return bad("cors_origins must list at least one origin (or \"*\")".into());
        }
        Ok(())
    }

    /// Header-read timeout.
    pub fn header_timeout(&self) -> Duration {
        secs(self.header_timeout_s)
    }
    /// Open-file cache TTL.
    pub fn open_file_cache(&self) -> Duration {
        secs(self.open_file_cache_s)
    }
    /// Keep-alive timeout.
    pub fn keep_alive(&self) -> Duration {
        secs(self.keep_alive_s)
    }
    /// Grace period before the listener closes.
    pub fn shutdown_grace(&self) -> Duration {
        secs(self.shutdown_grace_s)
    }
    /// Drain timeout for in-flight responses.
    pub fn drain_timeout(&self) -> Duration {
        secs(self.drain_timeout_s)
    }
    /// Effective worker count.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example configuration parses and matches the defaults (unknown keys are
    /// refused by `abr serve`, which reads the origin's and the service's keys from one file).
    #[test]
    fn docs_example_parses_to_defaults() {
        let text = include_str!("../../docs/origin.example.toml");
        let c: Config = toml::from_str(text).unwrap();
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.segment_max_age_s, d.segment_max_age_s);
        assert_eq!(c.manifest_max_age_s, d.manifest_max_age_s);
        assert_eq!(
            c.manifest_stale_while_revalidate_s,
            d.manifest_stale_while_revalidate_s
        );
        assert_eq!(c.manifest_stale_if_error_s, d.manifest_stale_if_error_s);
        assert_eq!(c.manifest_cdn_max_age_s, d.manifest_cdn_max_age_s);
        assert_eq!(
            c.segment_stale_while_revalidate_s,
            d.segment_stale_while_revalidate_s
        );
        assert_eq!(c.segment_stale_if_error_s, d.segment_stale_if_error_s);
        assert_eq!(c.cors_origins, d.cors_origins);
        assert_eq!(c.player_assets, d.player_assets);
    }
}
