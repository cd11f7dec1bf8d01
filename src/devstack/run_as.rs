//! Running as root (CI containers): the unprivileged account PostgreSQL runs as, the directories
//! handed to it, and the `/tmp` fallback for a data dir it cannot reach.
//!
//! PostgreSQL refuses to run as root, so when the effective uid is 0 its binaries run as the
//! `postgres` system user, or `nobody` if there is none ([`postgres_run_as`]). Its directories
//! are chowned to that user; nothing of the user's own directories is loosened. When a directory
//! on the way to the data dir is not traversable for it, the stack moves to
//! `/tmp/order-service-dev-<euid>/<name>-<hash>/`, stable per requested path
//! ([`fallback_data_dir`]) so a restart finds its data again.

use std::{
    fs,
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use nix::unistd::{geteuid, User};
use tracing::{info, warn};

/// The unprivileged account PostgreSQL runs as when we are root.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub(super) name: &'static str,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// `None` when we are not root: PostgreSQL then simply runs as us.
pub(super) fn postgres_run_as() -> Result<Option<RunAs>> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let user = User::from_name(name).with_context(|| format!("looking up user {name}"))?;
        if let Some(user) = user {
            return Ok(Some(RunAs {
                name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }));
        }
    }
    bail!(
        "running as root, and PostgreSQL refuses to run as root; create a `postgres` system user \
         for it to run as, run as a regular user, or set DATABASE_URL to an existing server"
    )
}

/// Creates `dir` (mode 0700) if missing and hands it to `run_as`.
pub(super) fn create_private_dir(dir: &Path, run_as: Option<&RunAs>) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("creating {}", dir.display())),
    }
    if let Some(user) = run_as {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {} to {}", dir.display(), user.name))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))
}

/// Gives the cluster to `user` when it belongs to someone else, e.g. it was created by an earlier
/// run as `nobody` before a `postgres` user existed. PostgreSQL insists on owning its data.
pub(super) fn chown_tree_if_needed(pgdata: &Path, user: &RunAs) -> Result<()> {
    let meta = fs::metadata(pgdata).with_context(|| format!("inspecting {}", pgdata.display()))?;
    if meta.uid() == user.uid {
        return Ok(());
    }
    info!(pgdata = %pgdata.display(), user = user.name, "handing the cluster to its run-as user");
    let mut pending = vec![pgdata.to_path_buf()];
    while let Some(path) = pending.pop() {
        // `lchown` so a symlink in the tree (tablespaces) changes hands itself, not its target.
        std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
        if fs::symlink_metadata(&path)?.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Creates and canonicalizes the data dir; when root, moves it under `/tmp` if `run_as` could not
/// reach it (see the module docs).
pub(super) fn resolve_data_dir(requested: &Path, run_as: Option<&RunAs>) -> Result<PathBuf> {
    fs::create_dir_all(requested)
        .with_context(|| format!("creating data dir {}", requested.display()))?;
    let canonical = fs::canonicalize(requested)
        .with_context(|| format!("resolving data dir {}", requested.display()))?;
    let Some(user) = run_as else {
        return Ok(canonical);
    };
    let Some(blocker) = first_untraversable(&canonical, user.uid, user.gid) else {
        return Ok(canonical);
    };
    let fallback = fallback_data_dir(&canonical, geteuid().as_raw())?;
    if let Some(still_blocked) = first_untraversable(&fallback, user.uid, user.gid) {
        bail!(
            "PostgreSQL must run as {} (we are root), but it cannot enter {} nor the fallback {} \
             ({} is not traversable for it). Use a data dir every user can reach, e.g. under /tmp.",
            user.name,
            blocker.display(),
            fallback.display(),
            still_blocked.display()
        );
    }
    warn!(
        requested = %canonical.display(),
        using = %fallback.display(),
        blocked_by = %blocker.display(),
        "PostgreSQL must run as {} (we are root) and cannot enter {}; keeping the dev stack in {} \
         instead (under /tmp, so it may not survive a reboot)",
        user.name,
        blocker.display(),
        fallback.display()
    );
    Ok(fallback)
}

/// The first directory from `/` down to `path` that `uid`/`gid` may not enter, judged by mode
/// bits (the server runs without supplementary groups, and ACLs are not consulted).
pub(super) fn first_untraversable(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    let mut chain: Vec<&Path> = path.ancestors().collect();
    chain.reverse();
    chain.into_iter().find_map(|dir| {
        let traversable = fs::metadata(dir).is_ok_and(|m| {
            let bit = if m.uid() == uid {
                0o100
            } else if m.gid() == gid {
                0o010
            } else {
                0o001
            };
            m.is_dir() && m.mode() & bit != 0
        });
        (!traversable).then(|| dir.to_path_buf())
    })
}

/// `/tmp/order-service-dev-<euid>/<name>-<hash of the requested path>`, created if missing.
pub(super) fn fallback_data_dir(requested: &Path, euid: u32) -> Result<PathBuf> {
    let base = PathBuf::from(format!("/tmp/order-service-dev-{euid}"));
    match fs::symlink_metadata(&base) {
        Ok(meta) => {
            // /tmp is shared: refuse a base someone else planted (or a symlink to elsewhere).
            if !meta.is_dir() || meta.uid() != euid {
                bail!(
                    "{} exists but is not a directory owned by uid {euid}; remove it",
                    base.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o711)
                .create(&base)
                .with_context(|| format!("creating {}", base.display()))?;
        }
        Err(err) => return Err(err).with_context(|| format!("inspecting {}", base.display())),
    }
    // Traversable but not listable by the server's user.
    fs::set_permissions(&base, fs::Permissions::from_mode(0o711))?;

    let name: String = requested
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = base.join(format!(
        "{name}-{:016x}",
        fnv1a(requested.as_os_str().as_bytes())
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// FNV-1a: a hash that, unlike `DefaultHasher`, is stable across Rust releases, so a data dir
/// maps to the same fallback directory forever.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under /tmp; the test removes it.
    fn scratch_dir(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "devstack-test-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    #[test]
    fn traversal_is_judged_by_owner_group_and_other_bits() {
        let outer = scratch_dir("modes");
        let inner = outer.join("inner");
        fs::create_dir_all(&inner).expect("mkdir");
        let meta = fs::metadata(&outer).expect("stat");
        let (owner, group) = (meta.uid(), meta.gid());
        let stranger = owner + 4242;

        fs::set_permissions(&outer, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(first_untraversable(&inner, stranger, group + 4242), None);

        fs::set_permissions(&outer, fs::Permissions::from_mode(0o710)).expect("chmod");
        assert_eq!(first_untraversable(&inner, owner, group), None);
        assert_eq!(
            first_untraversable(&inner, stranger, group),
            None,
            "group may enter"
        );
        assert_eq!(
            first_untraversable(&inner, stranger, group + 4242),
            Some(outer.clone()),
            "others may not"
        );
        let _ = fs::remove_dir_all(&outer);
    }
}
