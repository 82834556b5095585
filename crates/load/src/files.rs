//! Reading the files a user names (configs, `body-file`, data sources, reports to merge or
//! compare) with a size limit, so that `/dev/zero`, a FIFO with no writer or a huge file
//! is a quick error naming the file instead of a hang or memory running out.

use std::io::Read as _;
use std::path::Path;

/// Largest config file read (YAML or JSON; 100,000 requests with labels take about 10 MB).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;
/// Largest `body-file` read: the body is held in memory for the whole run.
pub const MAX_BODY_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest data-source (CSV) file read: its rows are held in memory for the whole run.
pub const MAX_DATA_BYTES: u64 = 64 * 1024 * 1024;
/// Largest report.json that `report merge` and `report compare` read.
pub const MAX_REPORT_BYTES: u64 = 256 * 1024 * 1024;

/// What may be read besides a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A regular file only: a FIFO would block the run until something writes to it, a
    /// device (`/dev/zero`) never ends.
    RegularFile,
    /// A regular file or a pipe (`peregrine load <(generate-config)`): read up to the limit.
    FileOrPipe,
}

/// The bytes of `file`, or why it cannot be read (never naming it: callers do).
pub fn read_limited(file: &Path, limit: u64, source: Source) -> Result<Vec<u8>, String> {
    let metadata = std::fs::metadata(file).map_err(|e| e.to_string())?;
    let kind = metadata.file_type();
    if kind.is_dir() {
        return Err("is a directory".into());
    }
    let readable = kind.is_file() || source == Source::FileOrPipe && is_fifo(&kind);
    if !readable {
        return Err(match source {
            Source::RegularFile => "is not a regular file (a FIFO or device cannot be read here)",
            Source::FileOrPipe => "is not a regular file or a pipe",
        }
        .into());
    }
    if kind.is_file() && metadata.len() > limit {
        return Err(too_large(metadata.len(), limit));
    }
    let opened = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    opened
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// As [`read_limited`], as UTF-8 text.
pub fn read_text_limited(file: &Path, limit: u64, source: Source) -> Result<String, String> {
    String::from_utf8(read_limited(file, limit, source)?)
        .map_err(|e| format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

fn too_large(size: u64, limit: u64) -> String {
    format!("is over {limit} bytes (at least {size}); at most {limit} are read")
}

#[cfg(unix)]
fn is_fifo(kind: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    kind.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_large_files_are_refused_quickly() {
        let zero = read_limited(Path::new("/dev/zero"), 1024, Source::FileOrPipe);
        assert_eq!(
            zero.err().as_deref(),
            Some("is not a regular file or a pipe")
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_limited(dir.path(), 1024, Source::RegularFile)
                .err()
                .as_deref(),
            Some("is a directory")
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2000]).unwrap();
        let err = read_limited(&big, 1024, Source::RegularFile).unwrap_err();
        assert!(err.contains("over 1024 bytes"), "{err}");
        assert_eq!(
            read_limited(&big, 4096, Source::RegularFile).unwrap().len(),
            2000
        );
    }
}
