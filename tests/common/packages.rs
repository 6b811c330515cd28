//! Package roots for the end-to-end tests: a fixture packaged once into `ROOT/<name>`.
#![allow(dead_code)]

use std::path::PathBuf;

use super::{fixture, fixture_dir, package, test_ladder};

/// A fresh ROOT (a directory named `prefix…` under target/fixtures) with one package `name`:
/// fixture `shape` of `secs` seconds, the 3-rung test ladder, 2 s segments.
pub fn packaged_root(prefix: &str, shape: &str, secs: u32, name: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(fixture_dir())
        .unwrap()
        .keep();
    let src = fixture(shape, secs);
    let ladder = test_ladder(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    package(
        &src,
        &root.join(name),
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    root
}
