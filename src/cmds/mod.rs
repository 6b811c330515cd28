//! One module per subcommand; each turns its arguments into library calls.

pub mod assemble;
pub mod monitor;
pub mod package;
pub mod plan;
pub mod serve;
pub mod shard;
pub mod sign;
pub mod upload;
pub mod worker;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use packager::{Formats, LadderSpec, ProgressMode, Spec};

/// Progress output of packaging commands.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProgressArg {
    /// A progress bar when stderr is a terminal.
    Auto,
    /// One JSON object per line on stdout.
    Json,
    /// No progress output.
    None,
}

impl From<ProgressArg> for ProgressMode {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Json => ProgressMode::Json,
            ProgressArg::None => ProgressMode::Quiet,
        }
    }
}

/// What to package: shared by `abr package` and `abr plan` (the same options make the same plan).
#[derive(clap::Args)]
pub struct SpecArgs {
    /// Source video file.
    pub input: PathBuf,
    /// Package directory to create (published atomically when complete).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Ladder file (TOML); the default ladder is derived from the source.
    #[arg(long)]
    pub ladder: Option<PathBuf>,
    /// Nominal segment duration in seconds (1–60).
    #[arg(long, default_value_t = 4.0)]
    pub segment_duration: f64,
    /// Shard length in seconds, rounded to whole segments (0 = the whole source as one shard).
    #[arg(long, default_value_t = packager::spec::DEFAULT_SHARD_SECONDS)]
    pub shard_seconds: f64,
    /// Formats to write: hls, dash, or both (comma-separated).
    #[arg(long, default_value = "hls,dash", value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Replace --out if it already exists.
    #[arg(long)]
    pub force: bool,
}

impl SpecArgs {
    /// The library's request.
    pub fn spec(self) -> Result<Spec> {
        let mut formats = Formats {
            hls: false,
            dash: false,
        };
        for f in &self.formats {
            match f.trim() {
                "hls" => formats.hls = true,
                "dash" => formats.dash = true,
                other => bail!("unknown format '{other}' in --formats (expected hls, dash)"),
            }
        }
        let ladder = match &self.ladder {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read ladder file {}", p.display()))?;
                LadderSpec::from_toml(&text)
                    .with_context(|| format!("ladder file {}", p.display()))?
            }
            None => LadderSpec::default(),
        };
        Ok(Spec {
            input: self.input,
            out: self.out,
            ladder,
            segment_duration: self.segment_duration,
            shard_seconds: self.shard_seconds,
            formats,
            force: self.force,
        })
    }
}
