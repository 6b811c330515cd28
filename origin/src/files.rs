//! Files: resolving request paths strictly inside ROOT, what kind of package file a path is,
//! and opening it with its validators.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::HeaderValue;

/// Bumped whenever the bytes served for the same file could change (ETags embed it).
pub const FORMAT_VERSION: u32 = 1;

/// The package file types the origin serves; anything else is 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// HLS playlist.
    Playlist,
    /// DASH MPD.
    Mpd,
    /// MPEG-TS segment.
    TsSegment,
    /// fMP4 media segment.
    Fmp4Segment,
    /// fMP4 init segment.
    Init,
}

impl Kind {
    /// Kind from a file name's extension.
    pub fn from_name(name: &str) -> Option<Kind> {
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "m3u8" => Kind::Playlist,
            "mpd" => Kind::Mpd,
            "ts" => Kind::TsSegment,
            "m4s" => Kind::Fmp4Segment,
            "mp4" => Kind::Init,
            _ => return None,
        })
    }

    /// `Content-Type`.
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Playlist => "application/vnd.apple.mpegurl",
            Kind::Mpd => "application/dash+xml",
            Kind::TsSegment => "video/mp2t",
            Kind::Fmp4Segment => "video/iso.segment",
            Kind::Init => "video/mp4",
        }
    }

    /// Manifests (compressible, short-lived cache) vs segments (immutable, never compressed).
    pub fn is_manifest(self) -> bool {
        matches!(self, Kind::Playlist | Kind::Mpd)
    }

    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Playlist | Kind::Mpd => "manifest",
            Kind::TsSegment | Kind::Fmp4Segment => "segment",
            Kind::Init => "init",
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or hostile path (400).
    BadRequest,
    /// Not a servable file (404).
    NotFound,
}

/// Percent-decodes a raw URL path strictly: invalid escapes, NUL, backslashes and invalid UTF-8
/// (including overlong encodings) are refused. A path without escapes is borrowed as it is.
pub fn decode(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    let s = if raw.contains('%') {
        let b = raw.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = |c: u8| (c as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    b.get(i + 1).and_then(|c| hex(*c)),
                    b.get(i + 2).and_then(|c| hex(*c)),
                ) else {
                    return Err(Refusal::BadRequest);
                };
                out.push((h * 16 + l) as u8);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Cow::Owned(String::from_utf8(out).map_err(|_| Refusal::BadRequest)?)
    } else {
        Cow::Borrowed(raw)
    };
    if s.contains('\0') || s.contains('\\') {
        return Err(Refusal::BadRequest);
    }
    Ok(s)
}

/// Splits a decoded request path into validated segments. Every segment must be a plain name
/// of `[A-Za-z0-9._-]` not starting with a dot: no `.`/`..`, no hidden files (staging
/// directories are hidden), no empty segments.
pub fn split(path: &str) -> Result<Vec<&str>, Refusal> {
    let rest = path.strip_prefix('/').ok_or(Refusal::BadRequest)?;
    // A directory URL (`/`, `/pkg/hls/`) names no file: 404 like any directory, once its
    // segments are checked (so `/../` is still a 400).
    let (rest, dir_url) = match rest.strip_suffix('/') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    if rest.is_empty() {
        return Err(if path == "/" {
            Refusal::NotFound
        } else {
            Refusal::BadRequest
        });
    }
    let mut out = Vec::with_capacity(8);
    for seg in rest.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(Refusal::BadRequest);
        }
        if seg.starts_with('.')
            || !seg
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return Err(Refusal::NotFound);
        }
        out.push(seg);
    }
    if dir_url {
        return Err(Refusal::NotFound);
    }
    Ok(out)
}

/// [`decode`] and [`split`] of a raw request path, as owned segments.
pub fn segments(raw_path: &str) -> Result<Vec<String>, Refusal> {
    let path = decode(raw_path)?;
    Ok(split(&path)?.into_iter().map(str::to_string).collect())
}

/// A package file resolved inside ROOT.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Path under ROOT as requested (symlinks inside ROOT not expanded); a cache key.
    pub path: PathBuf,
    /// File kind.
    pub kind: Kind,
    /// Package name (first segment).
    pub package: String,
}

/// ROOT: its canonical path and a directory handle that path resolution is confined to.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    dir: OwnedFd,
}

impl Root {
    /// Opens `path` (canonicalised) as ROOT.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let path = path.canonicalize()?;
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)?;
        Ok(Root {
            path,
            dir: dir.into(),
        })
    }

    /// The canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Package files kept open for a short time, as nginx's `open_file_cache`: a hit skips the
/// path resolution, `fstat` and `close` of a request (half its system calls for a manifest).
/// A file replaced or removed under ROOT is still served, as it was, for up to the TTL.
///
/// Each worker thread keeps its own map (nginx's cache is per worker too): a hit takes no lock
/// and writes no memory another worker reads, and costs a hash lookup and a reference count.
/// A shared concurrent cache (moka) cost 5 % of the origin's CPU on small files.
pub struct OpenCache {
    ttl: Duration,
    entries: usize,
    maps: thread_local::ThreadLocal<RefCell<OpenMap>>,
}

/// One thread's open files by path under ROOT, with when each was opened.
#[derive(Default)]
struct OpenMap {
    files: HashMap<String, (Instant, Arc<Opened>)>,
    /// When expired entries were last dropped.
    swept: Option<Instant>,
}

/// A package file resolved inside ROOT and opened, with its validators.
#[derive(Debug)]
pub struct Opened {
    /// Where it is.
    pub resolved: Resolved,
    /// The open file and its validators.
    pub entity: Entity,
}

impl OpenCache {
    /// Keeps up to `entries` open files per worker for `ttl` (zero: no cache).
    pub fn new(ttl: Duration, entries: u64) -> Self {
        OpenCache {
            ttl,
            entries: usize::try_from(entries).unwrap_or(usize::MAX),
            maps: thread_local::ThreadLocal::new(),
        }
    }

    /// [`open_in`] through the cache (small files keep their bytes in it).
    pub fn open<S: AsRef<str>>(&self, root: &Root, segs: &[S]) -> Result<Arc<Opened>, Refusal> {
        if self.ttl.is_zero() || self.entries == 0 {
            let (resolved, entity) = open_in(root, segs)?;
            return Ok(Arc::new(Opened { resolved, entity }));
        }
        let mut key = String::with_capacity(segs.iter().map(|s| s.as_ref().len() + 1).sum());
        for (i, seg) in segs.iter().enumerate() {
            if i > 0 {
                key.push('/');
            }
            key.push_str(seg.as_ref());
        }
        let cell = self.maps.get_or(Default::default);
        let now = Instant::now();
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < self.ttl;
        {
            let mut map = cell.borrow_mut();
            // Expired entries are dropped once per TTL, so that files deleted under ROOT are
            // closed (and their space freed) soon after, not when the map fills up.
            if map.swept.is_none_or(|t| !fresh(&t)) {
                map.files.retain(|_, (at, _)| fresh(at));
                map.swept = Some(now);
            }
            if let Some((opened_at, hit)) = map.files.get(&key) {
                if fresh(opened_at) {
                    return Ok(hit.clone());
                }
            }
        }
        let (resolved, mut entity) = open_in(root, segs)?;
        if entity.len <= SMALL_FILE {
            entity.bytes = read_whole(&entity.file, entity.len).ok();
        }
        let opened = Arc::new(Opened { resolved, entity });
        let mut map = cell.borrow_mut();
        if map.files.len() >= self.entries && !map.files.contains_key(&key) {
            // Full of fresh entries: drop any one (the next miss reopens it).
            if let Some(k) = map.files.keys().next().cloned() {
                map.files.remove(&k);
            }
        }
        map.files.insert(key, (now, opened.clone()));
        Ok(opened)
    }
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime and nginx's
/// `worker_rlimit_nofile` do: connections and cached files need descriptors) and returns it.
pub fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: a valid rlimit; raising the soft limit up to the hard one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r.rlim_cur = r.rlim_max;
        }
    }
    r.rlim_cur
}

/// Files up to this size (manifests) are kept in the open-file cache with their bytes.
const SMALL_FILE: u64 = 64 * 1024;

/// The first `len` bytes of `file` (the whole of a small file).
pub fn read_whole(file: &File, len: u64) -> std::io::Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf.into())
}

/// Flags for opening a package file: never block on a FIFO, never become a controlling tty.
const OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;

/// `openat2(2)` of `rel` under `dir` with `resolve` flags; `None` when the kernel lacks it
/// (before Linux 5.6, or filtered by seccomp).
fn openat2(dir: &OwnedFd, rel: &Path, resolve: u64) -> Option<std::io::Result<File>> {
    let c = std::ffi::CString::new(rel.as_os_str().as_bytes()).ok()?;
    // SAFETY: open_how is a plain C struct; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = OPEN_FLAGS as u64;
    how.resolve = resolve;
    // SAFETY: valid fd, NUL-terminated path and a correctly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => None,
            _ => Some(Err(e)),
        };
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Some(Ok(unsafe { File::from_raw_fd(fd as RawFd) }))
}

/// Resolves validated segments to a regular file inside ROOT and opens it, with its
/// validators. Symlinks are followed only while they stay inside ROOT.
///
/// One `openat2(RESOLVE_BENEATH)` does it on Linux ≥ 5.6: the kernel refuses any step out of
/// ROOT, so no `realpath` (a `readlink` per component) is needed per request. An absolute
/// symlink makes it fail with `EXDEV`; then (and on kernels without `openat2`) the path is
/// canonicalised, checked to be inside ROOT, and that symlink-free path is opened.
pub fn open_in<S: AsRef<str>>(root: &Root, segs: &[S]) -> Result<(Resolved, Entity), Refusal> {
    if segs.len() < 2 {
        return Err(Refusal::NotFound);
    }
    let last = segs.last().ok_or(Refusal::NotFound)?.as_ref();
    let kind = Kind::from_name(last).ok_or(Refusal::NotFound)?;
    let rel: PathBuf = segs.iter().map(AsRef::as_ref).collect();
    let fast = openat2(
        &root.dir,
        &rel,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    );
    let file = match fast {
        Some(Ok(f)) => f,
        Some(Err(e)) if e.raw_os_error() != Some(libc::EXDEV) => return Err(Refusal::NotFound),
        _ => {
            let canon = root
                .path
                .join(&rel)
                .canonicalize()
                .map_err(|_| Refusal::NotFound)?;
            let inside = canon
                .strip_prefix(&root.path)
                .map_err(|_| Refusal::NotFound)?;
            // The canonical path has no symlinks left: refuse any that appear meanwhile.
            match openat2(
                &root.dir,
                inside,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
            ) {
                Some(r) => r,
                None => File::options()
                    .read(true)
                    .custom_flags(OPEN_FLAGS)
                    .open(&canon),
            }
            .map_err(|_| Refusal::NotFound)?
        }
    };
    let entity = entity(file).map_err(|_| Refusal::NotFound)?;
    let resolved = Resolved {
        path: root.path.join(&rel),
        kind,
        package: segs[0].as_ref().to_string(),
    };
    Ok((resolved, entity))
}

/// An open file with its validators.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Open handle (reads use positional I/O, so it can be shared).
    pub file: Arc<File>,
    /// Length in bytes.
    pub len: u64,
    /// Modification time, truncated to whole seconds (HTTP-date precision).
    pub modified: SystemTime,
    /// Strong ETag (quoted).
    pub etag: String,
    /// `ETag` and `Last-Modified` as header values, made once per open rather than per response.
    pub headers: ValidatorHeaders,
    /// The contents, when the open-file cache keeps a small file's bytes.
    pub bytes: Option<bytes::Bytes>,
}

/// An entity's validators as response header values.
#[derive(Debug, Clone)]
pub struct ValidatorHeaders {
    /// `ETag`.
    pub etag: HeaderValue,
    /// `Last-Modified`.
    pub last_modified: HeaderValue,
}

/// Opens `path` and computes its validators.
pub fn open(path: &Path) -> std::io::Result<Entity> {
    entity(File::open(path)?)
}

/// Validators of an open regular file; anything else (directory, FIFO, device) is an error.
fn entity(file: File) -> std::io::Result<Entity> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a file"));
    }
    let mtime = SystemTime::UNIX_EPOCH
        + Duration::new(
            meta.mtime().max(0) as u64,
            meta.mtime_nsec().clamp(0, 999_999_999) as u32,
        );
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime().max(0) as u64);
    let etag = crate::conditional::make_etag(FORMAT_VERSION, meta.len(), mtime, meta.ino());
    let headers = ValidatorHeaders {
        etag: HeaderValue::from_str(&etag).map_err(std::io::Error::other)?,
        last_modified: HeaderValue::from_str(&crate::conditional::http_date(modified))
            .map_err(std::io::Error::other)?,
    };
    Ok(Entity {
        file: Arc::new(file),
        len: meta.len(),
        modified,
        etag,
        headers,
        bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        use Refusal::*;
        let cases: &[(&str, Refusal)] = &[
            ("/../etc/passwd", BadRequest),
            ("/pkg/../../etc/passwd", BadRequest),
            ("/pkg/%2e%2e/%2e%2e/etc/passwd", BadRequest),
            ("/pkg/%2E%2E%2Fetc%2Fpasswd", BadRequest),
            ("/pkg/..%2fetc", BadRequest),
            ("/pkg/..\\etc", BadRequest),
            ("/pkg/%5c..%5cetc", BadRequest),
            ("/pkg/a%00.ts", BadRequest),
            ("/pkg/%c0%ae%c0%ae/etc", BadRequest),
            ("/pkg/%e0%80%ae./x", BadRequest),
            ("/pkg//hls/master.m3u8", BadRequest),
            ("/pkg/./hls/master.m3u8", BadRequest),
            ("/pkg/%zz", BadRequest),
            ("/pkg/%2", BadRequest),
            ("/.pkg.abr-staging.1/hls/master.m3u8", NotFound),
            ("/pkg/hls/.hidden.ts", NotFound),
            ("/pkg/hls/a b.ts", NotFound),
            ("relative/x.ts", BadRequest),
            ("", BadRequest),
            ("/", NotFound),
            ("/pkg/", NotFound),
            ("/pkg/hls/", NotFound),
            ("/pkg/hls%2F", NotFound),
            ("//", BadRequest),
            ("/pkg//", BadRequest),
            ("/../", BadRequest),
            ("/pkg/./", BadRequest),
            ("/pkg/%2e%2e/", BadRequest),
        ];
        for (p, want) in cases {
            assert_eq!(segments(p).err(), Some(*want), "{p}");
        }
        assert_eq!(
            segments("/pkg/hls/720p/seg_00001.ts").unwrap(),
            ["pkg", "hls", "720p", "seg_00001.ts"]
        );
    }

    #[test]
    fn kinds() {
        assert_eq!(
            Kind::from_name("seg_00001.m4s").map(Kind::mime),
            Some("video/iso.segment")
        );
        assert_eq!(
            Kind::from_name("master.m3u8").map(Kind::mime),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(Kind::from_name("x.ts").map(Kind::mime), Some("video/mp2t"));
        assert_eq!(
            Kind::from_name("manifest.mpd").map(Kind::mime),
            Some("application/dash+xml")
        );
        assert_eq!(
            Kind::from_name("init.mp4").map(Kind::mime),
            Some("video/mp4")
        );
        assert_eq!(Kind::from_name("passwd"), None);
        assert_eq!(Kind::from_name("x.html"), None);
    }

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let limits = || {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: a valid out-pointer.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
            (r.rlim_cur, r.rlim_max)
        };
        let (before, hard) = limits();
        let got = raise_fd_limit();
        assert_eq!(got, limits().0, "returns the soft limit in force");
        assert!(got >= before);
        // Raised to the hard limit unless the kernel refuses it (an unlimited hard limit).
        assert!(
            got == hard || hard == libc::RLIM_INFINITY,
            "{got} of {hard}"
        );
    }

    #[test]
    fn open_cache_reuses_for_its_ttl_then_sees_replacements() {
        let t = tempfile::tempdir().unwrap();
        let hls = t.path().join("pkg/hls");
        std::fs::create_dir_all(&hls).unwrap();
        std::fs::write(hls.join("a.m3u8"), b"old").unwrap();
        let root = Root::open(t.path()).unwrap();
        let segs = segments("/pkg/hls/a.m3u8").unwrap();
        let cache = OpenCache::new(Duration::from_millis(300), 16);
        let start = std::time::Instant::now();
        let first = &cache.open(&root, &segs).unwrap().entity;
        assert_eq!((first.len, first.bytes.as_deref()), (3, Some(&b"old"[..])));
        // Replaced the way packages are (a new file renamed over the old one).
        std::fs::write(hls.join("a.tmp"), b"newer").unwrap();
        std::fs::rename(hls.join("a.tmp"), hls.join("a.m3u8")).unwrap();
        let len = || cache.open(&root, &segs).unwrap().entity.len;
        if start.elapsed() < Duration::from_millis(250) {
            assert_eq!(len(), 3, "served as it was within the TTL");
        }
        while len() != 5 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "replacement never seen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() >= Duration::from_millis(300));
        // No cache: always the file as it is now.
        let off = OpenCache::new(Duration::ZERO, 16);
        std::fs::write(hls.join("a.m3u8"), b"x").unwrap();
        let now = off.open(&root, &segs).unwrap();
        assert_eq!((now.entity.len, now.entity.bytes.clone()), (1, None));
        assert_eq!(off.open(&root, &segs[..1]).err(), Some(Refusal::NotFound));
    }

    #[test]
    fn open_cache_closes_expired_files_no_longer_asked_for() {
        let t = tempfile::tempdir().unwrap();
        let hls = t.path().join("pkg/hls");
        std::fs::create_dir_all(&hls).unwrap();
        std::fs::write(hls.join("old.ts"), b"gone soon").unwrap();
        std::fs::write(hls.join("new.ts"), b"asked for").unwrap();
        let root = Root::open(t.path()).unwrap();
        let cache = OpenCache::new(Duration::from_millis(100), 16);
        let open = |name: &str| {
            let segs = segments(&format!("/pkg/hls/{name}")).unwrap();
            cache.open(&root, &segs).unwrap()
        };
        let old = Arc::downgrade(&open("old.ts"));
        std::fs::remove_file(hls.join("old.ts")).unwrap();
        let start = Instant::now();
        // Once its TTL has passed, a request for another file closes the deleted one.
        while old.upgrade().is_some() {
            assert!(start.elapsed() < Duration::from_secs(5), "never closed");
            assert_eq!(open("new.ts").entity.len, 9);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn open_cache_keeps_at_most_its_entries_per_thread() {
        let t = tempfile::tempdir().unwrap();
        let hls = t.path().join("pkg/hls");
        std::fs::create_dir_all(&hls).unwrap();
        for i in 0..5 {
            std::fs::write(hls.join(format!("{i}.m3u8")), vec![b'x'; i + 1]).unwrap();
        }
        let root = Root::open(t.path()).unwrap();
        let cache = OpenCache::new(Duration::from_secs(60), 2);
        let open = |i: usize| {
            let segs = segments(&format!("/pkg/hls/{i}.m3u8")).unwrap();
            cache.open(&root, &segs).unwrap()
        };
        // Every file is the right one, whatever was evicted to make room.
        for round in 0..3 {
            for i in 0..5 {
                let o = open(i);
                assert_eq!(o.entity.len, i as u64 + 1, "round {round}, file {i}");
                assert_eq!(o.entity.bytes.as_deref(), Some(&vec![b'x'; i + 1][..]));
            }
        }
        let held = |c: &OpenCache| c.maps.get().map_or(0, |m| m.borrow().files.len());
        assert_eq!(held(&cache), 2);
        // A hit is the same opened file; another thread has its own map.
        assert!(Arc::ptr_eq(&open(4), &open(4)));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(held(&cache), 0);
                assert_eq!(open(1).entity.len, 2);
                assert_eq!(held(&cache), 1);
            });
        });
        assert_eq!(held(&cache), 2);
    }

    #[test]
    fn symlinks_out_of_root_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("root");
        std::fs::create_dir_all(dir.join("pkg/hls")).unwrap();
        std::fs::write(t.path().join("secret.ts"), b"secret").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, dir.join("pkg/hls").join(name)).unwrap()
        };
        // Out of ROOT: absolute, relative, through a directory link.
        link(&t.path().join("secret.ts"), "evil.ts");
        link(Path::new("../../../secret.ts"), "evil_rel.ts");
        std::os::unix::fs::symlink(t.path(), dir.join("pkg/out")).unwrap();
        std::fs::write(dir.join("pkg/hls/ok.ts"), b"ok").unwrap();
        // Inside ROOT: relative and absolute links are served.
        link(Path::new("ok.ts"), "rel.ts");
        link(&dir.canonicalize().unwrap().join("pkg/hls/ok.ts"), "abs.ts");
        std::fs::create_dir_all(dir.join("pkg/hls/dir.ts")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("pkg/hls/fifo.ts").as_os_str().as_bytes());
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.unwrap().as_ptr(), 0o644) }, 0);
        let root = Root::open(&dir).unwrap();
        let open = |p: &str| open_in(&root, &segments(p).unwrap());
        for p in [
            "/pkg/hls/evil.ts",
            "/pkg/hls/evil_rel.ts",
            "/pkg/out/secret.ts",
            "/pkg/hls",
            "/pkg/hls/dir.ts",
            "/pkg/hls/fifo.ts",
            "/pkg/hls/missing.ts",
        ] {
            assert_eq!(open(p).err(), Some(Refusal::NotFound), "{p}");
        }
        for p in ["/pkg/hls/ok.ts", "/pkg/hls/rel.ts", "/pkg/hls/abs.ts"] {
            let (r, e) = open(p).unwrap_or_else(|e| panic!("{p}: {e:?}"));
            assert_eq!(
                (r.kind, e.len, r.package.as_str()),
                (Kind::TsSegment, 2, "pkg")
            );
        }
    }
}
