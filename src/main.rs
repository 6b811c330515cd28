//! `abr`: the command line. Parses arguments and calls the libraries; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod cmds;

#[derive(Parser)]
#[command(
    name = "abr",
    version,
    about = "Adaptive-bitrate packager (HLS + DASH) and origin"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), also read from ABR_LOG.
    #[arg(long, global = true, env = "ABR_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transcode INPUT once into an aligned H.264/AAC ladder and write HLS and DASH to --out
    /// (plan + every task on an in-process pool + assemble; resumes an interrupted run).
    Package(cmds::package::Args),
    /// Probe INPUT once and write the job's plan beside --out; the last line says `tasks: N`.
    Plan(cmds::plan::Args),
    /// Run one task of a plan (a video shard or the audio task), e.g. one array-job index.
    Shard(cmds::shard::Args),
    /// Check every task of a plan and publish the package atomically.
    Assemble(cmds::assemble::Args),
    /// Serve the packages under --root over HTTP (Range, caching, CORS, limits, metrics).
    Serve(Box<ServeArgs>),
    /// Print a signed URL prefix for a package (for `signing_key` deployments).
    Sign(SignArgs),
    /// Follow playback events of a cluster (its Redis) and show live viewers per package.
    Monitor(MonitorArgs),
}

#[derive(clap::Args)]
struct MonitorArgs {
    /// Redis URL of the cluster.
    #[arg(long, env = "ABR_REDIS")]
    redis: String,
    /// Seconds a viewer stays live after its last event (the nodes' viewer_window_s).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Seconds between live-viewer summaries.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Exit after this many events (0 = until interrupted).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

/// `abr serve` flags; each also reads an `ABR_*` variable and overrides the --config file.
#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see docs/origin.example.toml).
    #[arg(long, env = "ABR_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding packages.
    #[arg(long, env = "ABR_ROOT")]
    root: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "ABR_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Separate listener for /metrics and /debug/pprof.
    #[arg(long, env = "ABR_ADMIN_LISTEN")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Worker threads (0 = CPUs).
    #[arg(long, env = "ABR_WORKERS")]
    workers: Option<usize>,
    /// Maximum concurrent connections.
    #[arg(long, env = "ABR_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds to receive a request head before the connection is closed.
    #[arg(long, env = "ABR_HEADER_TIMEOUT")]
    header_timeout: Option<f64>,
    /// Idle keep-alive seconds.
    #[arg(long, env = "ABR_KEEP_ALIVE")]
    keep_alive: Option<f64>,
    /// Seconds between SIGTERM and closing the listener.
    #[arg(long, env = "ABR_SHUTDOWN_GRACE")]
    shutdown_grace: Option<f64>,
    /// Seconds in-flight responses may take after the listener closes.
    #[arg(long, env = "ABR_DRAIN_TIMEOUT")]
    drain_timeout: Option<f64>,
    /// Cache-Control max-age of manifests.
    #[arg(long, env = "ABR_MANIFEST_MAX_AGE")]
    manifest_max_age: Option<u64>,
    /// stale-while-revalidate of manifests, seconds (0 = not sent).
    #[arg(long, env = "ABR_MANIFEST_STALE_WHILE_REVALIDATE")]
    manifest_stale_while_revalidate: Option<u64>,
    /// stale-if-error of manifests, seconds (0 = not sent).
    #[arg(long, env = "ABR_MANIFEST_STALE_IF_ERROR")]
    manifest_stale_if_error: Option<u64>,
    /// CDN-Cache-Control max-age of manifests, seconds (0 = no CDN-Cache-Control).
    #[arg(long, env = "ABR_MANIFEST_CDN_MAX_AGE")]
    manifest_cdn_max_age: Option<u64>,
    /// stale-while-revalidate of segments and init files, seconds (0 = not sent).
    #[arg(long, env = "ABR_SEGMENT_STALE_WHILE_REVALIDATE")]
    segment_stale_while_revalidate: Option<u64>,
    /// stale-if-error of segments and init files, seconds (0 = not sent).
    #[arg(long, env = "ABR_SEGMENT_STALE_IF_ERROR")]
    segment_stale_if_error: Option<u64>,
    /// Allowed CORS origins (comma-separated, or *).
    #[arg(long, env = "ABR_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Option<Vec<String>>,
    /// Per-client requests per second (0 = off).
    #[arg(long, env = "ABR_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Per-client burst.
    #[arg(long, env = "ABR_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Trusted proxy networks (comma-separated CIDRs) for X-Forwarded-For.
    #[arg(long, env = "ABR_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<String>>,
    /// Hot-file cache budget in bytes (0 = off).
    #[arg(long, env = "ABR_CACHE_BYTES")]
    cache_bytes: Option<u64>,
    /// Send file bodies with sendfile(2) on plain HTTP/1.1 (true/false; default true).
    #[arg(long, env = "ABR_SENDFILE")]
    sendfile: Option<bool>,
    /// Require signed URLs made with this key (`hex:…` or text).
    #[arg(long, env = "ABR_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "ABR_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "ABR_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Directory of npm-installed player scripts.
    #[arg(long, env = "ABR_PLAYER_ASSETS")]
    player_assets: Option<PathBuf>,
    /// Log format: json or text.
    #[arg(long, env = "ABR_LOG_FORMAT")]
    log_format: Option<String>,
    /// Node name (metrics label, playback events); default: host name.
    #[arg(long, env = "ABR_NODE")]
    node: Option<String>,
    /// Redis URL for state shared by a cluster (default: in-process state).
    #[arg(long, env = "ABR_REDIS")]
    redis: Option<String>,
    /// HMAC key of viewer session tokens (`hex:…` or text), the same on every node.
    #[arg(long, env = "ABR_SESSION_KEY", hide_env_values = true)]
    session_key: Option<String>,
}

#[derive(clap::Args)]
struct SignArgs {
    /// Package name.
    package: String,
    /// Signing key (`hex:…` or text).
    #[arg(long, env = "ABR_SIGNING_KEY", hide_env_values = true)]
    key: String,
    /// Validity in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(_) = cli.command {
        // The origin logs access lines at info; JSON unless configured otherwise (set in serve()).
    } else {
        init_logs(&cli.log, false);
    }
    match run(cli.command, &cli.log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("abr: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn init_logs(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "warn".into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().flatten_event(true).with_current_span(false).init();
    } else {
        b.init();
    }
}

fn run(cmd: Command, log: &str) -> Result<()> {
    match cmd {
        Command::Package(a) => cmds::package::run(a),
        Command::Plan(a) => cmds::plan::run(a),
        Command::Shard(a) => cmds::shard::run(a),
        Command::Assemble(a) => cmds::assemble::run(a),
        Command::Serve(a) => serve(*a, log),
        Command::Monitor(a) => {
            if !(a.interval.is_finite() && a.interval >= 0.1) {
                bail!("--interval must be at least 0.1 s");
            }
            origin::monitor::run(origin::monitor::MonitorOptions {
                redis: a.redis,
                window: std::time::Duration::from_secs(a.window.max(1)),
                interval: std::time::Duration::from_secs_f64(a.interval),
                json: a.json,
                max_events: a.count,
            })?;
            Ok(())
        }
        Command::Sign(a) => {
            let exp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
                + a.ttl;
            let key = origin::auth::key_bytes(&a.key);
            println!("{}", origin::auth::signed_prefix(&key, exp, &a.package));
            Ok(())
        }
    }
}

fn serve(a: ServeArgs, log: &str) -> Result<()> {
    let mut c = origin::Config::load(a.config.as_deref())?;
    macro_rules! set {
        ($($field:ident = $value:expr;)*) => { $(if let Some(v) = $value { c.$field = v; })* };
    }
    set! {
        root = a.root;
        listen = a.listen;
        workers = a.workers;
        max_connections = a.max_connections;
        header_timeout_s = a.header_timeout;
        keep_alive_s = a.keep_alive;
        shutdown_grace_s = a.shutdown_grace;
        drain_timeout_s = a.drain_timeout;
        manifest_max_age_s = a.manifest_max_age;
        manifest_stale_while_revalidate_s = a.manifest_stale_while_revalidate;
        manifest_stale_if_error_s = a.manifest_stale_if_error;
        manifest_cdn_max_age_s = a.manifest_cdn_max_age;
        segment_stale_while_revalidate_s = a.segment_stale_while_revalidate;
        segment_stale_if_error_s = a.segment_stale_if_error;
        cors_origins = a.cors_origins;
        rate_limit_rps = a.rate_limit;
        rate_limit_burst = a.rate_burst;
        cache_bytes = a.cache_bytes;
        sendfile = a.sendfile;
        player_assets = a.player_assets;
        log_format = a.log_format;
    }
    if a.admin_listen.is_some() {
        c.admin_listen = a.admin_listen;
    }
    if a.signing_key.is_some() {
        c.signing_key = a.signing_key;
    }
    if a.node.is_some() {
        c.node = a.node;
    }
    if a.redis.is_some() {
        c.redis = a.redis;
    }
    if a.session_key.is_some() {
        c.session_key = a.session_key;
    }
    if a.tls_cert.is_some() {
        c.tls_cert = a.tls_cert;
    }
    if a.tls_key.is_some() {
        c.tls_key = a.tls_key;
    }
    if let Some(list) = a.trusted_proxies {
        c.trusted_proxies = list
            .iter()
            .map(|s| {
                s.trim()
                    .parse()
                    .with_context(|| format!("trusted proxy '{s}' is not a CIDR"))
            })
            .collect::<Result<_>>()?;
    }
    // Access lines are info-level events of target "access".
    let filter = if log == "warn" {
        "warn,access=info,origin=info"
    } else {
        log
    };
    init_logs(filter, c.log_format == "json");
    origin::run(c)?;
    Ok(())
}
