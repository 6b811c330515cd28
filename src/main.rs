//! `abr`: the command line. Parses arguments and calls the libraries; nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use packager::{Formats, Job, LadderSpec, ProgressMode};

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
    /// Transcode INPUT once into an aligned H.264/AAC ladder and write HLS and DASH to --out.
    Package(PackageArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ProgressArg {
    /// A progress bar when stderr is a terminal.
    Auto,
    /// One JSON object per line on stdout.
    Json,
    /// No progress output.
    None,
}

#[derive(clap::Args)]
struct PackageArgs {
    /// Source video file.
    input: PathBuf,
    /// Package directory to create (published atomically when complete).
    #[arg(long, short)]
    out: PathBuf,
    /// Ladder file (TOML); the default ladder is derived from the source.
    #[arg(long)]
    ladder: Option<PathBuf>,
    /// Nominal segment duration in seconds (1–60).
    #[arg(long, default_value_t = 4.0)]
    segment_duration: f64,
    /// Formats to write: hls, dash, or both (comma-separated).
    #[arg(long, default_value = "hls,dash", value_delimiter = ',')]
    formats: Vec<String>,
    /// Replace --out if it already exists.
    #[arg(long)]
    force: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
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

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Package(a) => package(a),
    }
}

fn package(a: PackageArgs) -> Result<()> {
    let mut formats = Formats {
        hls: false,
        dash: false,
    };
    for f in &a.formats {
        match f.trim() {
            "hls" => formats.hls = true,
            "dash" => formats.dash = true,
            other => bail!("unknown format '{other}' in --formats (expected hls, dash)"),
        }
    }
    let ladder = match &a.ladder {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read ladder file {}", p.display()))?;
            LadderSpec::from_toml(&text).with_context(|| format!("ladder file {}", p.display()))?
        }
        None => LadderSpec::default(),
    };
    let progress = match a.progress {
        ProgressArg::Auto => ProgressMode::Auto,
        ProgressArg::Json => ProgressMode::Json,
        ProgressArg::None => ProgressMode::Quiet,
    };
    let job = Job {
        input: a.input,
        out: a.out,
        ladder,
        segment_duration: a.segment_duration,
        formats,
        force: a.force,
        progress,
    };
    let s = packager::run(&job)?;
    if progress != ProgressMode::Json {
        let n = s.info.hls.len().max(s.info.dash_video.len());
        eprintln!(
            "abr: packaged {} ({:.1} s, {n} renditions) in {:.1} s ({:.2}× realtime) → {}",
            s.probe.path.display(),
            s.info.duration_secs,
            s.elapsed.as_secs_f64(),
            s.info.duration_secs / s.elapsed.as_secs_f64().max(1e-3),
            s.out.display()
        );
    }
    Ok(())
}
