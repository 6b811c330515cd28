//! The buffers an upload's body is written from: fixed, reused, and laid out for direct I/O.
//!
//! An upload's data is written with `O_DIRECT` ([`super::store::Appender::write`]): from these
//! buffers straight to the disk, not through the page cache. Measured on this project's 2-core
//! VM, buffered writes of 2 GiB cost 0.4–5.5 s of CPU depending on the state of the guest's
//! memory (the first touch of page-cache pages the hypervisor had reclaimed), direct ones a
//! steady 0.08 s; and a multi-GB upload no longer evicts the segments the origin serves from
//! the page cache. Direct I/O wants the file offset and the memory address aligned alike, so a
//! [`Block`] places its first byte at an address congruent to its file position modulo
//! [`ALIGN`]: then every aligned file offset inside it sits at an aligned address. (No crate
//! does this placement; the buffer is a plain `Vec`, indexed safely.)

/// Alignment of direct writes (offsets, lengths, addresses): a page, which covers every logical
/// block size in use.
pub const ALIGN: usize = 4096;

/// A buffer of bytes for one run of file positions.
#[derive(Debug)]
pub struct Block {
    mem: Vec<u8>,
    /// Index in `mem` of the first byte.
    start: usize,
    len: usize,
    cap: usize,
    /// File position of the first byte.
    pos: u64,
}

impl Block {
    /// An empty block of `cap` bytes.
    pub fn new(cap: usize) -> Block {
        Block {
            mem: vec![0; cap + 2 * ALIGN],
            start: 0,
            len: 0,
            cap,
            pos: 0,
        }
    }

    /// Empties the block; its next bytes are for file position `pos`.
    pub fn begin(&mut self, pos: u64) {
        // Index of the first aligned byte of `mem` (`align_offset` may decline: then the
        // address checks of the writer fall back to buffered writes).
        let base = self.mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        self.start = base + (pos % ALIGN as u64) as usize;
        self.len = 0;
        self.pos = pos;
    }

    /// Bytes that still fit.
    pub fn room(&self) -> usize {
        self.cap - self.len
    }

    /// Appends `b` (at most [`Block::room`] bytes; the rest is left).
    pub fn push(&mut self, b: &[u8]) -> usize {
        let n = b.len().min(self.room());
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&b[..n]);
        self.len += n;
        n
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// File position of the first byte.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How `len` bytes at file position `pos` split for direct I/O: the unaligned head, the aligned
/// middle (a multiple of [`ALIGN`]), the tail — as lengths.
pub fn split(pos: u64, len: usize) -> (usize, usize, usize) {
    let a = ALIGN as u64;
    let head = (((a - pos % a) % a) as usize).min(len);
    let middle = (len - head) / ALIGN * ALIGN;
    (head, middle, len - head - middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_positions_sit_at_aligned_addresses() {
        let mut b = Block::new(3 * ALIGN);
        for pos in [0, 1, 4095, 4096, 12_345, 1 << 33] {
            b.begin(pos);
            assert_eq!(b.push(&vec![7; 5 * ALIGN]), 3 * ALIGN, "filled to its size");
            assert_eq!((b.pos(), b.len(), b.room()), (pos, 3 * ALIGN, 0));
            let (head, middle, tail) = split(pos, b.len());
            assert_eq!(head + middle + tail, b.len());
            assert_eq!((pos + head as u64) % ALIGN as u64, 0);
            let addr = b.bytes()[head..].as_ptr() as usize;
            assert_eq!(addr % ALIGN, 0, "pos {pos}");
        }
        assert_eq!(split(10, 5), (5, 0, 0));
        assert_eq!(split(4096, 5), (0, 0, 5));
        assert_eq!(split(4000, 10_000), (96, 8192, 1712));
    }
}
