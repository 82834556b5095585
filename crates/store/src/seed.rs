//! Sample users as the tutorial makes them: the first 8 hex characters of a random UUIDv4.

use std::collections::HashSet;

/// How many names one round of seeding generates and inserts at a time.
pub(crate) const BATCH: u64 = 50_000;

/// Reports progress while seeding: called with the number of users just added.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Where seeding gets its names: tutorial-style random names, each distinct from every name
/// it handed out before and from every name it was told is taken.
///
/// The first 8 hex digits of a UUIDv4 are 32 random bits, so a name is kept as the `u32` it
/// spells; names that are not 8 lowercase hex digits can never collide with generated ones.
/// Random bytes are drawn from the OS a batch at a time rather than per name.
#[derive(Default)]
pub(crate) struct NameSource {
    used: HashSet<u32>,
}

impl NameSource {
    /// Marks `name` as taken, if it is one that could be generated.
    pub(crate) fn mark_taken(&mut self, name: &str) {
        if let Some(bits) = generated_bits(name) {
            self.used.insert(bits);
        }
    }

    /// `count` new names, distinct from each other and from every name seen before.
    pub(crate) fn fresh(&mut self, count: u64) -> Result<Vec<String>, getrandom::Error> {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let mut names = Vec::with_capacity(count);
        let mut random = vec![0u8; 4 * count.min(BATCH as usize)];
        while names.len() < count {
            getrandom::fill(&mut random)?;
            for chunk in random.chunks_exact(4) {
                let bits = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                if names.len() < count && self.used.insert(bits) {
                    names.push(format!("{bits:08x}"));
                }
            }
        }
        Ok(names)
    }
}

/// The 32 bits a generated name spells, or `None` for a name seeding could not produce.
fn generated_bits(name: &str) -> Option<u32> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (name.len() == 8 && name.bytes().all(lower_hex))
        .then(|| u32::from_str_radix(name, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_like_the_tutorials() -> Result<(), getrandom::Error> {
        // The tutorial's `str(uuid.uuid4())[0:8]`: eight lowercase hex digits.
        for name in NameSource::default().fresh(100)? {
            assert_eq!(name.len(), 8);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        Ok(())
    }

    #[test]
    fn fresh_names_are_distinct_across_batches_and_skip_taken_ones() -> Result<(), getrandom::Error>
    {
        let mut source = NameSource::default();
        source.mark_taken("0000abcd");
        source.mark_taken("alice");
        let mut names = source.fresh(20_000)?;
        names.extend(source.fresh(20_000)?);
        assert_eq!(names.len(), 40_000);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 40_000);
        assert!(!names.contains(&"0000abcd".to_string()));
        assert!(names.iter().all(|name| generated_bits(name).is_some()));
        Ok(())
    }

    #[test]
    fn only_lowercase_eight_digit_hex_names_are_generated_ones() {
        assert_eq!(generated_bits("d901a56b"), Some(0xd901_a56b));
        for name in ["D901A56B", "d901a56", "d901a56bb", "g901a56b", "+901a56b"] {
            assert_eq!(generated_bits(name), None, "{name}");
        }
    }
}
