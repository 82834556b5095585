//! A latency histogram whose memory follows the latencies seen, not the range they could
//! have. Buckets are log-linear as in HDR histograms with 3 significant digits (1024 per
//! power of two, so a value is known to within 0.1 %). A histogram starts as a sorted list of
//! the buckets in use, so a label whose latencies cluster costs a few kilobytes where a dense
//! HDR histogram over 1 µs to 1 h took 180 KiB whether or not it was used: 8 bytes per
//! bucket in use. The whole run's histograms, recorded on every sample, are arrays indexed by
//! bucket instead (up to the largest bucket seen), so recording there is one indexed add.

/// Bits of a value kept exactly: values below 2^11 µs have a bucket each.
const MANTISSA_BITS: u32 = 11;

/// The counts per bucket.
#[derive(Debug, Clone)]
enum Counts {
    /// `(bucket, count)`, sorted by bucket; it turns dense if a count would overflow.
    Sparse(Vec<(u32, u32)>),
    /// The count of bucket `i` at index `i`, up to the largest bucket seen.
    Dense(Vec<u64>),
}

impl Default for Counts {
    fn default() -> Self {
        Self::Sparse(Vec::new())
    }
}

impl Counts {
    fn add(&mut self, bucket: u32) {
        match self {
            Self::Sparse(list) => match list.binary_search_by_key(&bucket, |(b, _)| *b) {
                Ok(i) if list[i].1 < u32::MAX => list[i].1 += 1,
                Ok(_) => {
                    let mut dense = Vec::new();
                    for &(bucket, count) in list.iter() {
                        add_dense(&mut dense, bucket, u64::from(count));
                    }
                    add_dense(&mut dense, bucket, 1);
                    *self = Self::Dense(dense);
                }
                Err(i) => list.insert(i, (bucket, 1)),
            },
            Self::Dense(array) => add_dense(array, bucket, 1),
        }
    }

    /// `(bucket, count)` for every bucket in use, in order.
    fn iter(&self) -> Box<dyn Iterator<Item = (u32, u64)> + '_> {
        match self {
            Self::Sparse(list) => Box::new(list.iter().map(|&(b, n)| (b, u64::from(n)))),
            Self::Dense(array) => Box::new(
                array
                    .iter()
                    .enumerate()
                    .filter(|(_, count)| **count > 0)
                    .map(|(bucket, count)| (u32::try_from(bucket).unwrap_or(u32::MAX), *count)),
            ),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Sparse(list) => list.capacity() * std::mem::size_of::<(u32, u32)>(),
            Self::Dense(array) => array.capacity() * std::mem::size_of::<u64>(),
        }
    }
}

fn add_dense(array: &mut Vec<u64>, bucket: u32, count: u64) {
    let index = bucket as usize;
    if index >= array.len() {
        array.resize(index + 1, 0);
    }
    array[index] += count;
}

/// Counts of latencies in microseconds.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    buckets: Counts,
    count: u64,
    min: u64,
    max: u64,
    sum: f64,
    sum_squares: f64,
}

/// The bucket of `value`: its exponent above [`MANTISSA_BITS`] and its top bits.
fn bucket_of(value: u64) -> u32 {
    let bits = u64::BITS - value.leading_zeros();
    let exponent = bits.saturating_sub(MANTISSA_BITS);
    // The exponent is at most 53 and the mantissa under 2^11: the index fits in u32.
    (exponent << MANTISSA_BITS) | u32::try_from(value >> exponent).unwrap_or(u32::MAX)
}

/// The middle of a bucket's range, so its width does not bias values upwards.
fn middle_of(bucket: u32) -> u64 {
    let exponent = bucket >> MANTISSA_BITS;
    let mantissa = u64::from(bucket & ((1 << MANTISSA_BITS) - 1));
    let low = mantissa << exponent;
    low + ((1u64 << exponent) - 1) / 2
}

impl LatencyHistogram {
    /// An empty histogram kept as an array from the start: for histograms that record
    /// every sample of a run.
    pub fn dense() -> Self {
        Self {
            buckets: Counts::Dense(Vec::new()),
            ..Self::default()
        }
    }

    /// Counts one latency of `micros` microseconds.
    pub fn record(&mut self, micros: u64) {
        self.buckets.add(bucket_of(micros));
        if self.count == 0 || micros < self.min {
            self.min = micros;
        }
        self.max = self.max.max(micros);
        self.count += 1;
        let value = micros as f64;
        self.sum += value;
        self.sum_squares += value * value;
    }

    /// Counts `count` latencies of `micros` microseconds at once (rebuilding a histogram
    /// from another's buckets); the histogram turns dense.
    pub fn record_n(&mut self, micros: u64, count: u64) {
        if count == 0 {
            return;
        }
        if let Counts::Sparse(list) = &self.buckets {
            let mut dense = Vec::new();
            for &(bucket, n) in list {
                add_dense(&mut dense, bucket, u64::from(n));
            }
            self.buckets = Counts::Dense(dense);
        }
        if let Counts::Dense(array) = &mut self.buckets {
            add_dense(array, bucket_of(micros), count);
        }
        if self.count == 0 || micros < self.min {
            self.min = micros;
        }
        self.max = self.max.max(micros);
        self.count += count;
        let (value, n) = (micros as f64, count as f64);
        self.sum += value * n;
        self.sum_squares += value * value * n;
    }

    /// Latencies counted.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest latency, exactly (0 when empty).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The mean latency (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The population standard deviation (0 when empty).
    pub fn stdev(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let mean = self.mean();
        (self.sum_squares / self.count as f64 - mean * mean)
            .max(0.0)
            .sqrt()
    }

    /// The latency at percentile `level` (0 to 100): the minimum and maximum exactly, others
    /// as the middle of their bucket; 0 when empty.
    pub fn percentile(&self, level: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        if level <= 0.0 {
            return self.min;
        }
        if level >= 100.0 {
            return self.max;
        }
        let rank = ((level / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter() {
            seen += count;
            if seen >= rank {
                return middle_of(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// `(value, count)` for every bucket in use, in increasing order: the value is the middle
    /// of the bucket in µs, clamped to the smallest and largest latency seen.
    pub fn counts(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets
            .iter()
            .map(|(bucket, count)| (middle_of(bucket).clamp(self.min, self.max), count))
    }

    /// Bytes of memory this histogram holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_n_at_once_equals_recording_one_by_one() {
        let mut one_by_one = LatencyHistogram::default();
        let mut at_once = LatencyHistogram::default();
        at_once.record(90);
        one_by_one.record(90);
        for (value, count) in [(5, 3), (4000, 2), (123_456, 4)] {
            at_once.record_n(value, count);
            for _ in 0..count {
                one_by_one.record(value);
            }
        }
        at_once.record_n(7, 0);
        let counts: Vec<_> = at_once.counts().collect();
        assert_eq!(counts, one_by_one.counts().collect::<Vec<_>>());
        assert_eq!(at_once.len(), 10);
        assert_eq!((at_once.min(), at_once.percentile(100.0)), (5, 123_456));
        assert!((at_once.mean() - one_by_one.mean()).abs() < 1e-9);
    }

    #[test]
    fn values_are_kept_to_within_a_tenth_of_a_percent() {
        for value in [
            1,
            7,
            2047,
            2048,
            2049,
            50_000,
            1_234_567,
            3_600_000_000,
            u64::MAX / 2,
        ] {
            let middle = middle_of(bucket_of(value));
            let error = middle.abs_diff(value) as f64 / value as f64;
            assert!(error <= 0.001, "{value} -> {middle}");
        }
        assert!(bucket_of(2047) < bucket_of(2048) && bucket_of(2048) < bucket_of(4095));
    }

    #[test]
    fn percentiles_min_max_mean_and_a_small_footprint() {
        let mut histogram = LatencyHistogram::default();
        for ms in 1..=100u64 {
            histogram.record(ms * 1000);
        }
        assert_eq!(histogram.len(), 100);
        assert_eq!((histogram.min(), histogram.max), (1000, 100_000));
        assert_eq!(histogram.percentile(0.0), 1000);
        assert_eq!(histogram.percentile(100.0), 100_000);
        let p50 = histogram.percentile(50.0);
        assert!((49_950..=50_050).contains(&p50), "{p50}");
        assert!((histogram.mean() - 50_500.0).abs() < 1e-6);
        assert!(
            histogram.heap_bytes() <= 100 * 16 * 2,
            "{}",
            histogram.heap_bytes()
        );
        assert_eq!(LatencyHistogram::default().percentile(99.0), 0);
    }

    #[test]
    fn dense_and_sparse_histograms_agree() {
        let mut dense = LatencyHistogram::dense();
        let mut sparse = LatencyHistogram::default();
        for micros in (1..=5000u64).chain([70_000, 70_001, 9_000_000]) {
            dense.record(micros);
            sparse.record(micros);
        }
        assert!(matches!(dense.buckets, Counts::Dense(_)));
        assert!(matches!(sparse.buckets, Counts::Sparse(_)));
        for level in [0.0, 50.0, 90.0, 99.9, 100.0] {
            assert_eq!(
                dense.percentile(level),
                sparse.percentile(level),
                "p{level}"
            );
        }
        let p50 = sparse.percentile(50.0);
        assert!((2495..=2510).contains(&p50), "{p50}");
        assert_eq!(sparse.buckets.iter().map(|(_, n)| n).sum::<u64>(), 5003);
    }
}
