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

/// Whether no username may hold `c`: a control character (general category Cc), a format
/// character (Cf: zero-width spaces and joiners, bidirectional overrides and isolates, the
/// byte-order mark, tag characters, shorthand format controls…), a line or paragraph
/// separator (Zl, Zp), or a Default_Ignorable_Code_Point (variation selectors, the
/// combining grapheme joiner, Hangul fillers…: characters a renderer draws as nothing).
/// The properties are the Unicode Character Database's, as ICU4X ships them, for the
/// whole of Unicode. The same set, as a regular expression, is in [`username_pattern`].
fn is_forbidden(c: char) -> bool {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    let category = CodePointMapData::<GeneralCategory>::new().get(c);
    FORBIDDEN_CATEGORIES.contains(&category)
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// The general categories no username may hold (surrogates cannot occur in text).
const FORBIDDEN_CATEGORIES: [icu_properties::props::GeneralCategory; 4] = {
    use icu_properties::props::GeneralCategory as Gc;
    [
        Gc::Control,
        Gc::Format,
        Gc::LineSeparator,
        Gc::ParagraphSeparator,
    ]
};

/// What a username may be, as the OpenAPI document states it: no character of the forbidden
/// set (see [`Username::parse`]), and no white space at either end. Made once from the
/// same Unicode tables the parser reads. Code points of the Basic Multilingual Plane are
/// written `\uXXXX`; those above it (tag characters, U+1BCA0…) as the characters
/// themselves, since Python's `re` (which schemathesis uses) and ECMA-262 with the `u` flag
/// read both, and no escape for them is read by both.
pub fn username_pattern() -> &'static str {
    static PATTERN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let inner = class(&forbidden_ranges());
        let mut edge = forbidden_ranges();
        edge.extend(
            (0..=u32::from(char::MAX))
                .filter_map(char::from_u32)
                .filter(|c| c.is_whitespace())
                .map(|c| u32::from(c)..=u32::from(c)),
        );
        let edge = class(&merged(edge));
        format!("^[^{edge}](?:[^{inner}]*[^{edge}])?$")
    });
    &PATTERN
}

/// The forbidden code points as sorted, disjoint ranges.
fn forbidden_ranges() -> Vec<std::ops::RangeInclusive<u32>> {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
    use icu_properties::{CodePointMapData, CodePointSetData};
    let categories = CodePointMapData::<GeneralCategory>::new();
    let mut ranges: Vec<_> = FORBIDDEN_CATEGORIES
        .iter()
        .flat_map(|&category| {
            categories.iter_ranges_for_group(GeneralCategoryGroup::from(category))
        })
        .collect();
    ranges.extend(CodePointSetData::new::<DefaultIgnorableCodePoint>().iter_ranges());
    merged(ranges)
}

/// `ranges` sorted, with overlapping and adjacent ones joined.
fn merged(mut ranges: Vec<std::ops::RangeInclusive<u32>>) -> Vec<std::ops::RangeInclusive<u32>> {
    ranges.sort_by_key(|range| *range.start());
    let mut out: Vec<std::ops::RangeInclusive<u32>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if *range.start() <= last.end().saturating_add(1) => {
                *last = *last.start()..=(*last.end()).max(*range.end());
            }
            _ => out.push(range),
        }
    }
    out
}

/// The body of a regular-expression character class holding `ranges`.
fn class(ranges: &[std::ops::RangeInclusive<u32>]) -> String {
    let one = |code: u32| match char::from_u32(code) {
        Some(c) if code > 0xFFFF => c.to_string(),
        _ => format!("\\u{code:04x}"),
    };
    let mut out = String::new();
    for range in ranges {
        out.push_str(&one(*range.start()));
        if range.end() > range.start() {
            out.push('-');
            out.push_str(&one(*range.end()));
        }
    }
    out
}

/// A valid username: 1 to 255 characters in Unicode normalization form C, none of them a
/// control, format, separator or default-ignorable character (anywhere in Unicode: see
/// [`username_pattern`]), no white space at either end. Names are
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
    /// one: a format, zero-width, bidirectional-control, tag or default-ignorable character.
    #[error(
        "username must not contain control characters or invisible format characters (found U+{0:04X}; see the OpenAPI pattern)"
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

/// Receives the users of a page one at a time, borrowed from the database's row.
pub trait UserSink: Send + 'static {
    /// One user, in id order.
    fn user(&mut self, id: UserId, username: &str);
}

impl UserSink for Vec<User> {
    fn user(&mut self, id: UserId, username: &str) {
        self.push(User {
            id,
            username: Username::from_db(username.to_owned()),
        });
    }
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
            // Format and default-ignorable characters anywhere in Unicode: each of these
            // displays as "admin".
            "admin\u{e0061}",
            "\u{e0001}admin",
            "ad\u{1bca0}min",
            "ad\u{34f}min",
            "admin\u{fe0f}",
            "ad\u{e0100}min",
            "ad\u{180b}min",
            "ad\u{115f}min",
            "admin\u{e007f}",
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

    /// Names in many scripts, and emoji, are ordinary names.
    #[test]
    fn names_in_every_script_pass() {
        for name in [
            "Ωmega",
            "Дмитрий",
            "محمد",
            "דוד",
            "हिन्दी",
            "தமிழ்",
            "ไทย",
            "한국어",
            "日本語",
            "中文",
            "ქართული",
            "Ἀθῆναι",
            "ᠮᠣᠩᠭᠣᠯ",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
            "𓂀",
            "🦀",
            "👍🏽",
            "Zoë",
        ] {
            assert!(Username::parse(name).is_ok(), "{name:?}");
        }
    }

    /// The pattern of the OpenAPI document agrees with the parser, on every code point.
    #[test]
    fn the_documented_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(username_pattern()).unwrap();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            // Above the Basic Multilingual Plane, one form per character keeps the test short.
            let forms = match u32::from(c) {
                0..=0xFFFF => vec![format!("a{c}b"), format!("{c}b"), c.to_string()],
                _ => vec![format!("a{c}b")],
            };
            for text in forms {
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
