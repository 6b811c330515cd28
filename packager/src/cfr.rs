//! Constant frame rate from source timestamps: output frame `n` (time `n / fps`) shows the
//! latest decoded frame whose time, rounded to the nearest output frame, is ≤ `n` — the rule of
//! FFmpeg's `fps` filter (rounding `near`, padding before the first frame, the last frame held
//! to the end of its duration). Done here rather than by the filter so that a shard that starts
//! decoding at a keyframe in the middle of the source picks exactly the frames a whole-source
//! run picks: the choice for frame `n` depends only on the timestamps around `n`.

use crate::package::Ratio;

/// Output frame index nearest to time `t × tb_num / tb_den` at `fps` (halves away from zero).
pub fn nearest_frame(t: i64, tb_num: i32, tb_den: i32, fps: Ratio) -> i64 {
    let num = i128::from(t) * i128::from(tb_num) * i128::from(fps.num);
    let den = i128::from(tb_den) * i128::from(fps.den);
    if den <= 0 {
        return 0;
    }
    let q = (2 * num.abs() + den) / (2 * den);
    let q = if num < 0 { -q } else { q };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Maps decoded frames onto the constant-rate grid, emitting only frames in `[start, end)`.
pub struct CfrMapper<F> {
    start: u64,
    end: u64,
    next: u64,
    current: Option<F>,
}

impl<F: Clone> CfrMapper<F> {
    /// Emits output frames `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        CfrMapper {
            start,
            end,
            next: 0,
            current: None,
        }
    }

    /// True once every frame of the range has been emitted.
    pub fn done(&self) -> bool {
        self.next >= self.end
    }

    /// Index of the next frame to emit.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    fn emit_until<E>(
        &mut self,
        upto: u64,
        frame: &F,
        out: &mut impl FnMut(u64, F) -> Result<(), E>,
    ) -> Result<(), E> {
        let upto = upto.min(self.end);
        if self.next < self.start {
            self.next = self.start.min(upto.max(self.next));
        }
        while self.next < upto {
            out(self.next, frame.clone())?;
            self.next += 1;
        }
        Ok(())
    }

    /// A decoded frame whose time rounds to output index `at` (may be negative).
    pub fn push<E>(
        &mut self,
        at: i64,
        frame: F,
        out: &mut impl FnMut(u64, F) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = at.max(0) as u64;
        // Frames before the first one are padded with it (as fps with start_time=0 does).
        let prev = self.current.take().unwrap_or_else(|| frame.clone());
        self.emit_until(at, &prev, out)?;
        self.current = Some(frame);
        Ok(())
    }

    /// End of input at output index `end_at` (the last frame's end time, rounded): the last
    /// frame is held until then. Returns the number of output frames the source provides
    /// (the grid position reached), which may fall short of the range's end.
    pub fn finish<E>(
        &mut self,
        end_at: i64,
        out: &mut impl FnMut(u64, F) -> Result<(), E>,
    ) -> Result<u64, E> {
        if let Some(last) = self.current.take() {
            self.emit_until(end_at.max(0) as u64, &last, out)?;
            self.current = Some(last);
        }
        Ok(self.next)
    }

    /// Holds the last frame up to the end of the range (a source a few frames shorter than its
    /// planned length: the final frame is repeated, as the fps filter would).
    pub fn pad_to_end<E>(
        &mut self,
        out: &mut impl FnMut(u64, F) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(last) = self.current.take() {
            self.emit_until(self.end, &last, out)?;
            self.current = Some(last);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(times: &[(i64, char)], end_at: i64, start: u64, end: u64) -> Vec<(u64, char)> {
        let mut m = CfrMapper::new(start, end);
        let mut out = Vec::new();
        let mut sink = |n, f| -> Result<(), ()> {
            out.push((n, f));
            Ok(())
        };
        for &(t, f) in times {
            m.push(t, f, &mut sink).unwrap();
        }
        m.finish(end_at, &mut sink).unwrap();
        out
    }

    #[test]
    fn rounding_is_nearest_half_away() {
        let fps = Ratio { num: 30, den: 1 };
        // 1/90000 time base: one frame = 3000 ticks.
        assert_eq!(nearest_frame(1499, 1, 90_000, fps), 0);
        assert_eq!(nearest_frame(1500, 1, 90_000, fps), 1);
        assert_eq!(nearest_frame(-1500, 1, 90_000, fps), -1);
        assert_eq!(
            nearest_frame(
                3003,
                1,
                30_000,
                Ratio {
                    num: 30000,
                    den: 1001
                }
            ),
            3
        );
    }

    #[test]
    fn duplicates_drops_and_pads_like_fps() {
        // Frames at grid 1, 2, 2 (the later wins), 5; ends at 7.
        let out = run(&[(1, 'a'), (2, 'b'), (2, 'c'), (5, 'd')], 7, 0, 100);
        let want = [
            (0, 'a'),
            (1, 'a'),
            (2, 'c'),
            (3, 'c'),
            (4, 'c'),
            (5, 'd'),
            (6, 'd'),
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn a_range_picks_what_the_whole_run_picks() {
        let times: Vec<(i64, char)> = (0..40)
            .map(|i| (i * 3 / 2, (b'a' + (i % 26) as u8) as char))
            .collect();
        let whole = run(&times, 60, 0, 60);
        // A shard starting at 20 that decodes from the frame at grid 18 (a keyframe before it).
        let from = times.iter().position(|&(t, _)| t >= 18).unwrap();
        let part = run(&times[from..], 60, 20, 40);
        assert_eq!(part, whole[20..40].to_vec());
    }
}
