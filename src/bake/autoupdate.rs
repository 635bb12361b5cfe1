//! `--sysupdate`: the ROOT files that make systemd-sysupdate keep baked extensions up
//! to date, as the Flatcar docs' Butane examples write them: `/etc/sysupdate.d/noop.conf`
//! (silences sysupdate's complaint about an empty default config), the enabled
//! `systemd-sysupdate.timer`, one `systemd-sysupdate.service` drop-in per extension
//! running `systemd-sysupdate -C NAME update`, and one restarting systemd-sysext
//! afterwards so a staged update is merged (or, with [`Action::RebootRequired`], the
//! bakery docs' drop-in flagging `/run/reboot-required` when an extension changed).

use crate::fs::{Edits, Op};
use std::path::Path;

pub const NOOP_CONF: &str = "[Source]\nType=regular-file\nPath=/\nMatchPattern=invalid@v.raw\n[Target]\nType=regular-file\nPath=/\n";
pub const TIMER_LINK: &str = "/etc/systemd/system/timers.target.wants/systemd-sysupdate.timer";
pub const TIMER_UNIT: &str = "/usr/lib/systemd/system/systemd-sysupdate.timer";
pub const DROPIN_DIR: &str = "/etc/systemd/system/systemd-sysupdate.service.d";

/// What happens once systemd-sysupdate has staged a new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Action {
    /// Merge it at once: restart systemd-sysext after every update run (Flatcar docs).
    #[default]
    RestartSysext,
    /// Leave it staged and touch /run/reboot-required when an extension changed, for a
    /// reboot manager (kured, FLUO) to act on (the bakery's advice for Kubernetes).
    RebootRequired,
}

/// The drop-in for extension `name`.
pub fn dropin(name: &str, action: Action) -> String {
    match action {
        Action::RestartSysext => format!("[Service]\nExecStartPre=/usr/lib/systemd/systemd-sysupdate -C {name} update\n"),
        Action::RebootRequired => format!(
            "[Service]\n\
             ExecStartPre=/usr/bin/sh -c \"readlink --canonicalize /etc/extensions/{name}.raw > /tmp/{name}\"\n\
             ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C {name} update\n\
             ExecStartPost=/usr/bin/sh -c \"readlink --canonicalize /etc/extensions/{name}.raw > /tmp/{name}-new\"\n\
             ExecStartPost=/usr/bin/sh -c \"if ! cmp --silent /tmp/{name} /tmp/{name}-new; then touch /run/reboot-required; fi\"\n"
        ),
    }
}

/// The drop-in that merges staged updates.
pub const SYSEXT_DROPIN: &str =
    "[Service]\nExecStartPost=/usr/bin/systemctl restart systemd-sysext\n";

/// ROOT edits enabling auto-updates for `names`; generated files are staged in `work`.
pub fn edits(names: &[&str], action: Action, work: &Path) -> std::io::Result<Edits> {
    let mut e = Edits::default();
    let stage = |file: &str, text: &str| -> std::io::Result<std::path::PathBuf> {
        let p = work.join(file);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    e.push(Op::Write {
        path: "/etc/sysupdate.d/noop.conf".into(),
        src: stage("noop.conf", NOOP_CONF)?,
        mode: 0o644,
    });
    e.push(Op::Symlink {
        path: TIMER_LINK.into(),
        target: TIMER_UNIT.into(),
    });
    for n in names {
        e.push(Op::Write {
            path: format!("{DROPIN_DIR}/{n}.conf"),
            src: stage(&format!("dropin-{n}.conf"), &dropin(n, action))?,
            mode: 0o644,
        });
    }
    if action == Action::RestartSysext {
        e.push(Op::Write {
            path: format!("{DROPIN_DIR}/sysext.conf"),
            src: stage("dropin-sysext.conf", SYSEXT_DROPIN)?,
            mode: 0o644,
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noop_conf_is_a_sysupdate_file() {
        assert!(crate::sysext::sysupdate::problems(NOOP_CONF).is_empty());
        assert!(dropin("k8s", Action::RebootRequired).contains("touch /run/reboot-required"));
        assert_eq!(
            dropin("wasmtime", Action::RestartSysext),
            "[Service]\nExecStartPre=/usr/lib/systemd/systemd-sysupdate -C wasmtime update\n"
        );
    }
}
