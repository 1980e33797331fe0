//! POSIX signals by number, parsed from the names engines and users write
//! (`SIGTERM`, `TERM`, `15`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A Linux signal number (1..=64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Linux x86/arm signal names by number; the real-time range is `SIGRTMIN+n`.
const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

impl Signal {
    /// SIGHUP.
    pub const HUP: Signal = Signal(1);
    /// SIGINT.
    pub const INT: Signal = Signal(2);
    /// SIGQUIT.
    pub const QUIT: Signal = Signal(3);
    /// SIGKILL.
    pub const KILL: Signal = Signal(9);
    /// SIGUSR1.
    pub const USR1: Signal = Signal(10);
    /// SIGUSR2.
    pub const USR2: Signal = Signal(12);
    /// SIGTERM.
    pub const TERM: Signal = Signal(15);

    /// The signal with this number, if it is a valid Linux signal (1..=64).
    pub fn from_number(n: i32) -> Result<Signal> {
        if (1..=64).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(Error::invalid_input(format!(
                "signal number {n} is out of range 1..=64"
            )))
        }
    }

    /// The number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The name with the `SIG` prefix (`SIGTERM`), or `SIGRTMIN+n`, or the number.
    pub fn name(self) -> String {
        match NAMES.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => format!("SIG{name}"),
            None if self.0 >= 34 => format!("SIGRTMIN+{}", self.0 - 34),
            None => self.0.to_string(),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl serde::Serialize for Signal {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Signal {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Signal {
    type Err = Error;

    fn from_str(s: &str) -> Result<Signal> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signal::from_number(n);
        }
        let upper = t.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(off) = bare.strip_prefix("RTMIN+") {
            if let Ok(n) = off.parse::<i32>() {
                return Signal::from_number(34 + n);
            }
        }
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(_, n)| Signal(*n))
            .ok_or_else(|| Error::invalid_input(format!("unknown signal {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_prefixes() {
        for s in ["SIGTERM", "TERM", "term", "15", " sigterm "] {
            assert_eq!(s.parse::<Signal>().expect(s), Signal::TERM, "{s}");
        }
        assert_eq!("SIGRTMIN+3".parse::<Signal>().expect("rt").number(), 37);
        assert_eq!(Signal::KILL.name(), "SIGKILL");
        assert_eq!(Signal(37).name(), "SIGRTMIN+3");
    }

    #[test]
    fn serialises_as_its_name() {
        let text = serde_json::to_string(&Signal::USR1).expect("json");
        assert_eq!(text, "\"SIGUSR1\"");
        assert_eq!(
            serde_json::from_str::<Signal>(&text).expect("back"),
            Signal::USR1
        );
        assert!(serde_json::from_str::<Signal>("\"SIGNOPE\"").is_err());
    }

    #[test]
    fn rejects_unknown_and_out_of_range() {
        for s in ["", "SIGFOO", "0", "65", "-9", "TERM15"] {
            let e = s.parse::<Signal>().expect_err(s);
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
        }
    }
}
