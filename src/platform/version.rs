//! Flatcar release numbers as the vendor data keys them. A fact that changed in a
//! point release is not keyed by major version: Flatcar branches a major for alpha
//! (`M.0.x`), beta (`M.1.x`), stable (`M.2.x`) and LTS (`M.3.x`), and backports to
//! several branches at once, so "from which release on" is a list: the first release of
//! each branch that got the change, then the major where it landed on the main line.
//! For example STACKIT appeared in 4230.2.1, 4344.1.1 and 4372.0.1 (backports) and in
//! 4426 (main line): 4344.0.0 (alpha, before the backport) does not have it, although
//! it is newer than 4230.2.1.

use serde::Deserialize;
use std::fmt;

/// `MAJOR.MINOR.PATCH` of a Flatcar release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ver(pub u32, pub u32, pub u32);

impl Ver {
    /// Parse `4593.2.5` (a build suffix after `+` is ignored; a bare major is `M.0.0`).
    pub fn parse(s: &str) -> Option<Ver> {
        let s = s.split('+').next()?.trim();
        let mut it = s.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        let patch = it.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        if it.next().is_some() {
            return None;
        }
        Some(Ver(major, minor, patch))
    }
}

impl fmt::Display for Ver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ver(m, 0, 0) => write!(f, "{m}"),
            Ver(m, n, p) => write!(f, "{m}.{n}.{p}"),
        }
    }
}

/// From which releases on a fact holds: the last entry is where it landed on the main
/// line (that release and every later one), the others are backports (that release
/// and later ones of the same major only). In the data files: `4722`, `"4487.0.1"` or
/// a list `["4230.2.1", "4344.1.1", "4426"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since(Vec<Ver>);

impl Since {
    pub fn major(m: u32) -> Since {
        Since(vec![Ver(m, 0, 0)])
    }

    /// Whether release `v` has the fact.
    pub fn has(&self, v: Ver) -> bool {
        let Some(last) = self.0.last() else {
            return true;
        };
        v >= *last || self.0.iter().any(|e| e.0 == v.0 && v >= *e)
    }

    /// The main-line release (`4426`).
    pub fn main_line(&self) -> Option<Ver> {
        self.0.last().copied()
    }

    /// `4426` or `4426 (and 4230.2.1, 4344.1.1 onwards within their majors)`.
    pub fn describe(&self) -> String {
        let Some(last) = self.0.last() else {
            return String::new();
        };
        let back: Vec<String> = self.0[..self.0.len() - 1]
            .iter()
            .map(Ver::to_string)
            .collect();
        if back.is_empty() {
            last.to_string()
        } else {
            format!(
                "{last} (and {} onwards within their majors)",
                back.join(", ")
            )
        }
    }
}

impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Since, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum One {
            Major(u32),
            Text(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(One),
            Many(Vec<One>),
        }
        let one = |o: One| -> Result<Ver, D::Error> {
            match o {
                One::Major(m) => Ok(Ver(m, 0, 0)),
                One::Text(s) => Ver::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("{s:?} is not a Flatcar release X.Y.Z"))
                }),
            }
        };
        let mut v = match Raw::deserialize(d)? {
            Raw::One(o) => vec![one(o)?],
            Raw::Many(os) => os.into_iter().map(one).collect::<Result<Vec<_>, _>>()?,
        };
        if v.is_empty() {
            return Err(serde::de::Error::custom("an empty list of releases"));
        }
        let sorted = v.windows(2).all(|w| w[0].0 < w[1].0);
        if !sorted {
            return Err(serde::de::Error::custom(
                "releases must be listed one per major, oldest first",
            ));
        }
        v.shrink_to_fit();
        Ok(Since(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn since(s: &str) -> Since {
        #[derive(Deserialize)]
        struct W {
            s: Since,
        }
        toml::from_str::<W>(&format!("s = {s}")).unwrap().s
    }

    #[test]
    fn backports_and_main_line() {
        let v = |s| Ver::parse(s).unwrap();
        let st = since(r#"["4230.2.1", "4344.1.1", "4372.0.1", 4426]"#);
        for yes in [
            "4230.2.1", "4230.2.4", "4344.1.1", "4372.1.0", "4426.0.0", "4593.2.5",
        ] {
            assert!(st.has(v(yes)), "{yes}");
        }
        for no in ["4230.2.0", "4081.3.10", "4344.0.0", "4372.0.0", "4284.0.0"] {
            assert!(!st.has(v(no)), "{no}");
        }
        assert_eq!(
            st.describe(),
            "4426 (and 4230.2.1, 4344.1.1, 4372.0.1 onwards within their majors)"
        );
        let one = since("4722");
        assert!(one.has(v("4722.0.0")) && !one.has(v("4694.1.0")));
        assert_eq!(one.describe(), "4722");
        assert_eq!(Ver::parse("4593.2.5+dev-1"), Some(Ver(4593, 2, 5)));
        assert_eq!(Ver::parse("x"), None);
        assert!(toml::from_str::<toml::Table>("s = [4426, 4230]").is_ok());
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct W {
            s: Since,
        }
        assert!(toml::from_str::<W>("s = [4426, 4230]").is_err());
        assert!(toml::from_str::<W>("s = \"4.x\"").is_err());
    }
}
