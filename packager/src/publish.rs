//! Staging and atomic publication: a package is built in a hidden directory beside its target
//! and renamed into place only when complete, so a failed or killed job never leaves a partial
//! package at the target. Stale staging directories of dead jobs are removed on the next run.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, PackageError, Result};

/// A staging directory for one target; removed on drop unless published.
#[derive(Debug)]
pub struct Staging {
    target: PathBuf,
    dir: PathBuf,
    published: bool,
}

/// The directory `target` lives in and its name: hidden siblings (staging, work area) go there.
pub(crate) fn parent_and_name(target: &Path) -> Result<(PathBuf, &str)> {
    let name = target.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        PackageError::Option(format!(
            "output {} has no usable directory name",
            target.display()
        ))
    })?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

fn staging_prefix(target: &Path) -> Result<(PathBuf, String)> {
    let (parent, name) = parent_and_name(target)?;
    Ok((parent, format!(".{name}.abr-staging.")))
}

/// Whether process `pid` exists on this machine.
pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Refuses a target whose nearest existing ancestor is not a directory (nothing can be made).
pub fn check_parent(target: &Path) -> Result<()> {
    let (parent, _) = staging_prefix(target)?;
    if let Some(file) = parent
        .ancestors()
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
    {
        return Err(PackageError::Write {
            path: target.to_path_buf(),
            source: std::io::Error::other(format!("{} is not a directory", file.display())),
        });
    }
    Ok(())
}

impl Staging {
    /// Prepares a fresh staging directory for `target`. Refuses an existing target unless `force`.
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        if target.exists() && !force {
            return Err(PackageError::OutputExists(target.to_path_buf()));
        }
        if target.exists() && !target.is_dir() {
            return Err(PackageError::Write {
                path: target.to_path_buf(),
                source: std::io::Error::other("exists and is not a directory"),
            });
        }
        let (parent, prefix) = staging_prefix(target)?;
        check_parent(target)?;
        fs::create_dir_all(&parent).write_ctx(&parent)?;
        // Clean staging directories left by killed jobs (their pid is gone).
        if let Ok(entries) = fs::read_dir(&parent) {
            for e in entries.flatten() {
                let n = e.file_name();
                let Some(n) = n.to_str() else { continue };
                if let Some(pid) = n.strip_prefix(&prefix).and_then(|p| p.parse::<i32>().ok()) {
                    if !pid_alive(pid) || pid == std::process::id() as i32 {
                        tracing::info!("removing stale staging directory {}", e.path().display());
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = parent.join(format!("{prefix}{}", std::process::id()));
        fs::create_dir(&dir).write_ctx(&dir)?;
        Ok(Staging {
            target: target.to_path_buf(),
            dir,
            published: false,
        })
    }

    /// The staging directory to write into.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Moves the finished package to the target (replacing an existing one when forced).
    pub fn publish(mut self) -> Result<PathBuf> {
        sync_dir(&self.dir);
        if self.target.exists() {
            // Replace: move the old package aside, move the new one in, delete the old one.
            let old = self.dir.with_extension("old");
            fs::rename(&self.target, &old).write_ctx(&self.target)?;
            if let Err(e) = fs::rename(&self.dir, &self.target) {
                let _ = fs::rename(&old, &self.target);
                return Err(PackageError::Write {
                    path: self.target.clone(),
                    source: e,
                });
            }
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.dir, &self.target).write_ctx(&self.target)?;
        }
        if let Some(p) = self.target.parent() {
            sync_dir(p);
        }
        self.published = true;
        Ok(self.target.clone())
    }
}

/// fsyncs a directory (its entries survive a crash).
pub(crate) fn sync_dir(p: &Path) {
    if let Ok(f) = fs::File::open(p) {
        let _ = f.sync_all();
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_atomic_and_refuses_existing() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("pkg");
        let s = Staging::create(&target, false).unwrap();
        fs::write(s.path().join("a"), b"1").unwrap();
        assert!(!target.exists());
        s.publish().unwrap();
        assert_eq!(fs::read(target.join("a")).unwrap(), b"1");
        assert!(matches!(
            Staging::create(&target, false),
            Err(PackageError::OutputExists(_))
        ));
        // Forced replace.
        let s = Staging::create(&target, true).unwrap();
        fs::write(s.path().join("b"), b"2").unwrap();
        s.publish().unwrap();
        assert!(target.join("b").exists() && !target.join("a").exists());
        // Dropped without publishing: nothing left behind.
        let t2 = tmp.path().join("pkg2");
        let s = Staging::create(&t2, false).unwrap();
        let sp = s.path().to_path_buf();
        drop(s);
        assert!(!sp.exists() && !t2.exists());
        // A stale staging dir of a dead pid is cleaned.
        let stale = tmp.path().join(".pkg3.abr-staging.999999999");
        fs::create_dir(&stale).unwrap();
        let s = Staging::create(&tmp.path().join("pkg3"), false).unwrap();
        assert!(!stale.exists());
        drop(s);
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pkg"], "only the published package remains");
    }
}
