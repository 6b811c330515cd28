//! The work area's packet files: encoded packets (video of one rung in one shard, or the whole
//! AAC track) with their timestamps, written by a task and read back by `assemble` to mux the
//! MPEG-TS renditions. Hand-written because it is a dozen lines and must be streamed both ways
//! without holding a shard in memory; every read is bounds-checked (the file may be corrupt).
//!
//! Layout: the magic `ABRPKT1\n`, then per packet a 29-byte little-endian header
//! (`len: u32, pts: i64, dts: i64, duration: i64, flags: u8`) followed by `len` bytes.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"ABRPKT1\n";
const HEADER: usize = 29;
/// Largest packet accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_PACKET: u32 = 64 << 20;
const FLAG_KEY: u8 = 1;

/// One stored packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPacket {
    /// Presentation time (stream time base).
    pub pts: i64,
    /// Decode time.
    pub dts: i64,
    /// Duration.
    pub duration: i64,
    /// Keyframe.
    pub key: bool,
    /// Payload.
    pub data: Vec<u8>,
}

/// Size and sha256 of a written file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigest {
    /// Bytes.
    pub bytes: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and sha256 of `data`.
pub fn digest_of(data: &[u8]) -> FileDigest {
    FileDigest {
        bytes: data.len() as u64,
        sha256: hex(&Sha256::digest(data)),
    }
}

/// Size and sha256 of the file at `path`, streamed.
pub fn digest_file(path: &Path) -> io::Result<FileDigest> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        bytes,
        sha256: hex(&h.finalize()),
    })
}

/// Writes `data` to `path` durably (fsync) and returns its digest.
pub fn write_durable(path: &Path, data: &[u8]) -> io::Result<FileDigest> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(digest_of(data))
}

/// Appends packets to a packet file, hashing as it goes.
pub struct PacketWriter {
    out: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
    count: u64,
    path: PathBuf,
}

impl PacketWriter {
    /// Creates `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut w = PacketWriter {
            out: BufWriter::with_capacity(256 * 1024, File::create(path)?),
            hash: Sha256::new(),
            bytes: 0,
            count: 0,
            path: path.to_path_buf(),
        };
        w.put(MAGIC)?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.hash.update(b);
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Appends one packet.
    pub fn write(
        &mut self,
        pts: i64,
        dts: i64,
        duration: i64,
        key: bool,
        data: &[u8],
    ) -> io::Result<()> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|l| *l <= MAX_PACKET)
            .ok_or_else(|| io::Error::other("packet larger than 64 MiB"))?;
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&len.to_le_bytes());
        h[4..12].copy_from_slice(&pts.to_le_bytes());
        h[12..20].copy_from_slice(&dts.to_le_bytes());
        h[20..28].copy_from_slice(&duration.to_le_bytes());
        h[28] = if key { FLAG_KEY } else { 0 };
        self.put(&h)?;
        self.put(data)?;
        self.count += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes, fsyncs and returns the file's digest.
    pub fn finish(self) -> io::Result<FileDigest> {
        let f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        let _ = self.path;
        Ok(FileDigest {
            bytes: self.bytes,
            sha256: hex(&self.hash.finalize()),
        })
    }
}

/// Reads a packet file in order.
pub struct PacketReader<R> {
    input: R,
}

impl PacketReader<BufReader<File>> {
    /// Opens `path` and checks its magic.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::new(BufReader::with_capacity(256 * 1024, File::open(path)?))
    }
}

impl<R: Read> PacketReader<R> {
    /// Wraps a reader positioned at the start of a packet file.
    pub fn new(mut input: R) -> io::Result<Self> {
        let mut m = [0u8; 8];
        input.read_exact(&mut m)?;
        if &m != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an abr packet file",
            ));
        }
        Ok(PacketReader { input })
    }

    /// The next packet, `None` at a clean end of file.
    pub fn next_packet(&mut self) -> io::Result<Option<StoredPacket>> {
        let mut h = [0u8; HEADER];
        let mut got = 0;
        while got < HEADER {
            let n = self.input.read(&mut h[got..])?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated packet header",
                ));
            }
            got += n;
        }
        let field = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[r]);
            i64::from_le_bytes(b)
        };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if len > MAX_PACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "packet length out of range",
            ));
        }
        let mut data = vec![0u8; len as usize];
        self.input.read_exact(&mut data)?;
        Ok(Some(StoredPacket {
            pts: field(4..12),
            dts: field(12..20),
            duration: field(20..28),
            key: h[28] & FLAG_KEY != 0,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.pkt");
        let mut w = PacketWriter::create(&p).unwrap();
        w.write(-2, -4, 1, true, b"\0\0\0\x01\x65abc").unwrap();
        w.write(3, -3, 1, false, b"").unwrap();
        let d = w.finish().unwrap();
        assert_eq!(d, digest_file(&p).unwrap());
        let mut r = PacketReader::open(&p).unwrap();
        let a = r.next_packet().unwrap().unwrap();
        assert_eq!((a.pts, a.dts, a.duration, a.key), (-2, -4, 1, true));
        assert_eq!(a.data, b"\0\0\0\x01\x65abc");
        let b = r.next_packet().unwrap().unwrap();
        assert_eq!((b.pts, b.key, b.data.len()), (3, false, 0));
        assert!(r.next_packet().unwrap().is_none());
        // Truncated mid-payload and a huge length are errors, never panics or huge allocations.
        let bytes = std::fs::read(&p).unwrap();
        let mut r = PacketReader::new(&bytes[..bytes.len() - 30]).unwrap();
        assert!(r.next_packet().is_err());
        let mut evil = bytes[..8].to_vec();
        evil.extend_from_slice(&u32::MAX.to_le_bytes());
        evil.extend_from_slice(&[0u8; 25]);
        assert!(PacketReader::new(&evil[..]).unwrap().next_packet().is_err());
        assert!(PacketReader::new(&b"garbage!"[..]).is_err());
    }
}
