//! Aligned cuts: where segments start, as frame indices of the constant-rate output.
//!
//! Segment `k` (0-based) starts at the first frame whose time is ≥ `k × D`. Every rung sees the
//! same frames with the same timestamps, so every rung forces its IDR frames — and cuts — at the
//! same presentation times; audio is cut at those same times.

use crate::package::Ratio;

/// Segment boundary rule for a constant frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundaries {
    /// Nominal segment duration in milliseconds.
    pub segment_ms: u64,
    /// Frame rate of the output.
    pub frame_rate: Ratio,
}

impl Boundaries {
    /// Frame index where segment `k` starts: `ceil(k × D × fps)`.
    pub fn start_frame(&self, k: u64) -> u64 {
        let num = k * self.segment_ms * u64::from(self.frame_rate.num);
        let den = 1000 * u64::from(self.frame_rate.den);
        num.div_ceil(den)
    }

    /// Index of the segment containing frame `i`.
    pub fn segment_of(&self, frame: u64) -> u64 {
        // Largest k with start_frame(k) ≤ frame; start_frame is monotonic, estimate then adjust.
        let per = self.segment_ms as f64 * self.frame_rate.as_f64() / 1000.0;
        let mut k = (frame as f64 / per).floor() as u64;
        while k > 0 && self.start_frame(k) > frame {
            k -= 1;
        }
        while self.start_frame(k + 1) <= frame {
            k += 1;
        }
        k
    }

    /// Whether frame `i` starts a segment (and must be an IDR frame).
    pub fn is_start(&self, frame: u64) -> bool {
        self.start_frame(self.segment_of(frame)) == frame
    }

    /// The longest segment in frames (x264's keyint must exceed it so only forced IDRs occur).
    pub fn max_segment_frames(&self) -> u64 {
        (0..16)
            .map(|k| self.start_frame(k + 1) - self.start_frame(k))
            .max()
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_rate() {
        let b = Boundaries {
            segment_ms: 4000,
            frame_rate: Ratio { num: 30, den: 1 },
        };
        assert_eq!(
            (0..4).map(|k| b.start_frame(k)).collect::<Vec<_>>(),
            [0, 120, 240, 360]
        );
        assert!(b.is_start(0) && b.is_start(120) && !b.is_start(119) && !b.is_start(121));
        assert_eq!(b.segment_of(119), 0);
        assert_eq!(b.segment_of(120), 1);
        assert_eq!(b.max_segment_frames(), 120);
    }

    #[test]
    fn ntsc_rate_rounds_up_to_next_frame() {
        let b = Boundaries {
            segment_ms: 4000,
            frame_rate: Ratio {
                num: 30000,
                den: 1001,
            },
        };
        // 4 s × 29.97 = 119.88 → frame 120 (t = 4.004 s), 8 s → 239.76 → 240, 12 s → 359.64 → 360.
        assert_eq!(b.start_frame(1), 120);
        assert_eq!(b.start_frame(25), 2998); // 100 s × 29.97 = 2997.0…
        for f in 0..10_000 {
            let k = b.segment_of(f);
            assert!(b.start_frame(k) <= f && f < b.start_frame(k + 1));
        }
    }

    #[test]
    fn fractional_duration() {
        let b = Boundaries {
            segment_ms: 2500,
            frame_rate: Ratio { num: 24, den: 1 },
        };
        assert_eq!(b.start_frame(1), 60);
        assert_eq!(b.start_frame(2), 120);
    }
}
