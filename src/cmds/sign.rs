//! `abr sign`: a signed URL prefix for a package.

use anyhow::Result;

/// `abr sign` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Package name.
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
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + a.ttl;
    let key = origin::auth::key_bytes(&a.key);
    println!("{}", origin::auth::signed_prefix(&key, exp, &a.package));
    Ok(())
}
