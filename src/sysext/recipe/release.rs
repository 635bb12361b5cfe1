//! Releases the bakery's way (`flatbake sysext release`): build a list of extensions for
//! every architecture, into the directory a self-hosted bakery serves:
//!
//! ```text
//! DIR/extensions/SHA256SUMS                    every image below (what `flatbake --fetch` reads)
//! DIR/extensions/NAME-VERSION-ARCH.raw
//! DIR/extensions/NAME/SHA256SUMS               this extension's images (what sysupdate reads)
//! DIR/extensions/NAME/NAME-VERSION-ARCH.raw    (a hard link, or a copy)
//! DIR/extensions/NAME/NAME.conf                sysupdate transfer, Path=URL/extensions/NAME/
//! DIR/extensions/NAME/NAME-vMAJOR.MINOR.conf   for recipes with sysupdate_minor
//! ```
//!
//! Every image is built and checked before anything is published: a failure leaves the
//! directory as it was (images of that run removed). Also reads a bakery's `SHA256SUMS`
//! back into what it has released ([`parse_released`]).

use super::{create, load, versions, CreateOptions, RecipeError};
use crate::arch::Arch;
use crate::sysext::fetch::Fetcher;
use crate::sysext::pack::{self, Compression, PackOptions};
use crate::sysext::sysupdate::bakery_conf;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Plan<'a> {
    pub out_dir: &'a Path,
    /// Empty: every architecture the recipe builds.
    pub arches: &'a [Arch],
    pub bakery_url: &'a str,
    pub fetcher: &'a Fetcher,
    pub recipes_dir: Option<&'a Path>,
    pub user_sums: &'a [(String, String)],
    pub set: &'a [(String, String)],
    pub rootfs: Option<(&'a Path, bool)>,
    pub compression: Compression,
    pub epoch: Option<u32>,
    pub force: bool,
    pub log: &'a dyn Fn(&str),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecipeError + '_ {
    move |source| RecipeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One image to build.
struct Job {
    recipe: super::Recipe,
    version: String,
    arch: Arch,
    file: String,
}

/// Removes the images of a run that did not finish.
struct Built(Vec<PathBuf>, bool);

impl Drop for Built {
    fn drop(&mut self) {
        if !self.1 {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Build every `NAME[:VERSION]` and publish them; returns the files written.
pub fn release(p: &Plan<'_>, specs: &[String]) -> Result<Vec<PathBuf>, RecipeError> {
    let ext = p.out_dir.join("extensions");
    let mut jobs = Vec::new();
    for spec in specs {
        let (name, ver) = spec.split_once(':').unwrap_or((spec, "latest"));
        let r = load(name, p.recipes_dir)?;
        let bad = |w: String| RecipeError::Invalid(r.name.clone(), w);
        let vs = if ver.is_empty() || ver == "latest" {
            let all = versions::versions(&r, p.fetcher)?;
            let l = versions::latest(&r, &all);
            if l.is_empty() {
                return Err(bad("no usable version found upstream for 'latest'".into()));
            }
            (p.log)(&format!("{name}: latest is {}", l.join(", ")));
            l
        } else {
            vec![r.spell(ver)]
        };
        let arches: Vec<Arch> = if p.arches.is_empty() {
            r.arch
                .keys()
                .filter_map(|a| a.parse().ok())
                .collect::<Vec<Arch>>()
        } else {
            for a in p.arches {
                if !r.arch.contains_key(a.systemd_name()) {
                    return Err(bad(format!(
                        "no build for {a} (it builds {})",
                        r.arch.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            p.arches.to_vec()
        };
        for v in &vs {
            if let Some(e) = crate::sysext::name_problem(&format!("{}-{v}", r.name))
                .or_else(|| v.contains('-').then(|| format!("version {v} contains '-'")))
            {
                return Err(bad(e));
            }
            for a in &arches {
                let file = format!("{}-{v}-{}.raw", r.name, a.systemd_name());
                if !p.force && ext.join(&file).exists() {
                    return Err(bad(format!(
                        "{}: already released; pass --force to rebuild it",
                        ext.join(&file).display()
                    )));
                }
                jobs.push(Job {
                    recipe: r.clone(),
                    version: v.clone(),
                    arch: *a,
                    file,
                });
            }
        }
    }
    // each --set goes to the recipes that have that variable; one no recipe has is a typo
    for (k, _) in p.set {
        if !jobs.iter().any(|j| j.recipe.settable().contains(k)) {
            return Err(RecipeError::Invalid(
                specs.join(" "),
                format!("--set {k}: none of these recipes has a variable {k}"),
            ));
        }
    }
    std::fs::create_dir_all(&ext).map_err(io(&ext))?;
    // build into a scratch directory first: nothing is published until all are built
    let stage = crate::cleanup::temp_dir(&ext, "release-").map_err(io(&ext))?;
    let mut built: Vec<(Job, String)> = Vec::new();
    for job in jobs {
        let r = &job.recipe;
        let opts = PackOptions {
            name: r.name.clone(),
            version: job.version.clone(),
            arch: job.arch,
            os: r.os.clone(),
            format: crate::sysext::image::Format::Squashfs,
            compression: p.compression,
            level: None,
            block_size: 128 * 1024,
            reload_manager: r.reload_manager,
            epoch: p.epoch,
        };
        let out = stage.path().join(&job.file);
        let settable = r.settable();
        let set: Vec<(String, String)> = p
            .set
            .iter()
            .filter(|(k, _)| settable.contains(k))
            .cloned()
            .collect();
        (p.log)(&format!("building {}", job.file));
        let report = create(
            r,
            &CreateOptions {
                version: &job.version,
                arch: job.arch,
                fetcher: p.fetcher,
                user_sums: p.user_sums,
                pack: opts,
                output: &out,
                work_dir: stage.path(),
                log: p.log,
                set: &set,
                rootfs: if r.build.is_some() { p.rootfs } else { None },
            },
        )?;
        let checked = crate::sysext::check::check_image(&out, Some(&r.name), Some(job.arch), None)
            .map_err(|e| RecipeError::Invalid(r.name.clone(), e.to_string()))?;
        if !checked.problems.is_empty() {
            return Err(RecipeError::Invalid(
                r.name.clone(),
                format!(
                    "{}: fails its own check: {}",
                    job.file,
                    checked.problems.join("; ")
                ),
            ));
        }
        built.push((job, report.sha256));
    }
    // publish
    let mut written = Built(Vec::new(), false);
    let mut files = Vec::new();
    for (job, _) in &built {
        let name = &job.recipe.name;
        let dir = ext.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let top = ext.join(&job.file);
        let inner = dir.join(&job.file);
        std::fs::rename(stage.path().join(&job.file), &top).map_err(io(&top))?;
        written.0.push(top.clone());
        let _ = std::fs::remove_file(&inner);
        if std::fs::hard_link(&top, &inner).is_err() {
            std::fs::copy(&top, &inner).map_err(io(&inner))?;
        }
        written.0.push(inner.clone());
        files.push(top);
    }
    for (job, sha) in &built {
        let name = &job.recipe.name;
        let dir = ext.join(name);
        pack::update_sums(&ext, &job.file, sha)?;
        pack::update_sums(&dir, &job.file, sha)?;
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(&conf, bakery_conf(name, p.bakery_url)).map_err(io(&conf))?;
        if !files.contains(&conf) {
            files.push(conf);
        }
        if job.recipe.sysupdate_minor {
            let m = minor_spelled(&job.version);
            let conf = dir.join(format!("{name}-{m}.conf"));
            std::fs::write(&conf, minor_conf(name, &m, p.bakery_url)).map_err(io(&conf))?;
            if !files.contains(&conf) {
                files.push(conf);
            }
        }
    }
    written.1 = true;
    files.push(ext.join("SHA256SUMS"));
    Ok(files)
}

/// The version up to its minor, as spelled (`v1.32.2+k3s1` → `v1.32`).
pub fn minor_spelled(v: &str) -> String {
    let mut dots = 0;
    for (i, c) in v.char_indices() {
        if c == '.' || c == '+' {
            dots += 1;
            if dots == 2 || c == '+' {
                return v[..i].to_owned();
            }
        }
    }
    v.to_owned()
}

/// The sysupdate transfer that stays on one minor (`NAME-v1.32.conf`).
pub fn minor_conf(name: &str, minor: &str, bakery: &str) -> String {
    bakery_conf(name, bakery).replace(
        &format!("MatchPattern={name}-@v-%a.raw"),
        &format!("MatchPattern={name}-{minor}.@v-%a.raw"),
    )
}

/// Released images by extension name: versions (newest first) with their architectures,
/// from a bakery's `SHA256SUMS` (`HEX  NAME-VERSION-ARCH.raw` lines; others ignored).
pub fn parse_released(text: &str) -> BTreeMap<String, Vec<(String, Vec<String>)>> {
    let mut out: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for l in text.lines().take(1_000_000) {
        let mut it = l.split_whitespace();
        let (Some(hex), Some(file)) = (it.next(), it.next()) else {
            continue;
        };
        if !crate::sysext::fetch::is_sha256(hex) {
            continue;
        }
        let file = file.trim_start_matches('*');
        let file = file.rsplit('/').next().unwrap_or(file);
        let Some(stem) = file.strip_suffix(".raw") else {
            continue;
        };
        let Some((rest, arch)) = ["x86-64", "arm64"]
            .iter()
            .find_map(|a| stem.strip_suffix(&format!("-{a}")).map(|r| (r, *a)))
        else {
            continue;
        };
        let Some((name, version)) = rest.rsplit_once('-') else {
            continue;
        };
        let vs = out.entry(name.to_owned()).or_default();
        match vs.iter_mut().find(|(v, _)| v == version) {
            Some((_, arches)) => {
                if !arches.iter().any(|a| a == arch) {
                    arches.push(arch.to_owned());
                    arches.sort();
                }
            }
            None => vs.push((version.to_owned(), vec![arch.to_owned()])),
        }
    }
    for vs in out.values_mut() {
        vs.sort_by(|a, b| versions::version_cmp(&b.0, &a.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bakery_listing() {
        let h = "a".repeat(64);
        let text = format!(
            "{h}  kubernetes-v1.32.2-x86-64.raw\n{h}  kubernetes-v1.32.2-arm64.raw\n{h}  kubernetes-v1.33.0-x86-64.raw\n{h}  docker-compose-2.24.5-arm64.raw\n{h}  kubernetes.conf\nnonsense\n"
        );
        let r = parse_released(&text);
        assert_eq!(
            r["kubernetes"],
            vec![
                ("v1.33.0".to_owned(), vec!["x86-64".to_owned()]),
                (
                    "v1.32.2".to_owned(),
                    vec!["arm64".to_owned(), "x86-64".to_owned()]
                ),
            ]
        );
        assert_eq!(r["docker-compose"][0].0, "2.24.5");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn minor_confs() {
        assert_eq!(minor_spelled("v1.32.2"), "v1.32");
        assert_eq!(minor_spelled("v1.32.2+k3s1"), "v1.32");
        let c = minor_conf("kubernetes", "v1.32", "https://b.example");
        assert!(c.contains("MatchPattern=kubernetes-v1.32.@v-%a.raw"), "{c}");
        assert!(
            c.contains("Path=https://b.example/extensions/kubernetes/"),
            "{c}"
        );
        assert!(crate::sysext::sysupdate::problems(&c).is_empty());
    }
}
