//! Uploads on disk, under `data_dir/uploads/<id>/`:
//!
//! - `data`: the bytes received;
//! - `offset`: the durable offset, in one of two fixed slots ([`OFFSET_FILE_LEN`] bytes, see
//!   [`Appender::commit`]), overwritten in place and fdatasynced only after `data` was
//!   fdatasynced up to it, so it never runs ahead of the bytes;
//! - `info.json`: principal, length, metadata, created, expires, state (replaced the same way).
//!
//! After a crash the offset file is the truth: [`Store::load_all`] truncates `data` back to it.
//! An upload directory is made complete under a hidden temporary name and renamed into place;
//! one being deleted is renamed to a hidden name first, so a crash leaves no half upload.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
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
        replace(&tmp, "offset", &offset_file(0, 0))?;
        replace(&tmp, "info.json", &info_json(info)?)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, self.dir_of(id))?;
        sync_dir(&self.dir)
    }

    /// Replaces `info.json` of `id` durably.
    pub fn write_info(&self, id: &str, info: &Info) -> io::Result<()> {
        replace(&self.dir_of(id), "info.json", &info_json(info)?)
    }

    /// Opens `id`'s data for appending at `offset`, its durable offset (anything past it, never
    /// acknowledged, is cut off first).
    pub fn open_data(&self, id: &str, offset: u64) -> io::Result<Appender> {
        let dir = self.dir_of(id);
        let mut data = OpenOptions::new().write(true).open(dir.join("data"))?;
        data.set_len(offset)?;
        data.seek(SeekFrom::Start(offset))?;
        let path = dir.join("offset");
        let offsets = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = [0; OFFSET_FILE_LEN];
        offsets.read_exact_at(&mut bytes, 0)?;
        let (seq, _) = parse_offset_file(&bytes, &path)?;
        Ok(Appender {
            data,
            offsets,
            seq,
            pos: offset,
        })
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
        let offset = read_offset(&dir)?.0.min(info.length);
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
        let (mut offset, mut rewrite) = read_offset(&dir)?;
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
            data.sync_data()?;
            rewrite = true;
        }
        if rewrite {
            replace(&dir, "offset", &offset_file(0, offset))?;
        }
        let offset = offset.min(info.length);
        Ok(Loaded {
            id: id.to_string(),
            info,
            offset,
        })
    }
}

/// The durable offset in `dir/offset`, and whether the file is an earlier version's decimal
/// offset (to be converted).
fn read_offset(dir: &Path) -> io::Result<(u64, bool)> {
    let path = dir.join("offset");
    let bytes = fs::read(&path)?;
    match parse_offset_file(&bytes, &path) {
        Ok((_, off)) => Ok((off, false)),
        Err(e) => match std::str::from_utf8(&bytes).ok().map(|t| t.trim().parse()) {
            Some(Ok(off)) => Ok((off, true)),
            _ => Err(e),
        },
    }
}

/// An upload open for appending (one at a time, under the upload's lock): its data file and its
/// offset file.
#[derive(Debug)]
pub struct Appender {
    data: File,
    offsets: File,
    /// Sequence number of the offset record last made durable.
    seq: u64,
    /// Where the next write goes (bytes written, durable or not).
    pos: u64,
}

impl Appender {
    /// Appends `buf` to the data file and starts its writeback.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(()); // (a writeback of 0 bytes would mean "to the end of the file")
        }
        self.data.write_all(buf)?;
        start_writeback(&self.data, self.pos, buf.len() as u64);
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Makes `offset` (at most what was written) durable: `data` is fdatasynced (its size is
    /// synced with it; no other metadata is needed), then the offset record written in place
    /// and fdatasynced. The record goes to the slot of the older record, so a write torn by a
    /// crash leaves the newer one intact; the file's size never changes, so its fdatasync
    /// writes one block and no metadata, and there is no rename nor directory to sync.
    pub fn commit(&mut self, offset: u64) -> io::Result<()> {
        debug_assert!(offset <= self.pos);
        self.data.sync_data()?;
        let seq = self.seq + 1;
        self.offsets
            .write_all_at(&offset_record(seq, offset), slot_of(seq))?;
        self.offsets.sync_data()?;
        self.seq = seq;
        Ok(())
    }

    /// Cuts the data file back to `len` (bytes past the durable offset, never acknowledged).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.data.set_len(len)?;
        self.data.seek(SeekFrom::Start(len))?;
        self.pos = len;
        Ok(())
    }
}

/// Starts writeback of `len` bytes at `at` without waiting for it, so the fdatasync of the
/// commit at the end of a PATCH waits only for the last writes, not for the whole chunk: the
/// disk writes while the rest of the body is received. Only a hint (errors are left to the
/// fdatasync, which reports them).
fn start_writeback(f: &File, at: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
            return;
        };
        // SAFETY: a valid open descriptor; the call reads no memory of ours.
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, at, len);
}

/// Length of the offset file: two slots of `SLOT` bytes, each one record.
pub const OFFSET_FILE_LEN: usize = 2 * SLOT;
/// Slot size: a sector, so a record never straddles two.
const SLOT: usize = 512;
const OFFSET_MAGIC: &[u8; 8] = b"abroffs1";
/// A record: magic, sequence number, offset (little-endian), CRC-32 of the 24 bytes before it.
const RECORD_LEN: usize = 28;

fn slot_of(seq: u64) -> u64 {
    (seq % 2) * SLOT as u64
}

fn offset_record(seq: u64, offset: u64) -> [u8; RECORD_LEN] {
    let mut r = [0; RECORD_LEN];
    r[..8].copy_from_slice(OFFSET_MAGIC);
    r[8..16].copy_from_slice(&seq.to_le_bytes());
    r[16..24].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&r[..24]);
    r[24..].copy_from_slice(&crc.to_le_bytes());
    r
}

/// A new offset file holding one record.
fn offset_file(seq: u64, offset: u64) -> Vec<u8> {
    let mut f = vec![0; OFFSET_FILE_LEN];
    let at = slot_of(seq) as usize;
    f[at..at + RECORD_LEN].copy_from_slice(&offset_record(seq, offset));
    f
}

/// The newest valid record of the offset file `path`: (sequence number, offset).
fn parse_offset_file(bytes: &[u8], path: &Path) -> io::Result<(u64, u64)> {
    let record = |at: usize| {
        let r = bytes.get(at..at + RECORD_LEN)?;
        let crc = u32::from_le_bytes(r[24..].try_into().ok()?);
        (r[..8] == OFFSET_MAGIC[..] && crc32fast::hash(&r[..24]) == crc).then(|| {
            let n = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or_default());
            (n(8), n(16))
        })
    };
    [record(0), record(SLOT)]
        .into_iter()
        .flatten()
        .max_by_key(|&(seq, _)| seq)
        .ok_or_else(|| io::Error::other(format!("{} holds no valid offset record", path.display())))
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
        f.write(b"abcd").unwrap();
        f.commit(4).unwrap();
        f.write(b"efg").unwrap();
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

    /// The newest intact record wins: a torn (or zeroed) newest slot falls back to the older
    /// one; the two slots alternate; a decimal offset file of an earlier version is read and
    /// converted.
    #[test]
    fn offset_records_survive_a_torn_slot() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::open(tmp.path()).unwrap();
        let id = new_id();
        s.create(&id, &info()).unwrap();
        let mut f = s.open_data(&id, 0).unwrap();
        for (i, chunk) in [b"ab", b"cd", b"ef"].iter().enumerate() {
            f.write(*chunk).unwrap();
            f.commit(2 * (i as u64 + 1)).unwrap();
        }
        drop(f);
        let path = s.dir_of(&id).join("offset");
        let mut bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), OFFSET_FILE_LEN);
        assert_eq!(parse_offset_file(&bytes, &path).unwrap(), (3, 6));
        // Seq 3 is in slot 1: tear it (one byte of its offset changed).
        bytes[SLOT + 17] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(parse_offset_file(&bytes, &path).unwrap(), (2, 4));
        assert_eq!(s.load_all().unwrap()[0].offset, 4);
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcd");
        // Appending goes on from seq 2 and overwrites the torn slot.
        let mut f = s.open_data(&id, 4).unwrap();
        f.write(b"EF").unwrap();
        f.commit(6).unwrap();
        drop(f);
        assert_eq!(
            parse_offset_file(&fs::read(&path).unwrap(), &path).unwrap(),
            (3, 6)
        );
        fs::write(&path, vec![0; OFFSET_FILE_LEN]).unwrap();
        assert!(s.load_all().unwrap().is_empty(), "no valid record: skipped");
        fs::write(&path, b"5\n").unwrap();
        assert_eq!(s.load_all().unwrap()[0].offset, 5);
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcdE");
        let bytes = fs::read(&path).unwrap();
        assert_eq!(parse_offset_file(&bytes, &path).unwrap(), (0, 5));
    }
}
