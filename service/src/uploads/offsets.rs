//! An upload's `offset` file: where its durable offset is kept.
//!
//! Three 512-byte slots (a sector each, so no write straddles two):
//! - slots 0 and 1 hold offset records, alternately (record `seq` in slot `seq % 2`), so a write
//!   torn by a crash leaves the other record intact;
//! - slot 2 holds the *mark*: the sequence number of the newest record known to be durable.
//!
//! A commit ([`super::store::Appender::commit`]) writes its record, flushes the data file and
//! the record *concurrently* (one flush wait per commit instead of two in a row), then writes
//! the mark (not flushed). So a record can reach the disk before its data, and records say
//! whether they may:
//! - *sealed* (`abroffs1`): written only once its data was durable (new files, repairs, the
//!   files of earlier versions);
//! - *pending* (`abroffs2`): carries the CRC-32 of the bytes since the previous record, and is
//!   *confirmed* once the mark reaches it or a newer record exists (a commit starts only after
//!   the previous one ended, so the older record of the two is always durable).
//!
//! Readers without the upload's lock ([`OffsetFile::visible`]) report the newest confirmed
//! offset. After a crash ([`OffsetFile::recover`]) an unconfirmed newest record is kept only if
//! the data file holds the bytes it covers.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Slot size: a sector, so a record never straddles two.
pub(super) const SLOT: usize = 512;
/// Length of the offset file: two record slots and the mark's.
pub(super) const FILE_LEN: usize = 3 * SLOT;
/// Where the mark is.
pub(super) const MARK_AT: u64 = 2 * SLOT as u64;

const SEALED: &[u8; 8] = b"abroffs1";
const PENDING: &[u8; 8] = b"abroffs2";
const MARK: &[u8; 8] = b"abrmark1";
/// A sealed record: magic, seq, offset (little-endian), CRC-32 of the bytes before it.
const SEALED_LEN: usize = 28;
/// A pending record: magic, seq, offset, from, CRC-32 of the data in `from..offset`, CRC-32 of
/// the bytes before it.
const PENDING_LEN: usize = 40;
/// The mark: magic, seq, CRC-32 of the bytes before it.
const MARK_LEN: usize = 20;

/// One offset record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub seq: u64,
    pub offset: u64,
    /// For a pending record: the previous record's offset and the CRC-32 of the data since.
    pub pending: Option<(u64, u32)>,
}

/// The parsed offset file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OffsetFile {
    /// The valid records of slots 0 and 1.
    slots: [Option<Record>; 2],
    /// The mark, when valid.
    mark: Option<u64>,
}

impl OffsetFile {
    /// Parses the file's bytes (a file shorter than [`FILE_LEN`], as earlier versions wrote,
    /// has no mark).
    pub fn parse(bytes: &[u8]) -> OffsetFile {
        let slot = |i: usize| bytes.get(i * SLOT..).map(parse_record).unwrap_or_default();
        let mark = bytes.get(MARK_AT as usize..).and_then(|m| {
            let m = m.get(..MARK_LEN)?;
            (m[..8] == MARK[..] && checked(m)).then(|| le(&m[8..16]))
        });
        OffsetFile {
            slots: [slot(0), slot(1)],
            mark,
        }
    }

    /// Reads the open file `f`.
    pub fn read_from(f: &File) -> io::Result<OffsetFile> {
        let mut bytes = vec![0; FILE_LEN];
        let mut n = 0;
        while n < FILE_LEN {
            match f.read_at(&mut bytes[n..], n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        bytes.truncate(n);
        Ok(OffsetFile::parse(&bytes))
    }

    /// The newest and the older valid record.
    fn ordered(&self) -> (Option<Record>, Option<Record>) {
        match self.slots {
            [Some(a), Some(b)] if a.seq >= b.seq => (Some(a), Some(b)),
            [Some(a), Some(b)] => (Some(b), Some(a)),
            [a, b] => (a.or(b), None),
        }
    }

    /// Whether `r` is known durable: sealed, reached by the mark, or older than another record.
    fn confirmed(&self, r: &Record) -> bool {
        r.pending.is_none()
            || self.mark.is_some_and(|m| m >= r.seq)
            || self.slots.iter().flatten().any(|o| o.seq > r.seq)
    }

    /// The newest confirmed record (for a reader without the upload's lock, and the base an
    /// appender continues from).
    pub fn visible(&self) -> Option<Record> {
        match self.ordered() {
            (Some(n), _) if self.confirmed(&n) => Some(n),
            (_, older) => older,
        }
    }

    /// The record to resume from after a crash, and whether it is confirmed. An unconfirmed
    /// newest record is kept if `holds(from, offset, crc)` says the data file holds its bytes
    /// (then the caller makes it durable before reporting it).
    pub fn recover(
        &self,
        holds: impl FnOnce(u64, u64, u32) -> io::Result<bool>,
    ) -> io::Result<Option<(Record, bool)>> {
        let (newest, older) = self.ordered();
        let Some(n) = newest else { return Ok(None) };
        if self.confirmed(&n) {
            return Ok(Some((n, true)));
        }
        let (from, crc) = n.pending.unwrap_or_default();
        if from <= n.offset && holds(from, n.offset, crc)? {
            return Ok(Some((n, false)));
        }
        Ok(older.map(|o| (o, true)))
    }
}

fn le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap_or_default())
}

/// Whether the last 4 bytes of `r` are the CRC-32 of the others.
fn checked(r: &[u8]) -> bool {
    let (body, crc) = r.split_at(r.len() - 4);
    crc32fast::hash(body).to_le_bytes() == crc
}

fn parse_record(b: &[u8]) -> Option<Record> {
    let magic = b.get(..8)?;
    if magic == SEALED {
        let r = b.get(..SEALED_LEN)?;
        checked(r).then(|| Record {
            seq: le(&r[8..16]),
            offset: le(&r[16..24]),
            pending: None,
        })
    } else if magic == PENDING {
        let r = b.get(..PENDING_LEN)?;
        checked(r).then(|| Record {
            seq: le(&r[8..16]),
            offset: le(&r[16..24]),
            pending: Some((
                le(&r[24..32]),
                u32::from_le_bytes([r[32], r[33], r[34], r[35]]),
            )),
        })
    } else {
        None
    }
}

fn seal(mut v: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// The bytes of record `r` (to be written at [`slot_of`] its seq).
pub(super) fn encode(r: &Record) -> Vec<u8> {
    let mut v = Vec::with_capacity(PENDING_LEN);
    v.extend_from_slice(if r.pending.is_some() { PENDING } else { SEALED });
    v.extend_from_slice(&r.seq.to_le_bytes());
    v.extend_from_slice(&r.offset.to_le_bytes());
    if let Some((from, crc)) = r.pending {
        v.extend_from_slice(&from.to_le_bytes());
        v.extend_from_slice(&crc.to_le_bytes());
    }
    seal(v)
}

/// The bytes of the mark for `seq` (written at [`MARK_AT`]).
pub(super) fn encode_mark(seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(MARK_LEN);
    v.extend_from_slice(MARK);
    v.extend_from_slice(&seq.to_le_bytes());
    seal(v)
}

/// Where record `seq` goes.
pub(super) fn slot_of(seq: u64) -> u64 {
    (seq % 2) * SLOT as u64
}

/// A whole new offset file holding one sealed record.
pub(super) fn new_file(seq: u64, offset: u64) -> Vec<u8> {
    let mut f = vec![0; FILE_LEN];
    let at = slot_of(seq) as usize;
    let r = encode(&Record {
        seq,
        offset,
        pending: None,
    });
    f[at..at + r.len()].copy_from_slice(&r);
    f
}

/// Whether `data` holds, in `from..to`, bytes whose CRC-32 is `crc`.
pub(super) fn data_holds(data: &File, from: u64, to: u64, crc: u32) -> io::Result<bool> {
    if data.metadata()?.len() < to {
        return Ok(false);
    }
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    let mut at = from;
    while at < to {
        let n = buf.len().min((to - at) as usize);
        data.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize() == crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(seq: u64, offset: u64, from: u64) -> Record {
        Record {
            seq,
            offset,
            pending: Some((from, 7)),
        }
    }

    fn file(records: &[Record], mark: Option<u64>) -> Vec<u8> {
        let mut f = vec![0; FILE_LEN];
        for r in records {
            let b = encode(r);
            let at = slot_of(r.seq) as usize;
            f[at..at + b.len()].copy_from_slice(&b);
        }
        if let Some(m) = mark {
            let b = encode_mark(m);
            f[MARK_AT as usize..MARK_AT as usize + b.len()].copy_from_slice(&b);
        }
        f
    }

    #[test]
    fn records_round_trip_and_a_torn_one_is_ignored() {
        let f = OffsetFile::parse(&new_file(0, 42));
        assert_eq!(f.visible().map(|r| r.offset), Some(42));
        let mut b = file(&[pending(4, 40, 30), pending(5, 50, 40)], Some(5));
        let f = OffsetFile::parse(&b);
        assert_eq!(f.visible(), Some(pending(5, 50, 40)));
        b[SLOT + 20] ^= 1; // seq 5's offset, torn
        assert_eq!(OffsetFile::parse(&b).visible(), Some(pending(4, 40, 30)));
        assert_eq!(OffsetFile::parse(&[0; FILE_LEN]).visible(), None);
        // An earlier version's two-slot file: no mark, sealed records.
        let old = &new_file(3, 9)[..2 * SLOT];
        assert_eq!(OffsetFile::parse(old).visible().map(|r| r.offset), Some(9));
    }

    /// Readers without the lock never see a pending record the mark has not reached.
    #[test]
    fn an_unmarked_pending_record_is_not_visible() {
        let recs = [pending(4, 40, 30), pending(5, 50, 40)];
        for (mark, seen) in [(Some(5), 50), (Some(4), 40), (None, 40), (Some(9), 50)] {
            let f = OffsetFile::parse(&file(&recs, mark));
            assert_eq!(f.visible().map(|r| r.offset), Some(seen), "mark {mark:?}");
        }
        // Alone and unmarked (its older slot lost): nothing is visible.
        let f = OffsetFile::parse(&file(&[pending(5, 50, 40)], Some(4)));
        assert_eq!(f.visible(), None);
    }

    #[test]
    fn recovery_keeps_an_unconfirmed_record_only_if_the_data_holds_it() {
        let f = OffsetFile::parse(&file(&[pending(4, 40, 30), pending(5, 50, 40)], Some(4)));
        let asked = std::cell::Cell::new(None);
        let got = f
            .recover(|from, to, crc| {
                asked.set(Some((from, to, crc)));
                Ok(true)
            })
            .unwrap();
        assert_eq!(asked.get(), Some((40, 50, 7)));
        assert_eq!(got, Some((pending(5, 50, 40), false)));
        let got = f.recover(|_, _, _| Ok(false)).unwrap();
        assert_eq!(got, Some((pending(4, 40, 30), true)));
        // A confirmed newest record is not checked.
        let f = OffsetFile::parse(&file(&[pending(4, 40, 30), pending(5, 50, 40)], Some(5)));
        let got = f.recover(|_, _, _| panic!("not asked")).unwrap();
        assert_eq!(got, Some((pending(5, 50, 40), true)));
    }

    #[test]
    fn data_holds_checks_length_and_crc() {
        let tmp = tempfile::tempfile().unwrap();
        tmp.write_all_at(b"abcdefgh", 0).unwrap();
        let crc = crc32fast::hash(b"cdef");
        assert!(data_holds(&tmp, 2, 6, crc).unwrap());
        assert!(!data_holds(&tmp, 2, 6, crc ^ 1).unwrap());
        assert!(!data_holds(&tmp, 6, 10, crc32fast::hash(b"gh\0\0")).unwrap());
    }

    /// Random and mutated files never panic, and whatever is read back from a damaged file is
    /// one of the records written (a CRC catches the rest).
    #[test]
    fn damaged_files_never_panic_nor_invent_records() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let recs = [pending(4, 40, 30), pending(5, 50, 40)];
        let good = file(&recs, Some(5));
        for _ in 0..20_000 {
            let mut b = if rng.random_bool(0.5) {
                good.clone()
            } else {
                (0..rng.random_range(0..FILE_LEN + 8))
                    .map(|_| rng.random())
                    .collect()
            };
            for _ in 0..rng.random_range(0..4) {
                if !b.is_empty() {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
            }
            b.truncate(rng.random_range(0..=b.len()));
            let f = OffsetFile::parse(&b);
            if let Some(r) = f.visible() {
                assert!(recs.contains(&r), "{r:?} from {b:?}");
            }
            let _ = f.recover(|_, _, _| Ok(rng.random_bool(0.5)));
        }
    }
}
