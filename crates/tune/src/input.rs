//! What PgTune asks about the host, validated as PgTune's form validates it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// PostgreSQL major versions PgTune offers.
pub const VERSIONS: std::ops::RangeInclusive<u32> = 10..=18;
/// Largest memory amount the form accepts, in any unit.
pub const MAX_MEMORY_AMOUNT: u64 = 999_999;
/// Fewest connections the form accepts.
pub const MIN_CONNECTIONS: u32 = 20;
/// Largest CPU or connection count the form accepts.
pub const MAX_COUNT: u32 = 999_999;

/// Declares a closed set of choices, each with PgTune's key, parsed from that key.
macro_rules! choices {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $key:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $key)] $variant),+
        }

        impl $name {
            /// Every choice, in PgTune's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// PgTune's key for this choice, as printed in the header.
            pub fn key(self) -> &'static str {
                match self { $(Self::$variant => $key),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.key())
            }
        }

        impl FromStr for $name {
            type Err = InputError;

            fn from_str(text: &str) -> Result<Self, InputError> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|choice| choice.key().eq_ignore_ascii_case(text))
                    .ok_or_else(|| InputError::UnknownChoice {
                        what: $what,
                        got: text.to_owned(),
                        allowed: Self::ALL.iter().map(|c| c.key()).collect::<Vec<_>>().join(", "),
                    })
            }
        }
    };
}

choices!(
    /// The operating system PostgreSQL runs on.
    Os, "OS" {
        /// Linux.
        Linux = "linux",
        /// Windows.
        Windows = "windows",
        /// macOS.
        Mac = "mac",
    }
);
choices!(
    /// The kind of workload.
    DbType, "DB type" {
        /// Web application.
        Web = "web",
        /// Online transaction processing.
        Oltp = "oltp",
        /// Data warehouse.
        Dw = "dw",
        /// Desktop application.
        Desktop = "desktop",
        /// Mixed workload.
        Mixed = "mixed",
    }
);
choices!(
    /// The data storage.
    Storage, "storage" {
        /// Solid-state drive.
        Ssd = "ssd",
        /// Hard disk drive.
        Hdd = "hdd",
        /// Network (SAN) storage.
        San = "san",
        /// NVMe drive.
        Nvme = "nvme",
    }
);
choices!(
    /// The total data size compared with RAM ("Total Data Size" on PgTune's form).
    DataSize, "data size" {
        /// The data fits in RAM.
        LessThanRam = "less_ram",
        /// About one to three times RAM (PgTune's default).
        AboutRam = "mid_ram",
        /// More than three times RAM.
        MoreThanRam = "greater_ram",
    }
);
choices!(
    /// The unit the memory amount is given in.
    MemoryUnit, "memory unit" {
        /// Megabytes (1024 kB).
        Mb = "MB",
        /// Gigabytes.
        Gb = "GB",
        /// Terabytes.
        Tb = "TB",
    }
);

/// Total memory as typed on the form: a whole number and a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// The number, 1 to 999999.
    pub amount: u64,
    /// Its unit.
    pub unit: MemoryUnit,
}

impl Memory {
    /// The amount in kB (1 kB = 1024 bytes).
    pub fn kb(self) -> u64 {
        let per_unit = match self.unit {
            MemoryUnit::Mb => 1 << 10,
            MemoryUnit::Gb => 1 << 20,
            MemoryUnit::Tb => 1 << 30,
        };
        self.amount * per_unit
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.unit)
    }
}

impl FromStr for Memory {
    type Err = InputError;

    /// A number and a unit: `16GB`, `16 GB`, `16G`, `512mb`, `1TB`; a bare number is in GB,
    /// the form's default unit. The form takes whole numbers only, so a fraction is taken in
    /// the next smaller unit when it is a whole number of that unit (`1.5GB` is `1536 MB`,
    /// which PgTune computes the same way), and rejected otherwise.
    fn from_str(text: &str) -> Result<Self, InputError> {
        let text = text.trim();
        let invalid = || InputError::Memory(text.to_owned());
        let number_end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(number_end);
        let unit = parse_memory_unit(unit.trim()).ok_or_else(invalid)?;
        let memory = match number.split_once('.') {
            None => Self {
                amount: number.parse().map_err(|_| invalid())?,
                unit,
            },
            Some((whole, fraction)) => {
                in_smaller_unit(whole, fraction, unit).ok_or_else(invalid)?
            }
        };
        if !(1..=MAX_MEMORY_AMOUNT).contains(&memory.amount) {
            return Err(invalid());
        }
        Ok(memory)
    }
}

/// `MB`/`M`, `GB`/`G`, `TB`/`T` in any case; nothing means GB.
fn parse_memory_unit(unit: &str) -> Option<MemoryUnit> {
    match unit.to_ascii_uppercase().as_str() {
        "" | "G" | "GB" => Some(MemoryUnit::Gb),
        "M" | "MB" => Some(MemoryUnit::Mb),
        "T" | "TB" => Some(MemoryUnit::Tb),
        _ => None,
    }
}

/// `whole.fraction` of `unit` as a whole number of the next smaller unit, if it is one.
fn in_smaller_unit(whole: &str, fraction: &str, unit: MemoryUnit) -> Option<Memory> {
    let smaller = match unit {
        MemoryUnit::Mb => return None,
        MemoryUnit::Gb => MemoryUnit::Mb,
        MemoryUnit::Tb => MemoryUnit::Gb,
    };
    // Short digit strings only, so the arithmetic below cannot overflow.
    let digits_ok = |s: &str| s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_ok(whole) || fraction.is_empty() || !digits_ok(fraction) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction_value: u64 = fraction.parse().ok()?;
    let scale = 10u64.pow(u32::try_from(fraction.len()).ok()?);
    let scaled = fraction_value * 1024;
    scaled.is_multiple_of(scale).then(|| Memory {
        amount: whole * 1024 + scaled / scale,
        unit: smaller,
    })
}

/// Everything PgTune's form asks, already valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TuneInput {
    /// PostgreSQL major version, 10 to 18.
    pub db_version: u32,
    /// Operating system.
    pub os_type: Os,
    /// Workload.
    pub db_type: DbType,
    /// Total memory.
    pub total_memory: Memory,
    /// CPU count, when given.
    pub cpu_num: Option<u32>,
    /// Connection count, when given.
    pub connection_num: Option<u32>,
    /// Storage.
    pub hd_type: Storage,
    /// Data size compared with RAM.
    pub data_size: DataSize,
}

/// Why an input is not one PgTune accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A choice outside the offered ones.
    #[error("unknown {what} {got:?}; allowed: {allowed}")]
    UnknownChoice {
        /// Which input.
        what: &'static str,
        /// What was given.
        got: String,
        /// The allowed keys.
        allowed: String,
    },
    /// A PostgreSQL version PgTune does not offer.
    #[error("unsupported PostgreSQL version {0}; allowed: 10 to 18")]
    Version(u32),
    /// Memory that is not a number from 1 to 999999 with a unit.
    #[error(
        "invalid memory {0:?}: a number from 1 to 999999 and a unit MB, GB or TB (or M, G, T; \
         none means GB), e.g. 16GB, 16G, 512MB; a fraction must be a whole number of the next \
         smaller unit (1.5GB is 1536 MB)"
    )]
    Memory(String),
    /// A CPU count below 1 or above 999999.
    #[error("invalid CPU count {0}: allowed 1 to 999999")]
    Cpus(u32),
    /// A connection count below 20 or above 999999.
    #[error("invalid connection count {0}: allowed 20 to 999999")]
    Connections(u32),
}

impl TuneInput {
    /// Checks the numbers the form checks; the choices are valid by their types.
    pub fn validate(self) -> Result<Self, InputError> {
        if !VERSIONS.contains(&self.db_version) {
            return Err(InputError::Version(self.db_version));
        }
        if !(1..=MAX_MEMORY_AMOUNT).contains(&self.total_memory.amount) {
            return Err(InputError::Memory(self.total_memory.to_string()));
        }
        if let Some(cpus) = self.cpu_num.filter(|n| !(1..=MAX_COUNT).contains(n)) {
            return Err(InputError::Cpus(cpus));
        }
        if let Some(connections) = self
            .connection_num
            .filter(|n| !(MIN_CONNECTIONS..=MAX_COUNT).contains(n))
        {
            return Err(InputError::Connections(connections));
        }
        Ok(self)
    }
}
