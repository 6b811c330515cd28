//! Helpers of the library page tests (tests/library.rs): `tests/player/library.mjs` driving the
//! page of an [`Ingest`] server in headless Chromium.
#![allow(dead_code)]

use std::path::Path;

use super::origin::node_json;
use super::uploads::Ingest;

/// Runs `library.mjs --mode MODE` against `ing` with `token` and `file` (none for `pages`) plus
/// `extra` arguments; asserts it succeeded and returns its result line.
pub fn drive(
    ing: &Ingest,
    token: &str,
    file: Option<&Path>,
    mode: &str,
    extra: &[&str],
) -> serde_json::Value {
    let url = format!("http://{}", ing.addr());
    let file = file.map(|f| f.to_str().expect("fixture path is UTF-8"));
    let mut args = vec!["--url", url.as_str(), "--token", token, "--mode", mode];
    if let Some(f) = file {
        args.extend(["--file", f]);
    }
    args.extend_from_slice(extra);
    let (st, v, stderr) = node_json("library.mjs", &args);
    assert!(
        st.success() && v["ok"] == true,
        "library page, {mode}: {v}\n{stderr}"
    );
    assert_eq!(v["loginShown"], true, "the token is asked first: {v}");
    v
}

/// The form's progress readings that lie strictly between 0 and 100, in order.
pub fn progress_between(v: &serde_json::Value) -> Vec<f64> {
    v["progress"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_f64())
                .filter(|p| *p > 0.0 && *p < 100.0)
                .collect()
        })
        .unwrap_or_default()
}
