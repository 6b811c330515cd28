//! `abr serve`: the origin (data plane) with the service's routes (control plane) in one server.
//!
//! Settings: defaults < the TOML file < `ABR_*` variables < flags. Each setting is declared once,
//! as a field of [`origin::Config`] or [`service::Config`]: its name is the TOML key and its
//! `#[arg]` the flag and variable. The file is read into both structs (one flat table: a key
//! neither knows is an error), then the flags and variables given are applied over them with
//! clap's update mode, which sets only the settings that were present.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgMatches, FromArgMatches};

/// `abr serve` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file (see docs/origin.example.toml).
    #[arg(long, env = "ABR_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

/// The flags and variables of every setting, as parsed: applied over the file by [`Self::apply`].
pub struct Overrides(ArgMatches);

impl clap::Args for Overrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        // The update variants: no setting is required, none has a default on the command line
        // (the defaults are the structs'), so only what was given is applied.
        let cmd = <origin::Config as clap::Args>::augment_args_for_update(cmd);
        <service::Config as clap::Args>::augment_args_for_update(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Overrides(m.clone()))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = m.clone();
        Ok(())
    }
}

impl Overrides {
    /// Sets every setting given as a flag or variable.
    fn apply(&self, o: &mut origin::Config, s: &mut service::Config) -> Result<(), clap::Error> {
        o.update_from_arg_matches(&self.0)?;
        s.update_from_arg_matches(&self.0)
    }
}

/// Reads `file` over the defaults of both crates' settings.
pub fn load(file: Option<&Path>) -> Result<(origin::Config, service::Config)> {
    let Some(p) = file else {
        return Ok(Default::default());
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    parse(&text).with_context(|| format!("config {}", p.display()))
}

/// One TOML document into both structs; a key that neither takes is refused.
fn parse(text: &str) -> Result<(origin::Config, service::Config)> {
    fn part<T: serde::de::DeserializeOwned>(text: &str) -> Result<(T, BTreeSet<String>)> {
        let mut ignored = BTreeSet::new();
        let de = toml::Deserializer::parse(text).map_err(one_line)?;
        let v = serde_ignored::deserialize(de, |path| {
            ignored.insert(path.to_string());
        })
        .map_err(one_line)?;
        Ok((v, ignored))
    }
    let (o, not_origin) = part::<origin::Config>(text)?;
    let (s, not_service) = part::<service::Config>(text)?;
    if let Some(key) = not_origin.intersection(&not_service).next() {
        bail!("unknown key `{key}` (every key is listed in docs/origin.example.toml)");
    }
    Ok((o, s))
}

fn one_line(e: toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", e.to_string().trim().replace('\n', " "))
}

/// Runs `abr serve` until SIGTERM/SIGINT; `init_logs(filter, json)` is called once the log
/// format is known (`log` is the `--log` filter; its default also shows access lines).
pub fn run(a: Args, log: &str, init_logs: fn(&str, bool)) -> Result<()> {
    let (mut o, mut s) = load(a.config.as_deref())?;
    a.overrides.apply(&mut o, &mut s)?;
    s.validate()?;
    // Access lines are info-level events of target "access".
    let filter = if log == "warn" {
        "warn,access=info,origin=info,service=info"
    } else {
        log
    };
    init_logs(filter, o.log_format == "json");
    origin::run(o, move |origin| {
        service::extension(s, origin).map_err(|e| origin::OriginError::Extension(Box::new(e)))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: Args,
    }

    fn overlay(
        file: &str,
        argv: &[&str],
    ) -> Result<(origin::Config, service::Config), clap::Error> {
        let (mut o, mut s) = parse(file).unwrap();
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("abr").chain(argv.iter().copied()))?;
        Cli::from_arg_matches(&m)?
            .serve
            .overrides
            .apply(&mut o, &mut s)?;
        Ok((o, s))
    }

    /// Defaults < file < flags, across both crates' settings; what is not given keeps the file's
    /// value (flags have no defaults of their own).
    #[test]
    fn flags_override_the_file_setting_by_setting() {
        let file =
            "rate_limit_rps = 5\nrate_limit_burst = 7\nsendfile = false\nviewer_window_s = 9\n\
                    redis = \"redis://127.0.0.1:1/\"\ncors_origins = [\"https://a.example\"]\n";
        let (o, s) = overlay(file, &[]).unwrap();
        assert_eq!((o.rate_limit_rps, o.rate_limit_burst), (5, 7));
        assert!(!o.sendfile);
        assert_eq!(o.cors_origins, ["https://a.example"]);
        assert_eq!(s.viewer_window_s, 9);
        assert_eq!(s.redis.as_deref(), Some("redis://127.0.0.1:1/"));
        assert_eq!(o.listen, origin::Config::default().listen);
        let (o, s) = overlay(
            file,
            &[
                "--rate-limit",
                "50",
                "--sendfile",
                "true",
                "--cors-origins",
                "https://b.example,https://c.example",
                "--trusted-proxies",
                "127.0.0.1/32,10.0.0.0/8",
                "--viewer-window",
                "3",
                "--session-key",
                "k",
                "--header-timeout",
                "1.5",
                "--admin-listen",
                "127.0.0.1:9999",
            ],
        )
        .unwrap();
        assert_eq!((o.rate_limit_rps, o.rate_limit_burst), (50, 7));
        assert!(o.sendfile);
        assert_eq!(o.cors_origins, ["https://b.example", "https://c.example"]);
        assert_eq!(o.trusted_proxies.len(), 2);
        assert_eq!(o.header_timeout_s, 1.5);
        assert_eq!(o.admin_listen, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(
            (s.viewer_window_s, s.session_key.as_deref()),
            (3, Some("k"))
        );
        assert!(overlay("", &["--trusted-proxies", "nonsense"]).is_err());
        assert!(overlay("", &["--sendfile", "maybe"]).is_err());
    }

    /// A key of either crate is accepted, a key of neither is refused by name, a bad value names
    /// its key, and the documented example gives the defaults.
    #[test]
    fn file_keys_belong_to_one_crate_or_are_refused() {
        assert!(parse("root = \"/srv\"\nsession_ttl_s = 60\n").is_ok());
        let e = parse("bogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown key `bogus`"), "{e}");
        let e = parse("listen = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
        // The example's service keys are the defaults (origin's own test checks its keys).
        let (_, s) = parse(include_str!("../../docs/origin.example.toml")).unwrap();
        let d = service::Config::default();
        assert_eq!(
            (s.redis, s.session_key, s.session_ttl_s, s.position_ttl_s),
            (d.redis, d.session_key, d.session_ttl_s, d.position_ttl_s)
        );
        assert_eq!(
            (
                s.viewer_window_s,
                s.playback_write_rps,
                s.playback_write_burst
            ),
            (
                d.viewer_window_s,
                d.playback_write_rps,
                d.playback_write_burst
            )
        );
        assert_eq!(
            (s.job_workers, s.job_lease_s, s.job_max_attempts),
            (d.job_workers, d.job_lease_s, d.job_max_attempts)
        );
        assert_eq!(
            (
                s.ingest,
                s.data_dir,
                s.upload_max_size,
                s.upload_expiration_s
            ),
            (
                d.ingest,
                d.data_dir,
                d.upload_max_size,
                d.upload_expiration_s
            )
        );
        assert_eq!(s.upload_tokens, d.upload_tokens);
    }

    /// `--ingest` alone turns ingest on and keeps the other flags; the upload settings come from
    /// flags (tokens comma-separated) over the file.
    #[test]
    fn ingest_flags() {
        let file = "ingest = false\nupload_max_size = 5\ndata_dir = \"/srv/abr\"\n";
        let (_, s) = overlay(file, &[]).unwrap();
        assert!(!s.ingest);
        assert_eq!(s.upload_max_size, 5);
        let (o, s) = overlay(
            file,
            &[
                "--ingest",
                "--upload-tokens",
                "a:00,b:11",
                "--upload-expiration",
                "7",
                "--rate-limit",
                "3",
            ],
        )
        .unwrap();
        assert!(s.ingest);
        assert_eq!(o.rate_limit_rps, 3);
        assert_eq!(s.upload_tokens, ["a:00", "b:11"]);
        assert_eq!((s.upload_expiration_s, s.upload_max_size), (7, 5));
        assert_eq!(s.data_dir.as_deref(), Some(Path::new("/srv/abr")));
        let (_, s) = overlay("ingest = true\n", &["--ingest", "false"]).unwrap();
        assert!(!s.ingest);
    }
}
