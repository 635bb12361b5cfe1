//! Debug builds only (`cfg(debug_assertions)`; a release build has no such code): a
//! fault injected between apply and verify, so the end-to-end tests can show that
//! verify catches an output that does not hold the plan and that nothing is renamed
//! into place. `FLATBAKE_FAULT_ROOT_AFTER_APPLY` holds debugfs commands (one a line)
//! run with `-w` on the written copy's ROOT after apply, as a stray writer (a
//! misbehaving tool, a bit flip) would change it.

use crate::disk::layout::FlatcarLayout;
use crate::fs::FsError;
use std::path::Path;

/// The environment variable naming the debugfs commands to run.
pub const ROOT_AFTER_APPLY: &str = "FLATBAKE_FAULT_ROOT_AFTER_APPLY";

/// Run the injected fault, if one is set, on the written image `image`.
pub fn after_apply(image: &Path, layout: &FlatcarLayout, work: &Path) -> Result<(), FsError> {
    match std::env::var(ROOT_AFTER_APPLY) {
        Ok(cmds) if !cmds.trim().is_empty() => {
            crate::fs::ext4::run_debugfs(image, &layout.root, &format!("{cmds}\n"), work)
        }
        _ => Ok(()),
    }
}
