//! Byte sizes written as integers or as strings with a unit.
//!
//! Accepted forms: `1048576` (an integer), `"1048576"`, `"512B"`, `"512KiB"`, `"16MiB"`,
//! `"1GiB"`, `"1TiB"` (powers of 1024) and `"500KB"`, `"16MB"`, `"1GB"`, `"1TB"` (powers of
//! 1000). Units are matched without regard to case and may follow a space. Fractions are
//! rejected, so every accepted string names an exact number of bytes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Description of the accepted forms, used in error messages.
pub(crate) const EXPECTED_BYTE_SIZE: &str =
    "a size in bytes such as 1048576, \"512KiB\", \"16MiB\" or \"1GiB\"";

/// Binary units, largest first, used to print a size in its shortest exact form.
const BINARY_UNITS: [(&str, u64); 4] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

/// Every accepted unit suffix and its multiplier, matched in lowercase.
const UNITS: [(&str, u64); 9] = [
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
];

/// Number of bytes, read from and written as `"16MiB"`-style strings or plain integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Returns the size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Error of [`ByteSize::from_str`], naming the rejected text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid byte size {text:?}: expected {EXPECTED_BYTE_SIZE}")]
pub struct ParseByteSizeError {
    /// The text that was rejected.
    pub text: String,
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseByteSizeError {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        if digits.is_empty() {
            return Err(error());
        }
        let number: u64 = digits.parse().map_err(|_| error())?;

        let unit = unit.trim_start().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, multiplier)| *multiplier)
                .ok_or_else(error)?
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(error)
    }
}

impl fmt::Display for ByteSize {
    /// Writes the size with the largest binary unit that divides it exactly, or as a bare
    /// number of bytes, so that the output parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes != 0 {
            for (name, size) in BINARY_UNITS {
                if bytes % size == 0 {
                    return write!(f, "{}{name}", bytes / size);
                }
            }
        }
        write!(f, "{bytes}")
    }
}

impl Serialize for ByteSize {
    /// Writes a round size as a string with a unit (`"16MiB"`) and any other size as an
    /// integer, because TOML readers expect an integer where no unit applies.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_string();
        if text.bytes().all(|b| b.is_ascii_digit()) {
            serializer.serialize_u64(self.0)
        } else {
            serializer.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED_BYTE_SIZE)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ByteSize, E> {
        u64::try_from(value)
            .map(ByteSize)
            .map_err(|_| E::custom(format_args!("expected {EXPECTED_BYTE_SIZE}")))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ByteSize, E> {
        value
            .parse()
            .map_err(|_| E::custom(format_args!("expected {EXPECTED_BYTE_SIZE}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_plain_and_units() {
        let cases = [
            ("0", 0),
            ("1048576", 1_048_576),
            ("512B", 512),
            ("512KiB", 512 * 1024),
            ("16MiB", 16 * 1024 * 1024),
            ("16 mib", 16 * 1024 * 1024),
            ("1GiB", 1024 * 1024 * 1024),
            ("2TiB", 2 << 40),
            ("500KB", 500_000),
            ("16MB", 16_000_000),
            ("1GB", 1_000_000_000),
            (" 3kib ", 3 * 1024),
        ];
        for (text, bytes) in cases {
            assert_eq!(
                text.parse::<ByteSize>(),
                Ok(ByteSize(bytes)),
                "parsing {text:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_bad_text() {
        for text in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "16 MiBs",
            "16XB",
            "99999999999999999999",
        ] {
            let error = text.parse::<ByteSize>().unwrap_err();
            assert_eq!(error.text, text, "error of {text:?} names the text");
        }
    }

    #[test]
    fn parse_rejects_overflow() {
        assert!("17179869184GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn display_parses_back() {
        for bytes in [
            0,
            1,
            1000,
            1024,
            1536,
            16 << 20,
            256 << 20,
            3 << 30,
            268_435_455,
            u64::MAX,
        ] {
            let text = ByteSize(bytes).to_string();
            assert_eq!(
                text.parse::<ByteSize>(),
                Ok(ByteSize(bytes)),
                "round trip of {text}"
            );
        }
    }

    #[test]
    fn display_uses_largest_exact_unit() {
        assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
        assert_eq!(ByteSize(3 << 30).to_string(), "3GiB");
        assert_eq!(ByteSize(1536).to_string(), "1536");
        assert_eq!(ByteSize(0).to_string(), "0");
    }
}
