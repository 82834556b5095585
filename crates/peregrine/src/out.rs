//! Printing that never panics: `println!` and `eprintln!` panic when the stream is closed
//! (`peregrine load URL --report r | head -0`), which would lose a run's report. Results
//! still go to stdout and notes to stderr; a closed stream only loses what was printed to it.

use std::io::Write as _;

/// Writes `text` to stdout; a closed or failing stdout is ignored.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Longest note printed whole: a message quoting a 1 MB URL is cut in the middle.
const MAX_NOTE_BYTES: usize = 2000;

/// Writes `text` and a newline to stderr, cut to [`MAX_NOTE_BYTES`]; a closed or failing
/// stderr is ignored.
pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(shortened(text).as_bytes());
    let _ = err.write_all(b"\n");
}

/// `text`, or its start and end around a count of what was left out.
fn shortened(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_NOTE_BYTES {
        return text.into();
    }
    let mut head = MAX_NOTE_BYTES / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - MAX_NOTE_BYTES / 4;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}… [{} bytes left out] …{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
    .into()
}

/// `println!` that never panics.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::out::stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::out::stderr(&format!($($arg)*))
    };
}

pub(crate) use {note, say};

#[cfg(test)]
mod tests {
    #[test]
    fn long_notes_are_cut_in_the_middle() {
        let long = format!("start {} end", "é".repeat(500_000));
        let short = super::shortened(&long);
        assert!(short.len() < 2100, "{}", short.len());
        assert!(short.starts_with("start ") && short.ends_with(" end"));
        assert!(short.contains("bytes left out"));
        assert_eq!(super::shortened("short"), "short");
    }
}
