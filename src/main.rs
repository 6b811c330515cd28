//! `abr`: the command line. Parses arguments and calls the libraries; nothing else lives here.

use std::process::ExitCode;

use anyhow::Result;
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
    /// Serve the packages under --root over HTTP (Range, caching, CORS, limits, metrics) and
    /// the viewer-state API.
    Serve(cmds::serve::Args),
    /// Print a signed URL prefix for a package (for `signing_key` deployments).
    Sign(cmds::sign::Args),
    /// Follow playback events of a cluster (its Redis) and show live viewers per package.
    Monitor(cmds::monitor::Args),
    /// Run packaging workers on the job queue of --data-dir until SIGTERM/SIGINT.
    Worker(cmds::worker::Args),
    /// Upload a video to `abr serve --ingest` (tus, resumable across runs); `--wait` follows it
    /// until it is packaged.
    Upload(cmds::upload::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(_) = cli.command {
        // The origin logs access lines at info; JSON unless configured otherwise (set by cmds::serve).
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
        Command::Serve(a) => cmds::serve::run(a, log, init_logs),
        Command::Monitor(a) => cmds::monitor::run(a),
        Command::Sign(a) => cmds::sign::run(a),
        Command::Worker(a) => cmds::worker::run(a),
        Command::Upload(a) => cmds::upload::run(a),
    }
}
