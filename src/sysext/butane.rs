//! Butane (Flatcar variant) snippets that install a sysext on first boot: the image under
//! `/opt/extensions/NAME/`, the `/etc/extensions/NAME.raw` link to it, and optionally the
//! systemd-sysupdate configuration and units that keep it updated (notes section 5).

use super::sysupdate::bakery_conf;

/// What the snippet installs.
#[derive(Clone, Debug)]
pub struct Snippet<'a> {
    pub name: &'a str,
    /// The image's file name, e.g. `wasmtime-v24.0.0-x86-64.raw`.
    pub file: &'a str,
    /// Where Ignition downloads it from; `None`: `contents.local` (butane `--files-dir`).
    pub url: Option<&'a str>,
    pub sha256: &'a str,
    /// Bakery base URL for the sysupdate transfer file; `None`: no automatic updates.
    pub sysupdate: Option<&'a str>,
}

/// `systemd-sysupdate` needs at least one transfer in `/etc/sysupdate.d`; this one never
/// matches anything (Flatcar's documented workaround).
const NOOP_CONF: &str =
    "[Source]\nType=regular-file\nPath=/\nMatchPattern=invalid@v.raw\n[Target]\nType=regular-file\nPath=/\n";

fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

/// The Butane YAML.
pub fn render(s: &Snippet<'_>) -> String {
    let path = format!("/opt/extensions/{0}/{1}", s.name, s.file);
    let mut y = String::from("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n");
    y.push_str(&format!(
        "    - path: {path}\n      mode: 0644\n      contents:\n"
    ));
    match s.url {
        Some(u) => {
            y.push_str(&format!("        source: {u}\n        verification:\n          hash: sha256-{}\n", s.sha256))
        }
        None => y.push_str(&format!(
            "        # run butane with --files-dir DIR, DIR holding {0} (sha256 {1})\n        local: {0}\n",
            s.file, s.sha256
        )),
    }
    if let Some(bakery) = s.sysupdate {
        y.push_str(&format!(
            "    - path: /etc/sysupdate.{0}.d/{0}.conf\n      mode: 0644\n      contents:\n        inline: |\n{1}",
            s.name,
            block(&bakery_conf(s.name, bakery), 10)
        ));
        y.push_str(&format!(
            "    - path: /etc/sysupdate.d/noop.conf\n      mode: 0644\n      contents:\n        inline: |\n{}",
            block(NOOP_CONF, 10)
        ));
    }
    y.push_str(&format!(
        "  links:\n    - path: /etc/extensions/{}.raw\n      target: {path}\n      hard: false\n",
        s.name
    ));
    if s.sysupdate.is_some() {
        y.push_str(
            "systemd:\n  units:\n    - name: systemd-sysupdate.timer\n      enabled: true\n",
        );
        y.push_str("    - name: systemd-sysupdate.service\n      dropins:\n");
        y.push_str(&format!(
            "        - name: {0}.conf\n          contents: |\n            [Service]\n            ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C {0} update\n",
            s.name
        ));
        y.push_str(
            "        - name: sysext.conf\n          contents: |\n            [Service]\n            ExecStartPost=systemctl restart systemd-sysext\n",
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_url_and_sysupdate() {
        let s = Snippet {
            name: "wasmtime",
            file: "wasmtime-v24.0.0-x86-64.raw",
            url: Some("https://example.org/wasmtime-v24.0.0-x86-64.raw"),
            sha256: "ab",
            sysupdate: Some("https://extensions.flatcar.org"),
        };
        let y = render(&s);
        assert!(
            y.contains("    - path: /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw\n"),
            "{y}"
        );
        assert!(y.contains("          hash: sha256-ab\n"), "{y}");
        assert!(y.contains("    - path: /etc/extensions/wasmtime.raw\n      target: /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw\n"));
        assert!(
            y.contains("          MatchPattern=wasmtime-@v-%a.raw\n"),
            "{y}"
        );
        assert!(y.contains("ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C wasmtime update"));
        assert!(y.contains("systemd-sysupdate.timer\n      enabled: true"));
    }

    #[test]
    fn renders_local_without_sysupdate() {
        let s = Snippet {
            name: "x",
            file: "x.raw",
            url: None,
            sha256: "cd",
            sysupdate: None,
        };
        let y = render(&s);
        assert!(y.contains("        local: x.raw\n"), "{y}");
        assert!(!y.contains("systemd:"), "{y}");
        assert!(!y.contains("verification"), "{y}");
    }
}
