//! `peregrine tune`: gathers PgTune's inputs from flags and, with `--detect`, from this
//! host; the recommendation itself is the `tune` crate's.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use peregrine_store::{DatabaseUrl, PostgresAdmin};
use peregrine_tune::{
    DataSize, InputError, Memory, MemoryUnit, Os, Recommendation, TuneInput, recommend,
};
use serde::Serialize;

use clap::Parser;

use crate::cli::{Cli, DataSizeArg, TuneArgs, TuneFormat};
use crate::out::say;

/// PgTune's default version on its form.
const DEFAULT_VERSION: u32 = 18;

/// Runs `peregrine tune`.
pub async fn run(args: TuneArgs) -> anyhow::Result<()> {
    let recommendation = recommend(&input(&args).await?);
    let text = render(&recommendation, args.format)?;
    match &args.write {
        None => say!("{text}"),
        Some(path) => {
            write_output(path, &text, args.force)?;
            say!(
                "{}",
                how_to_load(path, args.format, recommendation.settings.len())
            );
        }
    }
    Ok(())
}

/// Writes `text` to `path`; an existing file only with `force`, since it may be a
/// configuration someone edited by hand.
fn write_output(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "--write: {} already exists; add --force to overwrite it",
                path.display()
            )
        } else {
            anyhow::Error::new(err).context(format!("cannot write {}", path.display()))
        }
    })?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// PgTune's configuration text for this host, exactly as `peregrine tune --detect` prints it.
pub async fn detected_conf_text(database_url: Option<&str>) -> anyhow::Result<String> {
    let mut command = vec!["peregrine", "tune", "--detect"];
    command.extend(
        database_url
            .map(|url| ["--database-url", url])
            .into_iter()
            .flatten(),
    );
    let crate::cli::Command::Tune(args) = Cli::try_parse_from(command)?.command else {
        bail!("`peregrine tune --detect` did not parse as the tune command");
    };
    Ok(recommend(&input(&args).await?).conf_text())
}

/// PgTune's input from the flags, filled in from this host with `--detect`.
async fn input(args: &TuneArgs) -> anyhow::Result<TuneInput> {
    let detected = if args.detect {
        Detected::from_host()
    } else {
        Detected::default()
    };
    let db_version = match args.db_version {
        Some(version) => version,
        None if args.detect => detected_version(args.database_url.as_deref()).await?,
        None => DEFAULT_VERSION,
    };
    let input = TuneInput {
        db_version,
        os_type: args.os.or(detected.os).unwrap_or(Os::Linux),
        db_type: args.db_type,
        total_memory: match args.memory.or(detected.memory) {
            Some(memory) => memory,
            None => bail!("--memory is required (e.g. --memory 16GB), or use --detect"),
        },
        cpu_num: args.cpus.or(detected.cpus),
        connection_num: args.connections,
        hd_type: args.storage,
        data_size: match args.data_size {
            DataSizeArg::LessThanRam => DataSize::LessThanRam,
            DataSizeArg::AboutRam => DataSize::AboutRam,
            DataSizeArg::MoreThanRam => DataSize::MoreThanRam,
        },
    };
    input
        .validate()
        .map_err(|err| anyhow::anyhow!("{}: {err}", flag_of(&err)))
}

fn render(recommendation: &Recommendation, format: TuneFormat) -> anyhow::Result<String> {
    Ok(match format {
        TuneFormat::Conf => recommendation.conf_text(),
        TuneFormat::AlterSystem => recommendation.alter_system_text(),
        TuneFormat::Json => serde_json::to_string_pretty(&JsonReport::from(recommendation))?,
    })
}

/// The `--format json` document.
#[derive(Serialize)]
struct JsonReport<'a> {
    input: &'a TuneInput,
    warnings: Vec<String>,
    settings: &'a [peregrine_tune::Setting],
    /// PgTune's values PostgreSQL would refuse, each with the value written instead.
    clamped: Vec<ClampJson>,
    conf_text: String,
}

/// One clamped setting in `--format json`.
#[derive(Serialize)]
struct ClampJson {
    name: &'static str,
    pgtune: String,
    value: String,
    message: String,
}

impl<'a> From<&'a Recommendation> for JsonReport<'a> {
    fn from(recommendation: &'a Recommendation) -> Self {
        Self {
            input: &recommendation.input,
            warnings: recommendation.warning_messages(),
            settings: &recommendation.settings,
            clamped: recommendation
                .clamps
                .iter()
                .map(|c| ClampJson {
                    name: c.name,
                    pgtune: c.pgtune.to_string(),
                    value: c.value.to_string(),
                    message: c.sentence(),
                })
                .collect(),
            conf_text: recommendation.conf_text(),
        }
    }
}

fn how_to_load(path: &Path, format: TuneFormat, settings: usize) -> String {
    let shown = path.display();
    match format {
        TuneFormat::AlterSystem => format!(
            "wrote {settings} ALTER SYSTEM statements to {shown}; apply them with \
             `psql -f {shown}` as a superuser, then restart PostgreSQL"
        ),
        _ => format!(
            "wrote {settings} settings to {shown}; load it from postgresql.conf with \
             `include_if_exists = '{shown}'` (or put it in the conf.d directory), then restart \
             PostgreSQL (shared_buffers, huge_pages and max_connections need a restart)"
        ),
    }
}

/// The flag a validation error is about.
fn flag_of(err: &InputError) -> &'static str {
    match err {
        InputError::Version(_) => "--db-version",
        InputError::Memory(_) => "--memory",
        InputError::Cpus(_) => "--cpus",
        InputError::Connections(_) => "--connections",
        InputError::UnknownChoice { .. } => "input",
    }
}

/// What `--detect` found besides the version; anything it could not find stays `None`.
#[derive(Debug, Default)]
struct Detected {
    os: Option<Os>,
    memory: Option<Memory>,
    cpus: Option<u32>,
}

impl Detected {
    fn from_host() -> Self {
        let detected = Self {
            os: match std::env::consts::OS {
                "linux" => Some(Os::Linux),
                "windows" => Some(Os::Windows),
                "macos" => Some(Os::Mac),
                _ => None,
            },
            memory: total_memory(),
            cpus: std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok()),
        };
        tracing::debug!(?detected, "detected host");
        detected
    }
}

/// The PostgreSQL major version for `--detect`: the server's at `database_url`, else the
/// installed `postgres --version`. Never a guess: a version newer than the server's would
/// recommend settings (such as `io_method`) that stop it from starting.
async fn detected_version(database_url: Option<&str>) -> anyhow::Result<u32> {
    if let Some(url) = database_url {
        match server_version(url).await {
            Ok(version) => return Ok(version),
            Err(reason) => tracing::warn!(
                "cannot ask {reason}; using the version of the PostgreSQL installed here \
                 instead (give --db-version N to choose)"
            ),
        }
    }
    installed_version().ok_or_else(|| {
        anyhow::anyhow!(
            "--detect cannot tell the PostgreSQL version: {}no `postgres` program was found \
             (on PATH, through `pg_config --bindir` or under /usr/lib/postgresql/*/bin); give \
             --db-version N",
            if database_url.is_some() {
                "the database did not answer and "
            } else {
                ""
            }
        )
    })
}

/// How long `--detect` waits for the server at `--database-url` to tell its version.
const VERSION_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The major version of the server at `url`, or why it could not be had (secrets masked).
async fn server_version(url: &str) -> Result<u32, String> {
    let parsed: DatabaseUrl = url
        .parse()
        .map_err(|err| format!("--database-url for a PostgreSQL version: {err}"))?;
    let shown = parsed.to_string();
    let DatabaseUrl::Postgres(config) = parsed else {
        return Err(format!(
            "{shown} for a PostgreSQL version: it is not a PostgreSQL URL"
        ));
    };
    let admin = PostgresAdmin::new(*config);
    match tokio::time::timeout(VERSION_QUERY_TIMEOUT, admin.server_major_version()).await {
        Ok(Ok(version)) => Ok(version),
        Ok(Err(err)) => Err(format!("the database at {shown} for its version: {err}")),
        Err(_) => Err(format!(
            "the database at {shown} for its version: no answer within {}s",
            VERSION_QUERY_TIMEOUT.as_secs()
        )),
    }
}

/// The major version of `postgres --version`, found on PATH, through `pg_config --bindir`
/// or under /usr/lib/postgresql/*/bin (as the tests find it); of several there, the oldest,
/// since settings for a newer version can stop an older server from starting.
fn installed_version() -> Option<u32> {
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let found = ["postgres".to_owned()]
        .into_iter()
        .chain(bindir.map(|dir| format!("{dir}/postgres")))
        .find_map(|program| postgres_version_of(&program));
    found.or_else(oldest_packaged_version)
}

/// The major version `program --version` prints, if it runs.
fn postgres_version_of(program: &str) -> Option<u32> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| parse_postgres_version(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

/// The oldest of the Debian-style installs under /usr/lib/postgresql, warning when there
/// are several.
fn oldest_packaged_version() -> Option<u32> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let program = entry.path().join("bin/postgres");
            postgres_version_of(program.to_str()?)
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 1 {
        tracing::warn!(
            "several PostgreSQL versions are installed ({versions:?}); using the oldest, {} \
             (give --db-version N to choose)",
            versions[0]
        );
    }
    versions.first().copied()
}

/// `postgres (PostgreSQL) 15.18 (Debian …)` -> 15.
fn parse_postgres_version(text: &str) -> Option<u32> {
    let version = text.split(')').nth(1)?.split_whitespace().next()?;
    version.split('.').next()?.parse().ok()
}

/// Total memory from /proc/meminfo, in whole GB (rounded, since MemTotal is a little under
/// the installed amount) or in MB below 1 GB.
fn total_memory() -> Option<Memory> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(memory_from_kb(kb))
}

fn memory_from_kb(kb: u64) -> Memory {
    const GB: u64 = 1 << 20;
    if kb >= GB {
        Memory {
            amount: (kb + GB / 2) / GB,
            unit: MemoryUnit::Gb,
        }
    } else {
        Memory {
            amount: (kb / 1024).max(1),
            unit: MemoryUnit::Mb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_version_text_is_parsed() {
        let text = "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n";
        assert_eq!(parse_postgres_version(text), Some(15));
        assert_eq!(
            parse_postgres_version("postgres (PostgreSQL) 18beta1"),
            None
        );
        assert_eq!(parse_postgres_version("garbage"), None);
    }

    #[test]
    fn memory_is_rounded_to_whole_gigabytes() {
        let gb = |amount| Memory {
            amount,
            unit: MemoryUnit::Gb,
        };
        assert_eq!(memory_from_kb(24_620_000), gb(23));
        assert_eq!(memory_from_kb(25_000_000), gb(24));
        assert_eq!(memory_from_kb(1 << 20), gb(1));
        assert_eq!(
            memory_from_kb(524_288),
            Memory {
                amount: 512,
                unit: MemoryUnit::Mb
            }
        );
    }
}
