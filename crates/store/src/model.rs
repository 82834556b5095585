//! The domain types: a user, its id and its name, each valid once constructed.

use std::fmt;

use serde::Serialize;

/// Longest username the `varchar(255)` column holds, in characters.
pub const USERNAME_MAX_CHARS: usize = 255;

/// A user as stored: the row of table `orguser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The row id, assigned by the database.
    pub id: UserId,
    /// The unique name.
    pub username: Username,
}

/// A user id: a positive 32-bit integer, as `serial` hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(i32);

/// Why text is not a valid [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id must be an integer from 1 to 2147483647, got {0:?}")]
pub struct InvalidUserId(pub String);

impl UserId {
    /// Parses decimal text such as `"7"`; anything else, zero or out of range is an error.
    pub fn parse(text: &str) -> Result<Self, InvalidUserId> {
        let invalid = || InvalidUserId(text.chars().take(40).collect());
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match text.parse::<i32>() {
            Ok(id) if id >= 1 => Ok(Self(id)),
            _ => Err(invalid()),
        }
    }

    /// Wraps a value read from the database, where ids are always positive.
    pub(crate) fn from_db(id: i32) -> Self {
        Self(id)
    }

    /// The id as the database stores it.
    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A valid username: 1 to 255 characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

/// Why text is not a valid [`Username`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUsername {
    /// The name is the empty string.
    #[error("username must not be empty")]
    Empty,
    /// The name has more characters than the column holds.
    #[error("username must be at most {USERNAME_MAX_CHARS} characters, got {0}")]
    TooLong(usize),
    /// The name contains a control character such as a newline or NUL.
    #[error("username must not contain control characters (found U+{0:04X})")]
    ControlCharacter(u32),
}

impl Username {
    /// Checks `text` and takes it as a username.
    pub fn parse(text: impl Into<String>) -> Result<Self, InvalidUsername> {
        let text = text.into();
        if text.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        let chars = text.chars().count();
        if chars > USERNAME_MAX_CHARS {
            return Err(InvalidUsername::TooLong(chars));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(InvalidUsername::ControlCharacter(u32::from(c)));
        }
        Ok(Self(text))
    }

    /// Wraps a value read from the database, which only ever stored valid names.
    pub(crate) fn from_db(text: String) -> Self {
        Self(text)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which slice of the id-ordered user list to read (keyset pagination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Only users with an id greater than this; `None` starts at the beginning.
    pub after: Option<UserId>,
    /// At most this many users.
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_accepts_positive_decimal_integers_only() {
        assert_eq!(UserId::parse("7").map(UserId::get), Ok(7));
        assert_eq!(UserId::parse("2147483647").map(UserId::get), Ok(i32::MAX));
        for bad in ["", "0", "-1", "+1", " 1", "1.0", "2147483648", "abc", "٣"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn username_rules() {
        assert!(Username::parse("e60202a4").is_ok());
        assert!(Username::parse("ünïcødé ok").is_ok());
        assert_eq!(Username::parse(""), Err(InvalidUsername::Empty));
        assert!(Username::parse("é".repeat(255)).is_ok());
        assert_eq!(
            Username::parse("é".repeat(256)),
            Err(InvalidUsername::TooLong(256))
        );
        assert_eq!(
            Username::parse("a\nb"),
            Err(InvalidUsername::ControlCharacter(10))
        );
        assert_eq!(
            Username::parse("a\0"),
            Err(InvalidUsername::ControlCharacter(0))
        );
    }
}
