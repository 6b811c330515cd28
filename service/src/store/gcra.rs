//! GCRA (generic cell rate algorithm), the token bucket as one timestamp per key: the
//! "theoretical arrival time" (TAT). The embedded backend runs [`check`]; the Redis backend runs
//! the same arithmetic in [`LUA`] atomically inside Redis with Redis' clock, so every node of a
//! cluster draws from one bucket per client.

use std::time::Duration;

/// Outcome of one request against a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; store the new TAT (µs) until it passes.
    Allow {
        /// New theoretical arrival time (µs).
        tat: u64,
    },
    /// Refused; retry after this long.
    Deny(Duration),
}

/// Emission interval in µs for `rps` requests per second (at least 1).
pub fn interval_us(rps: u32) -> u64 {
    (1_000_000 / u64::from(rps.max(1))).max(1)
}

/// One request at `now` (µs) against a bucket whose TAT is `tat` (None = fresh): `burst`
/// requests may arrive at once, then one per interval.
pub fn check(now: u64, tat: Option<u64>, rps: u32, burst: u32) -> Verdict {
    let i = interval_us(rps);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + i;
    let allow_at = new_tat.saturating_sub(i * u64::from(burst.max(1)));
    if now < allow_at {
        Verdict::Deny(Duration::from_micros(allow_at - now))
    } else {
        Verdict::Allow { tat: new_tat }
    }
}

/// The same algorithm as a Redis script. KEYS[1] = bucket; ARGV[1] = interval µs; ARGV[2] =
/// burst. Returns 0 when allowed, else the wait in µs. Uses Redis' clock (TIME) so nodes with
/// skewed clocks still share one bucket; the key expires when the bucket is full again.
pub const LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local i = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + i
local allow_at = new_tat - i * burst
if now < allow_at then
  return math.ceil(allow_at - now)
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Burst at once, then exactly one request per interval; the wait tells when.
    #[test]
    fn burst_then_rate() {
        let (rps, burst) = (10, 3);
        let mut tat = None;
        let now = 1_000_000_000;
        for _ in 0..3 {
            match check(now, tat, rps, burst) {
                Verdict::Allow { tat: t } => tat = Some(t),
                Verdict::Deny(_) => panic!("burst refused"),
            }
        }
        let Verdict::Deny(wait) = check(now, tat, rps, burst) else {
            panic!("past burst allowed")
        };
        assert_eq!(wait, Duration::from_millis(100));
        assert!(matches!(
            check(now + 100_000, tat, rps, burst),
            Verdict::Allow { .. }
        ));
        // Over a long run the allowed rate is rps (plus the burst).
        let mut tat = None;
        let mut allowed = 0;
        for ms in 0..10_000u64 {
            if let Verdict::Allow { tat: t } = check(now + ms * 1000, tat, rps, burst) {
                tat = Some(t);
                allowed += 1;
            }
        }
        assert!((102..=104).contains(&allowed), "{allowed}");
    }
}
