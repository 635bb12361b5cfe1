//! Where a recipe's upstream versions come from: GitHub releases or tags (every page),
//! GitLab tags, the HashiCorp releases index, or an index page scanned for a pattern; and
//! what `latest` means (the newest, or the newest patch of each recent minor).

use super::{Recipe, RecipeError};
use crate::sysext::fetch::Fetcher;
use serde_json::Value;

/// Pages of a paginated listing read at most (100 entries each on GitHub/GitLab).
const MAX_PAGES: usize = 20;

fn json(r: &Recipe, fetcher: &Fetcher, url: &str) -> Result<Value, RecipeError> {
    let text = fetcher.text(url)?;
    serde_json::from_str(&text).map_err(|e| {
        RecipeError::Invalid(
            r.name.clone(),
            format!(
                "{}: not the JSON listing expected: {e}",
                fetcher.resolve(url)
            ),
        )
    })
}

/// Every page of a listing whose pages are JSON arrays of `per_page` entries.
fn pages(
    r: &Recipe,
    fetcher: &Fetcher,
    base: &str,
    per_page: usize,
) -> Result<Vec<Value>, RecipeError> {
    let mut all = Vec::new();
    for page in 1..=MAX_PAGES {
        let url = format!("{base}?per_page={per_page}&page={page}");
        let v = json(r, fetcher, &url)?;
        let items = v.as_array().cloned().unwrap_or_default();
        let n = items.len();
        all.extend(items);
        if n < per_page {
            break;
        }
    }
    Ok(all)
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

fn flag(v: &Value, k: &str) -> bool {
    v.get(k).and_then(|x| x.as_bool()).unwrap_or(false)
}

/// Raw upstream tags or versions, before the recipe's filters.
fn upstream(r: &Recipe, fetcher: &Fetcher) -> Result<Vec<String>, RecipeError> {
    let v = &r.versions;
    if let Some(repo) = &v.github {
        let base = format!("https://api.github.com/repos/{repo}/releases");
        return Ok(pages(r, fetcher, &base, 100)?
            .iter()
            .filter(|rel| !flag(rel, "draft") && !flag(rel, "prerelease"))
            .filter_map(|rel| str_field(rel, "tag_name").map(str::to_owned))
            .collect());
    }
    if let Some(repo) = &v.github_tags {
        let base = format!("https://api.github.com/repos/{repo}/tags");
        return Ok(pages(r, fetcher, &base, 100)?
            .iter()
            .filter_map(|t| str_field(t, "name").map(str::to_owned))
            .collect());
    }
    if let Some(gl) = &v.gitlab {
        let (host, project) = gl.split_once('/').unwrap_or((gl, ""));
        let base = format!("https://{host}/api/v4/projects/{project}/repository/tags");
        return Ok(pages(r, fetcher, &base, 100)?
            .iter()
            .filter_map(|t| str_field(t, "name").map(str::to_owned))
            .collect());
    }
    if let Some(product) = &v.hashicorp {
        // pages of 20, the next one after the last entry's creation time
        let base = format!("https://api.releases.hashicorp.com/v1/releases/{product}");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let url = match &after {
                None => format!("{base}?limit=20"),
                Some(t) => format!("{base}?limit=20&after={t}"),
            };
            let page = json(r, fetcher, &url)?;
            let items = page.as_array().cloned().unwrap_or_default();
            for rel in &items {
                let oss = str_field(rel, "license_class").is_none_or(|c| c == "oss");
                if oss && !flag(rel, "is_prerelease") {
                    if let Some(v) = str_field(rel, "version") {
                        out.push(v.to_owned());
                    }
                }
            }
            match items.last().and_then(|l| str_field(l, "timestamp_created")) {
                Some(t) if items.len() == 20 && after.as_deref() != Some(t) => {
                    after = Some(t.to_owned())
                }
                _ => break,
            }
        }
        return Ok(out);
    }
    if let (Some(index), Some(pattern)) = (&v.index, &v.pattern) {
        let text = fetcher.text(index)?;
        return Ok(scan_versions(&text, pattern));
    }
    Ok(Vec::new())
}

/// Upstream versions usable as sysext versions (no `-` or `/`), spelled as the bakery
/// spells them, newest first.
pub fn versions(r: &Recipe, fetcher: &Fetcher) -> Result<Vec<String>, RecipeError> {
    let strip = r.versions.strip_prefix.as_deref().unwrap_or("");
    let mut out: Vec<String> = upstream(r, fetcher)?
        .into_iter()
        .map(|t| t.strip_prefix(strip).unwrap_or(&t).to_owned())
        .filter(|v| {
            r.versions
                .glob
                .as_deref()
                .is_none_or(|g| super::glob_match(g, v))
        })
        .collect();
    out.retain(|v| {
        !v.is_empty()
            && !v.contains('-')
            && !v.contains('/')
            && v.trim_start_matches(|c: char| !c.is_ascii_digit())
                .starts_with(|c: char| c.is_ascii_digit())
    });
    out.sort_by(|a, b| version_cmp(b, a));
    out.dedup();
    Ok(out)
}

/// What `latest` builds: the newest version, or with `latest_minors = N` the newest patch
/// of each of the N newest minors (newest first).
pub fn latest(r: &Recipe, all: &[String]) -> Vec<String> {
    let Some(n) = r.versions.latest_minors else {
        return all.first().cloned().into_iter().collect();
    };
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for v in all {
        let m = minor(v);
        if !seen.contains(&m) {
            seen.push(m);
            out.push(v.clone());
            if out.len() == n {
                break;
            }
        }
    }
    out
}

/// `MAJOR.MINOR` of a version, without a leading `v` (`v1.32.2+k3s1` → `1.32`).
pub fn minor(v: &str) -> String {
    let bare = v.trim_start_matches('v');
    let mut it = bare.split(['.', '+', '-']);
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        (Some(a), None) => a.to_owned(),
        _ => bare.to_owned(),
    }
}

/// Every `{version}` matched by `pattern` (e.g. `docker-{version}.tgz`) in `text`.
pub fn scan_versions(text: &str, pattern: &str) -> Vec<String> {
    let Some((pre, post)) = pattern.split_once("{version}") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(pre) {
        let after = &rest[i + pre.len()..];
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || ".+_-".contains(c)))
            .unwrap_or(after.len());
        // the version must be followed by `post`; back off to the longest prefix that is
        let cand = &after[..n];
        let mut found = None;
        for end in (1..=cand.len()).rev() {
            if after[end..].starts_with(post)
                && cand[..end].starts_with(|c: char| c.is_ascii_digit())
            {
                found = Some(&cand[..end]);
                break;
            }
        }
        if let Some(v) = found {
            out.push(v.to_owned());
        }
        rest = after;
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// Compare dotted versions numerically where the parts are numbers (a leading `v` is
/// ignored).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.trim_start_matches('v')
            .split(['.', '+'])
            .map(|p| {
                let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_owned())
            })
            .collect()
    };
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minors_and_latest() {
        assert_eq!(minor("v1.32.2+k3s1"), "1.32");
        assert_eq!(minor("2.0.0"), "2.0");
        let r = super::super::Recipe::parse(
            "name='x'\ndescription='d'\n[versions]\ngithub='a/b'\nlatest_minors=2\n[arch.x86-64]\n",
            "x",
        )
        .unwrap();
        let all: Vec<String> = ["v1.33.1", "v1.33.0", "v1.32.5", "v1.31.9"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(latest(&r, &all), vec!["v1.33.1", "v1.32.5"]);
        assert_eq!(version_cmp("v1.10.0", "1.9.0"), std::cmp::Ordering::Greater);
    }
}
