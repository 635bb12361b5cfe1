//! `flatbake build SPEC.toml`: load a spec, pick the variants to act on (all, `--variant
//! NAME`, `--variant-index N` or `$JOB_COMPLETION_INDEX`), and list them (a CI matrix),
//! print their plans (`--dry-run`), or bake each through the same request the command
//! line builds ([`crate::cli::BakeArgs`] into `bake::execute`).

use super::{bake, fetch, report};
use crate::cli::{BakeArgs, BuildArgs, Cli};
use crate::platform::registry::Registry;
use crate::spec::{self, Input, Source, Variant};
use anyhow::Context;
use clap::Parser;
use serde_json::{json, Value};

/// The environment variable Kubernetes Indexed Jobs set to each pod's index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

pub fn run(a: BuildArgs) -> anyhow::Result<()> {
    let spec = spec::load(&a.spec, a.output_dir.as_deref())?;
    let json_stdout = a.json.as_deref().is_some_and(report::is_stdout);
    if json_stdout {
        crate::out::reserve_for_json();
    }
    if a.list_variants {
        return list(&spec, a.json.as_deref());
    }
    let chosen = select(&spec, &a)?;
    if a.dry_run {
        return dry_run(&spec, &chosen, a.json.as_deref());
    }
    let mut done = Vec::new();
    for (i, v) in &chosen {
        note!("variant {} ({} of {})", v.name, i + 1, spec.variants.len());
        let outputs = build_one(v, &a)
            .with_context(|| format!("{}: variant {}", a.spec.display(), v.name))?;
        let mut d = report::describe(&outputs, a.json.is_some())?;
        d["variant"] = v.name.clone().into();
        d["index"] = (*i).into();
        done.push(d);
    }
    if let Some(path) = &a.json {
        let doc = json!({
            "schema_version": report::SCHEMA_VERSION,
            "command": "build",
            "spec": report::absolute(&a.spec).display().to_string(),
            "variants": done,
        });
        report::write_json(path, &doc)?;
    }
    Ok(())
}

/// The variants to act on, with their indices in the spec.
fn select<'a>(spec: &'a spec::Spec, a: &BuildArgs) -> anyhow::Result<Vec<(usize, &'a Variant)>> {
    let all = || spec.variants.iter().enumerate().collect::<Vec<_>>();
    if let Some(name) = &a.variant {
        return match spec.variants.iter().position(|v| &v.name == name) {
            Some(i) => Ok(vec![(i, &spec.variants[i])]),
            None => anyhow::bail!(
                "--variant {name}: {} has no such variant{} (`--list-variants` lists them)",
                a.spec.display(),
                crate::suggest::hint(name, spec.variants.iter().map(|v| v.name.as_str()))
            ),
        };
    }
    let (index, from) = match a.variant_index {
        Some(i) => (i, "--variant-index".to_owned()),
        None => match std::env::var(INDEX_ENV) {
            Ok(s) if !s.trim().is_empty() => (
                s.trim()
                    .parse::<usize>()
                    .with_context(|| format!("${INDEX_ENV}={s}: not a variant index"))?,
                format!("${INDEX_ENV}"),
            ),
            _ => return Ok(all()),
        },
    };
    match spec.variants.get(index) {
        Some(v) => Ok(vec![(index, v)]),
        None => anyhow::bail!(
            "{from} {index}: {} has {} variants (indices 0 to {}); set completions/parallelism to {}",
            a.spec.display(),
            spec.variants.len(),
            spec.variants.len() - 1,
            spec.variants.len()
        ),
    }
}

/// `--list-variants`: names, or with `--json` a GitHub Actions `strategy.matrix`.
fn list(spec: &spec::Spec, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = json else {
        for v in &spec.variants {
            outln!("{}", v.name);
        }
        return Ok(());
    };
    // Only `include` at the top: any other key would become a matrix dimension.
    let include: Vec<Value> = spec
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "variant": v.name,
                "index": i,
                "arch": v.arch.map(|a| a.to_string()),
                "vendors": v.vendors.join(","),
            })
        })
        .collect();
    let doc = json!({ "include": include });
    if report::is_stdout(path) {
        crate::out::print_machine(format_args!("{}\n", serde_json::to_string(&doc)?));
        Ok(())
    } else {
        report::write_json(path, &doc)
    }
}

/// `--dry-run`: each chosen variant's plan; nothing is fetched or written.
fn dry_run(
    spec: &spec::Spec,
    chosen: &[(usize, &Variant)],
    json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let reg = Registry::load(spec.variants.first().and_then(|v| v.vendors_dir.as_deref()))?;
    let mut plans = Vec::new();
    for (i, v) in chosen {
        check_local_inputs(v)?;
        let outputs: Vec<String> = v
            .disk_outputs(&reg)
            .iter()
            .map(|p| report::absolute(p).display().to_string())
            .collect();
        let input = match &v.input {
            Input::Release(r) => json!({"release": r}),
            Input::Image(p) => json!({"image": report::absolute(p).display().to_string()}),
        };
        let exts: Vec<Value> = v
            .extensions
            .iter()
            .map(|e| {
                let mut x = match &e.source {
                    Source::Bakery(f) => json!({"name": e.name, "bakery": f}),
                    Source::Local(p) => {
                        json!({"name": e.name, "file": report::absolute(p).display().to_string()})
                    }
                };
                let to = e.install_to.clone().unwrap_or_else(|| {
                    crate::bake::place::DEFAULT_INSTALL_TO
                        .parse()
                        .expect("the default install location parses")
                });
                x["install_to"] = format!(
                    "{}:{}",
                    to.target.to_string().to_lowercase(),
                    to.dir.replace("{name}", &e.name)
                )
                .into();
                if let Some(c) = &e.sysupdate_conf {
                    x["sysupdate_conf"] = report::absolute(c).display().to_string().into();
                }
                x
            })
            .collect();
        let plan = json!({
            "variant": v.name,
            "index": i,
            "input": input,
            "arch": v.arch.map(|a| a.to_string()),
            "vendors": v.vendors,
            "extensions": exts,
            "sysupdate": v.sysupdate,
            "ignition": v.ignition.as_ref().map(|p| report::absolute(p).display().to_string()),
            "kernel_args": v.kernel_args,
            "replace_builtin": v.replace_builtin,
            "enable_official": v.enable_official,
            "output_dir": report::absolute(&v.output_dir).display().to_string(),
            "outputs": outputs,
        });
        print_plan(&plan, *i, spec.variants.len());
        plans.push(plan);
    }
    if let Some(path) = json {
        let doc = json!({
            "schema_version": report::SCHEMA_VERSION,
            "command": "build --dry-run",
            "spec": report::absolute(&spec.path).display().to_string(),
            "variants": plans,
        });
        report::write_json(path, &doc)?;
    }
    Ok(())
}

fn print_plan(p: &Value, i: usize, n: usize) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    outln!("variant {} ({} of {n})", s(&p["variant"]), i + 1);
    let input = match (p["input"].get("release"), p["input"].get("image")) {
        (Some(r), _) => format!("Flatcar {} (fetched and verified)", s(r)),
        (_, Some(i)) => s(i),
        _ => String::new(),
    };
    let arch = p["arch"].as_str().unwrap_or("as the image is");
    outln!("  input:      {input}, arch {arch}");
    for e in p["extensions"].as_array().into_iter().flatten() {
        let from = match e.get("bakery") {
            Some(b) => format!("bakery {}", s(b)),
            None => s(&e["file"]),
        };
        outln!(
            "  extension:  {} from {from} -> {}",
            s(&e["name"]),
            s(&e["install_to"])
        );
        if let Some(c) = e.get("sysupdate_conf") {
            outln!("              sysupdate config {}", s(c));
        }
    }
    let list = |k: &str| -> String {
        p[k].as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    if p["sysupdate"].as_bool() == Some(true) {
        outln!("  sysupdate:  enabled");
    }
    if let Some(i) = p["ignition"].as_str() {
        outln!("  ignition:   {i}");
    }
    for (k, label) in [
        ("kernel_args", "kernel args"),
        ("replace_builtin", "mask built-in"),
        ("enable_official", "enable official"),
    ] {
        let l = list(k);
        if !l.is_empty() {
            outln!("  {:<11} {l}", format!("{label}:"));
        }
    }
    for o in p["outputs"].as_array().into_iter().flatten() {
        outln!("  writes:     {}", s(o));
    }
}

/// Local inputs a variant names must be there before anything starts.
fn check_local_inputs(v: &Variant) -> anyhow::Result<()> {
    let mut files: Vec<&std::path::Path> = Vec::new();
    if let Input::Image(p) = &v.input {
        files.push(p);
    }
    for e in &v.extensions {
        if let Source::Local(p) = &e.source {
            files.push(p);
        }
        if let Some(c) = &e.sysupdate_conf {
            files.push(c);
        }
    }
    if let Some(i) = &v.ignition {
        files.push(i);
    }
    for f in files {
        crate::input::open_regular(f)
            .with_context(|| format!("variant {}: {}", v.name, f.display()))?;
    }
    Ok(())
}

/// Bake one variant: the spec's settings become the command line's request.
fn build_one(v: &Variant, a: &BuildArgs) -> anyhow::Result<Vec<std::path::PathBuf>> {
    check_local_inputs(v)?;
    let base = Cli::try_parse_from(["flatbake"])
        .context("the default settings")?
        .bake;
    let (mut args, bakery): (BakeArgs, Vec<String>) = v.bake_args(base);
    args.force = a.force;
    args.work_dir = a.work_dir.clone();
    args.json = None;
    if !bakery.is_empty() {
        let opts = fetch::options(&args.release)?;
        let (exts, confs) = fetch::extensions(&opts, &bakery)?;
        args.extensions.extend(exts);
        for c in confs {
            let name = c.split('=').next().unwrap_or_default().to_owned();
            if !args
                .sysupdate_conf
                .iter()
                .any(|x| x.starts_with(&format!("{name}=")))
            {
                args.sysupdate_conf.push(c);
            }
        }
    }
    let created = !v.output_dir.exists();
    std::fs::create_dir_all(&v.output_dir)
        .with_context(|| format!("{}: cannot create", v.output_dir.display()))?;
    let r = bake::execute(args);
    if r.is_err() && created {
        // leave nothing behind for a variant that failed (only if still empty)
        let _ = std::fs::remove_dir(&v.output_dir);
    }
    r
}
