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

/// Characters no username may hold: control characters, invisible format characters
/// (zero-width spaces and joiners, bidirectional overrides and isolates, the byte-order
/// mark, the soft hyphen…) and line or paragraph separators. The same set, as a regular
/// expression, is in [`USERNAME_PATTERN`].
const FORBIDDEN: &[(char, char)] = &[
    ('\u{0}', '\u{1f}'),
    ('\u{7f}', '\u{9f}'),
    ('\u{ad}', '\u{ad}'),
    ('\u{600}', '\u{605}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{6dd}', '\u{6dd}'),
    ('\u{70f}', '\u{70f}'),
    ('\u{890}', '\u{891}'),
    ('\u{8e2}', '\u{8e2}'),
    ('\u{180e}', '\u{180e}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{2028}', '\u{202e}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{fff9}', '\u{fffb}'),
];

/// What a username may be, as the OpenAPI document states it (ECMA-262 and Python `re`):
/// no character of the forbidden set, and no white space at either end.
pub const USERNAME_PATTERN: &str = concat!(
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891",
    "\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb",
    " \\u00a0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000]",
    "(?:[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891",
    "\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb]*",
    "[^\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891",
    "\\u08e2\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb",
    " \\u00a0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000])?$",
);

/// A valid username: 1 to 255 characters in Unicode normalization form C, none of them a
/// control or invisible format character, no white space at either end. Names are
/// case-sensitive (`Alice` and `alice` are two users) on both backends; two spellings of
/// one text (`café` precomposed or as `e` + combining accent) are one name.
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
    /// The name contains a control character such as a newline or NUL, or an invisible
    /// one: a zero-width or bidirectional-control character, a byte-order mark.
    #[error(
        "username must not contain control characters or invisible format characters (found U+{0:04X})"
    )]
    ControlCharacter(u32),
    /// The name starts or ends with white space.
    #[error("username must not start or end with white space")]
    SurroundingWhitespace,
}

impl Username {
    /// Checks `text` and takes it as a username, in normalization form C.
    pub fn parse(text: impl Into<String>) -> Result<Self, InvalidUsername> {
        use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
        let mut text = text.into();
        if is_nfc_quick(text.chars()) != IsNormalized::Yes {
            text = text.nfc().collect();
        }
        if text.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        let chars = text.chars().count();
        if chars > USERNAME_MAX_CHARS {
            return Err(InvalidUsername::TooLong(chars));
        }
        if let Some(c) = text.chars().find(|&c| is_forbidden(c)) {
            return Err(InvalidUsername::ControlCharacter(u32::from(c)));
        }
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            return Err(InvalidUsername::SurroundingWhitespace);
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

fn is_forbidden(c: char) -> bool {
    FORBIDDEN
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
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

    #[test]
    fn usernames_that_spoof_are_rejected_and_spellings_of_one_name_are_one() {
        for spoof in [
            "admin\u{202e}txt.exe",
            "ad\u{200b}min",
            "ad\u{200d}min",
            "\u{feff}admin",
            "ad\u{2066}min",
            "soft\u{ad}hyphen",
        ] {
            assert!(
                matches!(
                    Username::parse(spoof),
                    Err(InvalidUsername::ControlCharacter(_))
                ),
                "{spoof:?}"
            );
        }
        for spaced in ["   ", " admin", "admin ", "admin\u{3000}", "\u{a0}x"] {
            assert_eq!(
                Username::parse(spaced),
                Err(InvalidUsername::SurroundingWhitespace),
                "{spaced:?}"
            );
        }
        let composed = Username::parse("caf\u{e9}").unwrap();
        let decomposed = Username::parse("cafe\u{301}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.as_str(), "caf\u{e9}");
        assert_ne!(Username::parse("Alice"), Username::parse("alice"));
        assert!(Username::parse("two words").is_ok());
    }

    /// The pattern of the OpenAPI document agrees with the parser.
    #[test]
    fn the_documented_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(USERNAME_PATTERN).unwrap();
        for c in (0..0x1_0000).filter_map(char::from_u32) {
            for text in [format!("a{c}b"), format!("{c}b"), c.to_string()] {
                let parsed = Username::parse(text.as_str());
                // Only NFC text is compared: others are normalised before checking.
                if parsed.as_ref().is_ok_and(|name| name.as_str() != text) {
                    continue;
                }
                assert_eq!(
                    pattern.is_match(&text),
                    parsed.is_ok(),
                    "U+{:04X} in {text:?}",
                    u32::from(c)
                );
            }
        }
    }
}
