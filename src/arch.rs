//! CPU architectures of Flatcar images, named as systemd names them (`x86-64`, `arm64`)
//! and as Flatcar's release server names its boards (`amd64-usr`, `arm64-usr`).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// Every architecture Flatcar is built for.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// systemd's name (same as [`Arch::systemd_name`]), also used by releases.json.
    pub fn as_str(self) -> &'static str {
        self.systemd_name()
    }

    /// The architecture this program runs on, if Flatcar supports it.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// systemd's name, as in `ARCHITECTURE=` of extension-release files.
    pub fn systemd_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86-64",
            Arch::Arm64 => "arm64",
        }
    }
    /// Flatcar's board name on the release server.
    pub fn board(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64-usr",
            Arch::Arm64 => "arm64-usr",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.systemd_name())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x86-64" | "x86_64" | "amd64" | "amd64-usr" => Ok(Arch::X86_64),
            "arm64" | "aarch64" | "arm64-usr" => Ok(Arch::Arm64),
            _ => Err(format!("unknown architecture '{s}' (use x86-64 or arm64)")),
        }
    }
}
