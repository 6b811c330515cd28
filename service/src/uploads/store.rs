//! Uploads on disk, under `data_dir/uploads/<id>/`:
//!
//! - `data`: the bytes received;
//! - `offset`: the durable offset, in records overwritten in place (see [`super::offsets`]:
//!   a record reaches the disk with its data, and one whose data did not is recognised);
//! - `info.json`: principal, length, metadata, created, expires, state (replaced the same way).
//!
//! After a crash the offset file is the truth: [`Store::load_all`] truncates `data` back to it
//! (on one box; with a data directory shared by several nodes, the appender that next holds the
//! upload's lock does, as another node may be writing).
//! An upload directory is made complete under a hidden temporary name and renamed into place;
//! one being deleted is renamed to a hidden name first, so a crash leaves no half upload.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::block::{self, Block};
use super::offsets::{self, OffsetFile, Record};

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
        replace(&tmp, "offset", &offsets::new_file(0, 0))?;
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
    /// acknowledged, is cut off first). The appender continues from the confirmed record of
    /// `offset`; when there is none (a writer died between its record and the flushes, or the
    /// offset came from elsewhere) the bytes up to `offset` are flushed and a new sealed offset
    /// file replaces the old one.
    pub fn open_data(&self, id: &str, offset: u64) -> io::Result<Appender> {
        let dir = self.dir_of(id);
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("data"))?;
        if data.metadata()?.len() < offset {
            return Err(io::Error::other(format!(
                "{} is shorter than its offset {offset}",
                dir.join("data").display()
            )));
        }
        data.set_len(offset)?;
        let path = dir.join("offset");
        let mut offsets = OpenOptions::new().read(true).write(true).open(&path)?;
        let file = OffsetFile::read_from(&offsets)?;
        let seq = match file.visible().filter(|r| r.offset == offset) {
            Some(r) => r.seq,
            None => {
                data.sync_data()?;
                replace(&dir, "offset", &offsets::new_file(0, offset))?;
                offsets = OpenOptions::new().read(true).write(true).open(&path)?;
                0
            }
        };
        if offsets.metadata()?.len() < offsets::FILE_LEN as u64 {
            // An earlier version's file, without the mark's slot.
            offsets.set_len(offsets::FILE_LEN as u64)?;
        }
        let direct = open_direct(&dir.join("data"));
        Ok(Appender {
            data,
            direct,
            offsets,
            seq,
            pos: offset,
            committed: offset,
            crc: crc32fast::Hasher::new(),
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

    /// Every upload on disk. With `repair` (the data directory is this process's alone), each
    /// upload's data is cut back to its durable offset and leftovers of interrupted creations
    /// and deletions are removed; without (a directory shared with other nodes, which may be
    /// writing) nothing is changed and leftovers are removed only once an hour old. Unreadable
    /// uploads are logged and skipped (left on disk).
    pub fn load_all(&self, repair: bool) -> io::Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX) || name.starts_with(DEL_PREFIX) {
                if repair || is_stale(&e.path()) {
                    if let Err(err) = fs::remove_dir_all(e.path()) {
                        tracing::warn!(target: "service", dir = %e.path().display(), error = %err, "cannot remove leftover upload directory");
                    }
                }
                continue;
            }
            if !valid_id(name) {
                continue;
            }
            let loaded = if repair {
                self.load(name)
            } else {
                self.read(name).and_then(|r| {
                    let (info, offset) = r.ok_or_else(|| io::Error::other("removed meanwhile"))?;
                    Ok(Loaded {
                        id: name.to_string(),
                        info,
                        offset,
                    })
                })
            };
            match loaded {
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
        let offset = read_offset(&dir)?.offset.min(info.length);
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

    /// Upload `id` after a crash: the offset file's record to resume from (an unconfirmed one
    /// only if the data holds its bytes, and then made durable), the data cut back to it.
    fn load(&self, id: &str) -> io::Result<Loaded> {
        let dir = self.dir_of(id);
        let info: Info =
            serde_json::from_slice(&fs::read(dir.join("info.json"))?).map_err(io::Error::other)?;
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("data"))?;
        let Recovered {
            mut offset,
            mut rewrite,
        } = recover_offset(&dir, &data)?;
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
            replace(&dir, "offset", &offsets::new_file(0, offset))?;
        }
        let offset = offset.min(info.length);
        Ok(Loaded {
            id: id.to_string(),
            info,
            offset,
        })
    }
}

/// Whether the leftover directory `p` is over an hour old (no other node is still using it).
fn is_stale(p: &Path) -> bool {
    let age = fs::metadata(p)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default());
    age.is_ok_and(|a| a > std::time::Duration::from_secs(3600))
}

/// A durable offset as read from an offset file.
struct Recovered {
    offset: u64,
    /// Whether the offset file must be replaced by a sealed record of `offset` (an earlier
    /// version's decimal file, or a record that was not yet known durable).
    rewrite: bool,
}

/// The offset a reader without the lock may report: the newest confirmed record of
/// `dir/offset` (or an earlier version's decimal offset).
fn read_offset(dir: &Path) -> io::Result<Recovered> {
    let path = dir.join("offset");
    let bytes = fs::read(&path)?;
    if let Some(r) = OffsetFile::parse(&bytes).visible() {
        return Ok(Recovered {
            offset: r.offset,
            rewrite: false,
        });
    }
    legacy_offset(&bytes, &path)
}

/// The offset to resume from after a crash (see [`OffsetFile::recover`]); an unconfirmed
/// record the data holds is made durable (the data flushed, the file to be rewritten sealed).
fn recover_offset(dir: &Path, data: &File) -> io::Result<Recovered> {
    let path = dir.join("offset");
    let bytes = fs::read(&path)?;
    let recovered = OffsetFile::parse(&bytes)
        .recover(|from, to, crc| offsets::data_holds(data, from, to, crc))?;
    match recovered {
        Some((Record { offset, .. }, confirmed)) => {
            if !confirmed {
                data.sync_data()?;
            }
            Ok(Recovered {
                offset,
                rewrite: !confirmed,
            })
        }
        None => legacy_offset(&bytes, &path),
    }
}

/// An earlier version's offset file: the offset in decimal.
fn legacy_offset(bytes: &[u8], path: &Path) -> io::Result<Recovered> {
    match std::str::from_utf8(bytes).ok().map(|t| t.trim().parse()) {
        Some(Ok(offset)) => Ok(Recovered {
            offset,
            rewrite: true,
        }),
        _ => Err(io::Error::other(format!(
            "{} holds no valid offset record",
            path.display()
        ))),
    }
}

/// An upload open for appending (one at a time, under the upload's lock): its data file and its
/// offset file.
#[derive(Debug)]
pub struct Appender {
    data: File,
    /// `data` opened with `O_DIRECT` (see [`super::block`]), while the filesystem takes it.
    direct: Option<File>,
    offsets: File,
    /// Sequence number of the offset record last made durable.
    seq: u64,
    /// Where the next write goes (bytes written, durable or not).
    pos: u64,
    /// The offset last made durable.
    committed: u64,
    /// CRC-32 of the bytes written since `committed`.
    crc: crc32fast::Hasher,
}

impl Appender {
    /// Appends `block` (for the current end, see [`Block::begin`]): its aligned middle with a
    /// direct write, its unaligned head and tail (a body that starts or ends off a block
    /// boundary) through the page cache. Without direct I/O all of it goes through the page
    /// cache, its writeback started at once.
    pub fn write(&mut self, block: &Block) -> io::Result<()> {
        let buf = block.bytes();
        if block.pos() != self.pos {
            return Err(io::Error::other(format!(
                "a block for offset {} written at {}",
                block.pos(),
                self.pos
            )));
        }
        let (head, middle, _) = block::split(self.pos, buf.len());
        let aligned = (buf[head..].as_ptr() as usize) % block::ALIGN == 0;
        match &self.direct {
            Some(direct) if middle > 0 && aligned => {
                let mid_at = self.pos + head as u64;
                self.data.write_all_at(&buf[..head], self.pos)?;
                match direct.write_all_at(&buf[head..head + middle], mid_at) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::info!(target: "service", error = %e, "direct writes refused: uploads go through the page cache");
                        self.direct = None;
                        self.data.write_all_at(&buf[head..head + middle], mid_at)?;
                    }
                    Err(e) => return Err(e),
                }
                self.data
                    .write_all_at(&buf[head + middle..], mid_at + middle as u64)?;
            }
            _ if buf.is_empty() => {}
            _ => {
                self.data.write_all_at(buf, self.pos)?;
                start_writeback(&self.data, self.pos, buf.len() as u64);
            }
        }
        self.crc.update(buf);
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Whether the data is written with direct I/O.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Makes every byte written durable and returns the new durable offset. The pending record
    /// (with the CRC-32 of the bytes since the last commit) goes to the slot of the older
    /// record, so a write torn by a crash leaves the newer one intact; then the data and the
    /// record are fdatasynced concurrently — one flush wait, not two in a row — and the mark
    /// written (see [`super::offsets`]). The file's size never changes, so the record's
    /// fdatasync writes one block and no metadata, and there is no rename nor directory to sync.
    pub fn commit(&mut self) -> io::Result<u64> {
        if self.pos == self.committed {
            return Ok(self.pos);
        }
        let seq = self.seq + 1;
        let record = Record {
            seq,
            offset: self.pos,
            pending: Some((self.committed, self.crc.clone().finalize())),
        };
        self.offsets
            .write_all_at(&offsets::encode(&record), offsets::slot_of(seq))?;
        let (data, offsets) = (&self.data, &self.offsets);
        std::thread::scope(|s| {
            let record = s.spawn(|| offsets.sync_data());
            let data = data.sync_data();
            let record = record
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the offset flush panicked")));
            data.and(record)
        })?;
        self.offsets
            .write_all_at(&offsets::encode_mark(seq), offsets::MARK_AT)?;
        self.seq = seq;
        self.committed = self.pos;
        self.crc = crc32fast::Hasher::new();
        Ok(self.pos)
    }

    /// Cuts the data file back to the durable offset (bytes written since were never
    /// acknowledged).
    pub fn discard_uncommitted(&mut self) -> io::Result<()> {
        self.data.set_len(self.committed)?;
        self.pos = self.committed;
        self.crc = crc32fast::Hasher::new();
        Ok(())
    }
}

/// `path` opened for direct writes, if the filesystem allows it (tmpfs before Linux 6.6 does
/// not, for one).
fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
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

    /// A store in a temporary directory with one new upload.
    fn fresh() -> (tempfile::TempDir, Store, String) {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::open(tmp.path()).unwrap();
        let id = new_id();
        s.create(&id, &info()).unwrap();
        (tmp, s, id)
    }

    /// Writes `b` at `f`'s end.
    fn put(f: &mut Appender, b: &[u8]) {
        let mut blk = Block::new(b.len());
        blk.begin(f.pos);
        assert_eq!(blk.push(b), b.len());
        f.write(&blk).unwrap();
    }

    /// Appends each of `chunks` at `from` and commits after each.
    fn append(s: &Store, id: &str, from: u64, chunks: &[&[u8]]) {
        let mut f = s.open_data(id, from).unwrap();
        for c in chunks {
            put(&mut f, c);
            f.commit().unwrap();
        }
    }

    /// Erases the mark of `id`'s offset file (as if the crash came before it was written).
    fn unmark(s: &Store, id: &str) {
        let path = s.dir_of(id).join("offset");
        let mut b = fs::read(&path).unwrap();
        b[offsets::MARK_AT as usize..].fill(0);
        fs::write(&path, b).unwrap();
    }

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
        put(&mut f, b"abcd");
        assert_eq!(f.commit().unwrap(), 4);
        put(&mut f, b"efg");
        drop(f);
        fs::create_dir(tmp.path().join(format!("{TMP_PREFIX}x"))).unwrap();
        fs::create_dir(tmp.path().join(format!("{DEL_PREFIX}y"))).unwrap();
        let all = s.load_all(true).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id.as_str(), all[0].offset), (id.as_str(), 4));
        assert_eq!(all[0].info, info());
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcd");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        s.remove(&id).unwrap();
        assert!(s.load_all(true).unwrap().is_empty());
        assert!(!valid_id("../../etc") && !valid_id(&"A".repeat(32)));
    }

    /// On a shared directory a node starting up changes nothing: another node may be writing
    /// past the durable offset, or creating an upload, right now.
    #[test]
    fn load_without_repair_leaves_a_writer_alone() {
        let (tmp, s, id) = fresh();
        let mut f = s.open_data(&id, 0).unwrap();
        put(&mut f, b"abcd");
        f.commit().unwrap();
        put(&mut f, b"efg");
        fs::create_dir(tmp.path().join(format!("{TMP_PREFIX}x"))).unwrap();
        let all = s.load_all(false).unwrap();
        assert_eq!(all[0].offset, 4);
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcdefg");
        assert!(tmp.path().join(format!("{TMP_PREFIX}x")).exists());
        assert_eq!(f.commit().unwrap(), 7);
        assert_eq!(s.read(&id).unwrap().unwrap().1, 7);
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcdefg");
    }

    /// The newest intact record wins: a torn (or zeroed) newest slot falls back to the older
    /// one; the two slots alternate; a decimal offset file of an earlier version, and one of
    /// two slots, are read and converted.
    #[test]
    fn offset_records_survive_a_torn_slot() {
        let (_tmp, s, id) = fresh();
        append(&s, &id, 0, &[b"ab", b"cd", b"ef"]);
        let path = s.dir_of(&id).join("offset");
        let mut bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), offsets::FILE_LEN);
        assert_eq!(
            OffsetFile::parse(&bytes)
                .visible()
                .map(|r| (r.seq, r.offset)),
            Some((3, 6))
        );
        // Seq 3 is in slot 1: tear it (one byte of its offset changed).
        bytes[offsets::SLOT + 17] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(s.read(&id).unwrap().unwrap().1, 4);
        assert_eq!(s.load_all(true).unwrap()[0].offset, 4);
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcd");
        // Appending goes on from seq 2 and overwrites the torn slot.
        append(&s, &id, 4, &[b"EF"]);
        let visible = |p: &Path| {
            OffsetFile::parse(&fs::read(p).unwrap())
                .visible()
                .map(|r| (r.seq, r.offset))
        };
        assert_eq!(visible(&path), Some((3, 6)));
        fs::write(&path, vec![0; offsets::FILE_LEN]).unwrap();
        assert!(
            s.load_all(true).unwrap().is_empty(),
            "no valid record: skipped"
        );
        fs::write(&path, b"5\n").unwrap();
        assert_eq!(s.load_all(true).unwrap()[0].offset, 5);
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcdE");
        assert_eq!(visible(&path), Some((0, 5)));
        // An earlier version's file of two slots: read, then appended to.
        fs::write(&path, &offsets::new_file(1, 5)[..2 * offsets::SLOT]).unwrap();
        append(&s, &id, 5, &[b"F"]);
        assert_eq!(visible(&path), Some((2, 6)));
        assert_eq!(fs::read(&path).unwrap().len(), offsets::FILE_LEN);
    }

    /// A crash after a commit's record reached the disk but before its flushes ended (so before
    /// its mark): the record is kept if the data holds its bytes, dropped if not.
    #[test]
    fn an_unconfirmed_record_is_kept_only_with_its_bytes() {
        let (_tmp, s, id) = fresh();
        append(&s, &id, 0, &[b"abcd", b"efgh"]);
        unmark(&s, &id);
        // Without the lock, only the confirmed offset is visible.
        assert_eq!(s.read(&id).unwrap().unwrap().1, 4);
        // The data holds the bytes: kept, and sealed.
        assert_eq!(s.load_all(true).unwrap()[0].offset, 8);
        assert_eq!(s.read(&id).unwrap().unwrap().1, 8);
        // The record made it, its data did not (the last bytes are not the ones it covers).
        append(&s, &id, 8, &[b"ij"]);
        unmark(&s, &id);
        let data = s.data_path(&id);
        let mut d = fs::read(&data).unwrap();
        d[9] = 0;
        fs::write(&data, &d).unwrap();
        assert_eq!(s.load_all(true).unwrap()[0].offset, 8);
        assert_eq!(fs::read(&data).unwrap(), b"abcdefgh");
        // Or the data file is shorter than the record says.
        append(&s, &id, 8, &[b"kl"]);
        unmark(&s, &id);
        fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .unwrap()
            .set_len(9)
            .unwrap();
        assert_eq!(s.load_all(true).unwrap()[0].offset, 8);
    }

    /// Bytes written but not committed are cut by `discard_uncommitted`; the CRC of the next
    /// commit covers only what follows.
    #[test]
    fn discarded_bytes_are_not_covered() {
        let (_tmp, s, id) = fresh();
        let mut f = s.open_data(&id, 0).unwrap();
        put(&mut f, b"ab");
        f.commit().unwrap();
        put(&mut f, b"xx");
        f.discard_uncommitted().unwrap();
        put(&mut f, b"cd");
        f.commit().unwrap();
        drop(f);
        unmark(&s, &id);
        assert_eq!(s.load_all(true).unwrap()[0].offset, 4, "the CRC matched");
        assert_eq!(fs::read(s.data_path(&id)).unwrap(), b"abcd");
    }

    /// Bodies of odd sizes at odd offsets (heads, aligned middles, tails; a discard between)
    /// land byte-exact, with direct writes where the filesystem takes them (the test runs on
    /// the disk of the build, ext4 here), and reopening mid-block continues them.
    #[test]
    fn direct_writes_land_byte_exact_at_any_offset() {
        use rand::{Rng, SeedableRng};
        let (_tmp, s, id) = fresh();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut want = Vec::new();
        let mut blk = Block::new(1 << 20);
        for round in 0..6 {
            let mut f = s.open_data(&id, want.len() as u64).unwrap();
            if round == 0 {
                // `stat -f` names ext4 "ext2/ext3".
                let fs_type = std::process::Command::new("stat")
                    .args(["-f", "-c", "%T"])
                    .arg(s.dir_of(&id))
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_default();
                eprintln!("direct I/O on {fs_type}: {}", f.is_direct());
                if ["ext2/ext3", "xfs"].contains(&fs_type.as_str()) {
                    assert!(f.is_direct(), "no direct I/O on {fs_type}");
                }
            }
            for _ in 0..rng.random_range(1..6) {
                let len = rng.random_range(0..300_000);
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                for piece in bytes.chunks(1 << 20) {
                    blk.begin(f.pos);
                    blk.push(piece);
                    f.write(&blk).unwrap();
                }
                if rng.random_bool(0.2) {
                    f.discard_uncommitted().unwrap();
                } else {
                    f.commit().unwrap();
                    want.extend_from_slice(&bytes);
                }
            }
            f.discard_uncommitted().unwrap();
        }
        assert!(want.len() > 500_000);
        let path = s.dir_of(&id).join("offset");
        let record = OffsetFile::parse(&fs::read(path).unwrap()).visible();
        assert_eq!(record.map(|r| r.offset), Some(want.len() as u64));
        let got = fs::read(s.data_path(&id)).unwrap();
        assert!(got == want, "{} bytes vs {}", got.len(), want.len());
        // A block for another position is refused.
        let mut f = s.open_data(&id, want.len() as u64).unwrap();
        blk.begin(3);
        blk.push(b"x");
        assert!(f.write(&blk).is_err());
    }
}
