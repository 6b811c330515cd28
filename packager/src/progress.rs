//! Progress reporting: an indicatif bar on a terminal, or one JSON line per update for pipelines.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, nothing otherwise.
    Auto,
    /// JSON lines on stdout.
    Json,
    /// Nothing.
    Quiet,
}

/// Reports progress as a share of the source duration.
pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    start: Instant,
    total_secs: f64,
    last_json: Option<Instant>,
}

impl Progress {
    /// Starts reporting for a source of `total_secs`.
    pub fn new(mode: ProgressMode, total_secs: f64) -> Self {
        let bar = (mode == ProgressMode::Auto && std::io::stderr().is_terminal()).then(|| {
            let b =
                ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr_with_hz(4));
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Progress {
            mode,
            bar,
            start: Instant::now(),
            total_secs: total_secs.max(0.001),
            last_json: None,
        }
    }

    /// Reports `done_secs` of source processed.
    pub fn update(&mut self, done_secs: f64) {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-6);
        let speed = done_secs / elapsed;
        let frac = (done_secs / self.total_secs).clamp(0.0, 1.0);
        let eta = if speed > 0.0 {
            ((self.total_secs - done_secs).max(0.0) / speed).round()
        } else {
            f64::NAN
        };
        if let Some(b) = &self.bar {
            b.set_position((frac * 1000.0) as u64);
            let eta_s = if eta.is_finite() {
                format!("{}s", eta as u64)
            } else {
                "?".into()
            };
            b.set_message(format!("{speed:.2}× realtime, ETA {eta_s}"));
        }
        if self.mode == ProgressMode::Json {
            let now = Instant::now();
            if self
                .last_json
                .is_some_and(|t| now - t < Duration::from_millis(500))
            {
                return;
            }
            self.last_json = Some(now);
            let line = serde_json::json!({
                "event": "progress",
                "percent": (frac * 1000.0).round() / 10.0,
                "processed_s": (done_secs * 1000.0).round() / 1000.0,
                "duration_s": (self.total_secs * 1000.0).round() / 1000.0,
                "speed": (speed * 100.0).round() / 100.0,
                "eta_s": if eta.is_finite() { serde_json::json!(eta) } else { serde_json::Value::Null },
                "elapsed_s": (elapsed * 10.0).round() / 10.0,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Prints one JSON event line (JSON mode only).
    pub fn event(&self, line: serde_json::Value) {
        if self.mode == ProgressMode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Ends the bar; prints a final JSON line with the output path on success.
    pub fn finish(self, out: Option<&std::path::Path>) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.mode == ProgressMode::Json {
            if let Some(out) = out {
                let line = serde_json::json!({
                    "event": "done",
                    "percent": 100.0,
                    "output": out.display().to_string(),
                    "elapsed_s": (self.start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                });
                // A closed stdout (e.g. piped into `head`) must not turn success into a panic.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        }
    }
}
