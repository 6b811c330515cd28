//! Settings of the control plane of `abr serve`. As the origin's: the field is the TOML key (the
//! same file as the origin's settings, top level), its `#[arg]` the flag and `ABR_*` variable.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::ServiceError;

/// Viewer state and sessions. Every field has a default; see `docs/origin.example.toml`.
#[derive(Debug, Clone, Deserialize, clap::Args)]
#[serde(default)]
#[group(id = "service")]
pub struct Config {
    /// Redis URL for state shared by a cluster (`redis://host:port/db`), and with `ingest` its
    /// job queue and upload locks; none = in-process (and the queue in `data_dir`).
    #[arg(long, env = "ABR_REDIS")]
    pub redis: Option<String>,
    /// HMAC key for viewer session tokens (`hex:…` or text); every node of a cluster needs the
    /// same. Defaults to the origin's `signing_key`, else a random key (sessions then valid on
    /// this node only).
    #[arg(long, env = "ABR_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,
    /// Lifetime of a viewer session token, seconds.
    #[arg(long = "session-ttl", env = "ABR_SESSION_TTL")]
    pub session_ttl_s: u64,
    /// How long a saved playback position is kept, seconds.
    #[arg(long = "position-ttl", env = "ABR_POSITION_TTL")]
    pub position_ttl_s: u64,
    /// A viewer counts as live for this many seconds after its last playback event.
    #[arg(long = "viewer-window", env = "ABR_VIEWER_WINDOW")]
    pub viewer_window_s: u64,
    /// Playback writes per second allowed per viewer.
    #[arg(long, env = "ABR_PLAYBACK_WRITE_RPS")]
    pub playback_write_rps: u32,
    /// Playback write burst per viewer.
    #[arg(long, env = "ABR_PLAYBACK_WRITE_BURST")]
    pub playback_write_burst: u32,
    /// Turn on ingest: resumable uploads (tus 1.0) at `/api/v1/uploads` and the job queue
    /// (`--ingest` alone means `true`).
    #[arg(long, env = "ABR_INGEST", action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub ingest: bool,
    /// Directory of ingest state: `uploads/`, `queue.sqlite3` and `deleting/` (videos being
    /// deleted) (required with `ingest`).
    #[arg(long, env = "ABR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest upload accepted, bytes (each token may set a lower one).
    #[arg(long, env = "ABR_UPLOAD_MAX_SIZE")]
    pub upload_max_size: u64,
    /// An incomplete upload is deleted this many seconds after its creation.
    #[arg(long = "upload-expiration", env = "ABR_UPLOAD_EXPIRATION")]
    pub upload_expiration_s: u64,
    /// Upload tokens, `PRINCIPAL:SHA256HEX[:MAX_SIZE[:QUOTA]]` (the token's SHA-256, e.g.
    /// `printf %s TOKEN | sha256sum`; comma-separated on the command line).
    #[arg(
        long,
        env = "ABR_UPLOAD_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub upload_tokens: Vec<String>,
    /// Packaging workers run in-process by `abr serve --ingest` (`service::worker::spawn_pool`);
    /// 0 = none: the jobs are run by `abr worker` processes on the same data directory.
    #[arg(long, env = "ABR_JOB_WORKERS")]
    pub job_workers: usize,
    /// Lease of a claimed packaging task, seconds: a worker that stops renewing loses the task
    /// to another after this long.
    #[arg(long = "job-lease", env = "ABR_JOB_LEASE")]
    pub job_lease_s: u64,
    /// Attempts of a packaging task before its job fails.
    #[arg(long, env = "ABR_JOB_MAX_ATTEMPTS")]
    pub job_max_attempts: u32,
    /// Webhook endpoints of the video lifecycle (`service::webhooks`), `URL SECRET` each; the
    /// secret is `file:PATH`, `env:VAR`, `hex:…` or text (comma-separated on the command line).
    #[arg(
        long = "webhook",
        env = "ABR_WEBHOOKS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhooks: Vec<String>,
    /// Attempts of one webhook delivery before it is kept as a dead letter and skipped.
    #[arg(long, env = "ABR_WEBHOOK_ATTEMPTS")]
    pub webhook_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis: None,
            session_key: None,
            session_ttl_s: 30 * 86_400,
            position_ttl_s: 30 * 86_400,
            viewer_window_s: 30,
            playback_write_rps: 2,
            playback_write_burst: 10,
            ingest: false,
            data_dir: None,
            upload_max_size: 64 << 30,
            upload_expiration_s: 86_400,
            upload_tokens: Vec::new(),
            job_workers: 1,
            job_lease_s: 30,
            job_max_attempts: 3,
            webhooks: Vec::new(),
            webhook_attempts: 10,
        }
    }
}

impl Config {
    /// Checks the settings can work.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let bad = |m: String| Err(ServiceError::Config(m));
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                return bad(format!("redis '{url}' must be a redis:// or unix:// URL"));
            }
        }
        if self.viewer_window_s == 0
            || self.playback_write_rps == 0
            || self.playback_write_burst == 0
        {
            return bad(
                "viewer_window_s, playback_write_rps and playback_write_burst must be at least 1"
                    .into(),
            );
        }
        if self.ingest {
            if self.data_dir.is_none() {
                return bad(
                    "ingest needs data_dir (where uploads and the job queue are kept)".into(),
                );
            }
            if self.upload_max_size == 0 || self.upload_expiration_s == 0 {
                return bad("upload_max_size and upload_expiration_s must be at least 1".into());
            }
        }
        for t in &self.upload_tokens {
            crate::uploads::auth::Token::parse(t).map_err(ServiceError::Config)?;
        }
        if self.job_lease_s == 0 || self.job_max_attempts == 0 || self.webhook_attempts == 0 {
            return bad(
                "job_lease_s, job_max_attempts and webhook_attempts must be at least 1".into(),
            );
        }
        if !self.webhooks.is_empty() && !self.ingest {
            return bad("webhooks need ingest (they announce its videos)".into());
        }
        for w in &self.webhooks {
            crate::webhooks::Endpoint::parse(w).map_err(ServiceError::Config)?;
        }
        Ok(())
    }

    /// The job queue's settings and the packaging workers' (default plan options).
    pub fn job_settings(&self) -> (crate::queue::Settings, crate::worker::Settings) {
        let lease = std::time::Duration::from_secs(self.job_lease_s);
        (
            crate::queue::Settings {
                lease,
                max_attempts: self.job_max_attempts,
                ..crate::queue::Settings::default()
            },
            crate::worker::Settings {
                lease,
                ..crate::worker::Settings::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults work (the documented example's values are checked by `abr serve`'s tests,
    /// which read the whole file); a URL that is not Redis' or a zero limit is refused.
    #[test]
    fn defaults_validate_and_bad_values_are_refused() {
        assert!(Config::default().validate().is_ok());
        let bad = [
            Config {
                redis: Some("http://x".into()),
                ..Config::default()
            },
            Config {
                viewer_window_s: 0,
                ..Config::default()
            },
            Config {
                playback_write_burst: 0,
                ..Config::default()
            },
            Config {
                ingest: true,
                ..Config::default()
            },
            Config {
                ingest: true,
                data_dir: Some("/tmp".into()),
                upload_expiration_s: 0,
                ..Config::default()
            },
            Config {
                upload_tokens: vec!["alice:nothex".into()],
                job_lease_s: 0,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
