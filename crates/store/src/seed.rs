//! Sample users as the tutorial makes them: the first 8 hex characters of a random UUIDv4.

use std::collections::HashSet;

/// How many names one round of seeding generates and inserts at a time.
pub(crate) const BATCH: u64 = 50_000;

/// Reports progress while seeding: called with the number of users just added.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// A tutorial-style username: `str(uuid.uuid4())[0:8]`.
pub fn random_username() -> String {
    let mut name = uuid::Uuid::new_v4().simple().to_string();
    name.truncate(8);
    name
}

/// `count` random names, distinct from each other (not necessarily from stored ones).
pub(crate) fn distinct_names(count: u64) -> Vec<String> {
    let capacity = usize::try_from(count).unwrap_or(usize::MAX);
    let mut seen = HashSet::with_capacity(capacity);
    let mut names = Vec::with_capacity(capacity);
    while (names.len() as u64) < count {
        let name = random_username();
        if seen.insert(name.clone()) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_look_like_the_tutorials() {
        let name = random_username();
        assert_eq!(name.len(), 8);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn distinct_names_are_distinct() {
        let names = distinct_names(20_000);
        assert_eq!(names.len(), 20_000);
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), 20_000);
    }
}
