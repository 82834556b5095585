//! Shards: slice `index` of `count` of a plan, for running one plan from several machines.
//!
//! Every split is an interleaving of the single-machine plan, so the shards together are
//! exactly the whole plan: shard I runs the users whose number u has u % N == I (with the
//! start offsets those users have in the whole plan) and takes the open-model arrivals k
//! with k % N == I of the whole schedule. A throughput cap is divided evenly.

use std::fmt;

/// Most shards a plan may be split into.
pub const MAX_SHARDS: u32 = 10_000;

/// Slice `index` of `count` (`0/1` is the whole plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// Which slice, from 0.
    pub index: u32,
    /// How many slices.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self::WHOLE
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Reads `I/N`, checking N ≥ 1 and I < N.
    fn from_str(text: &str) -> Result<Self, String> {
        let (index, count) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("shard {text:?}: expected I/N, e.g. 0/3"))?;
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("shard {text:?}: {what} {part:?} is not a whole number"))
        };
        Self::new(number(index, "index")?, number(count, "count")?)
    }
}

impl Shard {
    /// The whole plan.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Slice `index` of `count`, range-checked.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "shard count {count} is out of range: give 1 to {MAX_SHARDS}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range: shards of {count} are numbered 0 to {}",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether this is the whole plan.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// How many of the plan's `total` users this shard runs: the u < total with
    /// u % count == index (100 over 3: 34, 33, 33).
    pub fn users(self, total: u32) -> u32 {
        let (total, index, count) = (
            u64::from(total),
            u64::from(self.index),
            u64::from(self.count),
        );
        u32::try_from((total + count - 1 - index) / count).unwrap_or(u32::MAX)
    }

    /// The plan-wide number of this shard's `local`-th user.
    pub fn global_user(self, local: u32) -> u32 {
        local.saturating_mul(self.count).saturating_add(self.index)
    }

    /// The plan-wide number of this shard's `local`-th open-model arrival.
    pub fn global_arrival(self, local: u64) -> u64 {
        local
            .saturating_mul(u64::from(self.count))
            .saturating_add(u64::from(self.index))
    }

    /// This shard's part of a throughput cap of `rate` for the whole plan.
    pub fn rate(self, rate: f64) -> f64 {
        rate / f64::from(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pacing::{arrival_offset, start_offset};
    use std::time::Duration;

    fn shards(count: u32) -> Vec<Shard> {
        (0..count).map(|i| Shard::new(i, count).unwrap()).collect()
    }

    #[test]
    fn users_split_34_33_33_and_cover_every_user_once() {
        let split: Vec<u32> = shards(3).iter().map(|s| s.users(100)).collect();
        assert_eq!(split, [34, 33, 33]);
        for count in 1..=7 {
            for total in [0, 1, 2, 5, 100, 101] {
                let mut seen: Vec<u32> = shards(count)
                    .iter()
                    .flat_map(|s| (0..s.users(total)).map(move |u| s.global_user(u)))
                    .collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..total).collect::<Vec<_>>(), "{total} over {count}");
            }
        }
    }

    #[test]
    fn start_offsets_of_the_shards_are_those_of_the_whole_plan() {
        let ramp = Duration::from_secs(10);
        let whole: Vec<Duration> = (0..100)
            .map(|u| start_offset(u, 100, ramp, Some(4)))
            .collect();
        let mut union: Vec<(u32, Duration)> = shards(3)
            .iter()
            .flat_map(|s| {
                (0..s.users(100)).map(move |u| {
                    let global = s.global_user(u);
                    (global, start_offset(global, 100, ramp, Some(4)))
                })
            })
            .collect();
        union.sort_unstable();
        let union: Vec<Duration> = union.into_iter().map(|(_, offset)| offset).collect();
        assert_eq!(union, whole);
    }

    #[test]
    fn arrivals_interleave_into_the_single_machine_schedule() {
        let (rate, ramp, n) = (1000.0, Duration::from_secs(1), 3000u64);
        let whole: Vec<Duration> = (0..n).map(|k| arrival_offset(k, rate, ramp)).collect();
        let mut union: Vec<Duration> = shards(3)
            .iter()
            .flat_map(|s| {
                (0..n / 3).map(move |local| arrival_offset(s.global_arrival(local), rate, ramp))
            })
            .collect();
        union.sort_unstable();
        assert_eq!(union, whole);
        // Not three bursts: shard 1's first arrivals are 1 and 4 of the whole schedule.
        let second = Shard::new(1, 3).unwrap();
        assert_eq!(second.global_arrival(0), 1);
        assert_eq!(second.global_arrival(1), 4);
    }

    #[test]
    fn shards_are_read_and_range_checked() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard::WHOLE));
        assert!(
            "3/3"
                .parse::<Shard>()
                .unwrap_err()
                .contains("numbered 0 to 2")
        );
        assert!("0/0".parse::<Shard>().unwrap_err().contains("count 0"));
        assert!("a/3".parse::<Shard>().unwrap_err().contains("index"));
        assert!("3".parse::<Shard>().unwrap_err().contains("I/N"));
        assert_eq!(Shard::WHOLE.users(7), 7);
        assert!((Shard::new(0, 4).unwrap().rate(1000.0) - 250.0).abs() < 1e-9);
    }
}
