//! When things happen, as pure functions of the plan and the time: when each closed-model
//! user starts, when each open-model arrival is due, and the throughput cap's slots.

use std::time::Duration;

/// Longest wait any schedule produces; keeps `Instant` arithmetic far from overflow.
const FOREVER: Duration = Duration::from_secs(400 * 24 * 3600);

/// When user `user` of `concurrency` starts after the beginning: spread linearly over
/// `ramp_up`, or in `steps` stairs.
pub fn start_offset(
    user: u32,
    concurrency: u32,
    ramp_up: Duration,
    steps: Option<u32>,
) -> Duration {
    let concurrency = f64::from(concurrency.max(1));
    let fraction = match steps.filter(|&s| s > 0) {
        Some(steps) => {
            (f64::from(user) * f64::from(steps) / concurrency).floor() / f64::from(steps)
        }
        None => f64::from(user) / concurrency,
    };
    seconds(ramp_up.as_secs_f64() * fraction)
}

/// When the `k`-th arrival (from 0) of an open model is due after the beginning: arrivals
/// grow linearly during the ramp-up, N(t) = rate·t²/(2·ramp), then come at `rate`,
/// N(t) = rate·(t − ramp/2).
pub fn arrival_offset(k: u64, rate: f64, ramp_up: Duration) -> Duration {
    let k = k as f64;
    let ramp = ramp_up.as_secs_f64();
    let offset = if ramp > 0.0 && k < rate * ramp / 2.0 {
        (2.0 * ramp * k / rate).sqrt()
    } else {
        ramp / 2.0 + k / rate
    };
    seconds(offset)
}

/// The gap after a throughput-cap slot at `elapsed` since the beginning: the cap grows
/// linearly over the ramp-up (from at least one request per second).
pub fn pacer_gap(rate: f64, ramp_up: Duration, elapsed: Duration) -> Duration {
    let ramp = ramp_up.as_secs_f64();
    let elapsed = elapsed.as_secs_f64();
    let rate = if ramp > 0.0 && elapsed < ramp {
        (rate * elapsed / ramp).max(1.0_f64.min(rate))
    } else {
        rate
    };
    seconds(1.0 / rate)
}

/// Seconds as a duration, clamped to [0, [`FOREVER`]]: a schedule never panics on an
/// extreme or non-finite value, it waits past any run's end instead.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value)
        .unwrap_or(if value > 0.0 { FOREVER } else { Duration::ZERO })
        .min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn users_start_spread_over_the_ramp_up_or_in_stairs() {
        let starts: Vec<_> = (0..4).map(|u| start_offset(u, 4, MS(2000), None)).collect();
        assert_eq!(starts, [MS(0), MS(500), MS(1000), MS(1500)]);
        let stairs: Vec<_> = (0..4)
            .map(|u| start_offset(u, 4, MS(2000), Some(2)))
            .collect();
        assert_eq!(stairs, [MS(0), MS(0), MS(1000), MS(1000)]);
        assert_eq!(start_offset(3, 4, Duration::ZERO, None), Duration::ZERO);
    }

    #[test]
    fn arrivals_grow_over_the_ramp_then_keep_the_rate() {
        // 100/s after a 2 s ramp: the ramp holds 100 arrivals, then one every 10 ms.
        assert_eq!(arrival_offset(0, 100.0, MS(2000)), Duration::ZERO);
        assert_eq!(arrival_offset(25, 100.0, MS(2000)), MS(1000));
        assert_eq!(arrival_offset(100, 100.0, MS(2000)), MS(2000));
        assert_eq!(arrival_offset(110, 100.0, MS(2000)), MS(2100));
        assert_eq!(arrival_offset(7, 1000.0, Duration::ZERO), MS(7));
    }

    #[test]
    fn the_pacer_spaces_slots_and_extreme_rates_never_panic() {
        assert_eq!(pacer_gap(10.0, Duration::ZERO, MS(0)), MS(100));
        // Half way through a 10 s ramp to 20/s: 10/s.
        assert_eq!(pacer_gap(20.0, MS(10_000), MS(5000)), MS(100));
        assert_eq!(pacer_gap(1e-20, Duration::ZERO, MS(0)), FOREVER);
        assert_eq!(arrival_offset(u64::MAX, 1e-20, MS(1)), FOREVER);
        assert_eq!(pacer_gap(f64::NAN, Duration::ZERO, MS(0)), Duration::ZERO);
    }
}
