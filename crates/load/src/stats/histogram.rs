//! A latency histogram whose memory follows the latencies seen, not the range they could
//! have: a sorted list of the buckets in use. Buckets are log-linear as in HDR histograms
//! with 3 significant digits (1024 per power of two, so a value is known to within 0.1 %),
//! but a label whose latencies cluster uses a few hundred buckets, a few kilobytes, where a
//! dense HDR histogram over 1 µs to 1 h took 180 KiB whether or not it was used.

/// Bits of a value kept exactly: values below 2^11 µs have a bucket each.
const MANTISSA_BITS: u32 = 11;

/// Counts of latencies in microseconds.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    /// `(bucket, count)`, sorted by bucket.
    buckets: Vec<(u32, u64)>,
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
    /// Counts one latency of `micros` microseconds.
    pub fn record(&mut self, micros: u64) {
        let bucket = bucket_of(micros);
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (bucket, 1)),
        }
        if self.count == 0 || micros < self.min {
            self.min = micros;
        }
        self.max = self.max.max(micros);
        self.count += 1;
        let value = micros as f64;
        self.sum += value;
        self.sum_squares += value * value;
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
        for &(bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return middle_of(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Bytes of memory this histogram holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u32, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
