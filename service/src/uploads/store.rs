//! Uploads on disk, under `data_dir/uploads/<id>/`:
//!
//! - `data`: the bytes received;
//! - `offset`: the durable offset (decimal), replaced (temporary file, fsync, rename, fsync of
//!   the directory) only after `data` was fsynced up to it, so it never runs ahead of the bytes;
//! - `info.json`: principal, length, metadata, created, expires, state (replaced the same way).
//!
//! After a crash the offset file is the truth: [`Store::load_all`] truncates `data` back to it.
//! An upload directory is made complete under a hidden temporary name and renamed into place;
//! one being deleted is renamed to a hidden name first, so a crash leaves no half upload.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Whether the upload received all its bytes (and its job was enqueued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadState {
    /// Receiving bytes.
    Incomplete,
    /// All bytes received and the packaging job enqueued.
    Complete,
}

/// `info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Owner.
    pub principal: String,
    /// `Upload-Length`.
    pub length: u64,
    /// `Upload-Metadata` as sent (echoed by HEAD).
    pub metadata: String,
    /// Package name (from the metadata).
    pub name: String,
    /// The client's file name (from the metadata).
    pub filename: Option<String>,
    /// Creation (Unix seconds).
    pub created: u64,
    /// Expiry of the incomplete upload (Unix seconds).
    pub expires: u64,
    /// State.
    pub state: UploadState,
}

/// One upload found by [`Store::load_all`].
#[derive(Debug)]
pub struct Loaded {
    /// Its id.
    pub id: String,
    /// Its info.
    pub info: Info,
    /// Its durable offset.
    pub offset: u64,
}

/// Whether `id` is an upload id (128 random bits, 32 lowercase hex digits).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new random upload id.
pub fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The uploads directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

const TMP_PREFIX: &str = ".new-";
const DEL_PREFIX: &str = ".del-";

impl Store {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir)?;
        Ok(Store {
            dir: dir.canonicalize()?,
        })
    }

    /// The directory of upload `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The data file of upload `id` (absolute).
    pub fn data_path(&self, id: &str) -> PathBuf {
        self.dir_of(id).join("data")
    }

    /// Creates upload `id` with no bytes, durably.
    pub fn create(&self, id: &str, info: &Info) -> io::Result<()> {
        let tmp = self.dir.join(format!("{TMP_PREFIX}{id}"));
        fs::create_dir(&tmp)?;
        File::create(tmp.join("data"))?.sync_all()?;
        replace(&tmp, "offset", b"0")?;
        replace(&tmp, "info.json", &info_json(info)?)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, self.dir_of(id))?;
        sync_dir(&self.dir)
    }

    /// Replaces `info.json` of `id` durably.
    pub fn write_info(&self, id: &str, info: &Info) -> io::Result<()> {
        replace(&self.dir_of(id), "info.json", &info_json(info)?)
    }

    /// Opens `id`'s data for appending at `offset` (anything past it, never acknowledged, is
    /// cut off first).
    pub fn open_data(&self, id: &str, offset: u64) -> io::Result<File> {
        let mut f = OpenOptions::new().write(true).open(self.data_path(id))?;
        f.set_len(offset)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(f)
    }

    /// Makes `offset` durable: `data` is fsynced first, then the offset file replaced.
    pub fn commit(&self, id: &str, data: &File, offset: u64) -> io::Result<()> {
        data.sync_data()?;
        replace(&self.dir_of(id), "offset", offset.to_string().as_bytes())
    }

    /// Deletes upload `id` (renamed away first, so a crash never leaves half of it).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let gone = self.dir.join(format!("{DEL_PREFIX}{id}"));
        match fs::rename(self.dir_of(id), &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        sync_dir(&self.dir)?;
        fs::remove_dir_all(&gone)
    }

    /// Every upload on disk, with its data truncated to its durable offset; leftovers of
    /// interrupted creations and deletions are removed. Unreadable uploads are logged and
    /// skipped (left on disk).
    pub fn load_all(&self) -> io::Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX) || name.starts_with(DEL_PREFIX) {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    tracing::warn!(target: "service", dir = %e.path().display(), error = %err, "cannot remove leftover upload directory");
                }
                continue;
            }
            if !valid_id(name) {
                continue;
            }
            match self.load(name) {
                Ok(l) => out.push(l),
                Err(err) => {
                    tracing::error!(target: "service", upload = name, error = %err, "unreadable upload skipped")
                }
            }
        }
        Ok(out)
    }

    /// Upload `id` as the disk has it now, read only (another node sharing the directory may
    /// have created it or moved its offset): its info and durable offset, `None` when absent.
    pub fn read(&self, id: &str) -> io::Result<Option<(Info, u64)>> {
        let dir = self.dir_of(id);
        let bytes = match fs::read(dir.join("info.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let info: Info = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        let offset = read_offset(&dir)?.min(info.length);
        Ok(Some((info, offset)))
    }

    /// Ids of the uploads on disk.
    pub fn ids(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            if let Some(name) = e?.file_name().to_str().filter(|n| valid_id(n)) {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    fn load(&self, id: &str) -> io::Result<Loaded> {
        let dir = self.dir_of(id);
        let info: Info =
            serde_json::from_slice(&fs::read(dir.join("info.json"))?).map_err(io::Error::other)?;
        let mut offset = read_offset(&dir)?;
        let data = OpenOptions::new().write(true).open(dir.join("data"))?;
        let len = data.metadata()?.len();
        if len > offset {
            // Bytes written after the last durable offset: never acknowledged, cut.
            data.set_len(offset)?;
            data.sync_all()?;
        } else if len < offset {
            // Cannot happen unless the disk lost synced data: trust the bytes.
            tracing::error!(target: "service", upload = id, offset, len, "data shorter than its durable offset; resuming from its length");
            offset = len;
            self.commit(id, &data, offset)?;
        }
        let offset = offset.min(info.length);
        Ok(Loaded {
            id: id.to_string(),
            info,
            offset,
        })
    }
}

/// The durable offset in `dir/offset`.
fn read_offset(dir: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(dir.join("offset"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{}/offset holds '{}'", dir.display(), text.trim())))
}

fn info_json(info: &Info) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(info).map_err(io::Error::other)
}

/// Replaces `dir/name` with `bytes` durably: temporary file, fsync, rename, fsync of `dir`.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Info {
        Info {
            principal: "alice".into(),
            length: 10,
            metadata: String::new(),
            name: "cat".into(),
            filename: None,
            created: 1,
            expires: 2,
            state: UploadState::Incomplete,
        }
    }

    /// Bytes past the durable offset (a crash between the write and the commit) are cut on
    /// load; leftovers of interrupted creations and deletions disappear.
    #[test]
    fn load_truncates_to_the_durable_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::open(tmp.path()).unwrap();
        let id = new_id();
        assert!(valid_id(&id));
        s.create(&id, &info()).unwrap();
        let mut f = s.open_data(&id, 0).unwrap();
        f.write_all(b"abcd").unwrap();
        s.commit(&id, &f, 4).unwrap();
        f.write_all(b"efg").unwrap();
        drop(f);
        fs::create_dir(tmp.path().join(format!("{TMP_PREFIX}x"))).unwrap();
        fs::create_dir(tmp.path().join(format!("{DEL_PREFIX}y"))).unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id.as_str(), all[0].offset), (id.as_str(), 4));
        assert_eq!(all[0].info, info());
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcd");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        s.remove(&id).unwrap();
        assert!(s.load_all().unwrap().is_empty());
        assert!(!valid_id("../../etc") && !valid_id(&"A".repeat(32)));
    }
}
