//! `abr sign`: a signed URL prefix for a package.

use anyhow::{bail, Result};

/// `abr sign` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Package name, also nested as the video service publishes them (`alice/holiday`); the
    /// URL opens that package only. At most 4 segments.
    package: String,
    /// Signing key (`hex:…` or text).
    #[arg(long, env = "ABR_SIGNING_KEY", hide_env_values = true)]
    key: String,
    /// Validity in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

/// Prints `/_t/<expiry>/<sig>/<package>/`.
pub fn run(a: Args) -> Result<()> {
    let segs: Vec<&str> = a.package.trim_matches('/').split('/').collect();
    if segs
        .iter()
        .any(|s| s.is_empty() || s.starts_with('.') || *s == origin::auth::PREFIX)
        || segs.len() > origin::auth::MAX_SCOPE_DEPTH
    {
        bail!(
            "package '{}': 1–{} path segments, none empty, hidden or '{}'",
            a.package,
            origin::auth::MAX_SCOPE_DEPTH,
            origin::auth::PREFIX
        );
    }
    let package = segs.join("/");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + a.ttl;
    let key = origin::auth::key_bytes(&a.key);
    println!("{}", origin::auth::signed_prefix(&key, exp, &package));
    Ok(())
}
