//! Connecting as one NATS identity (DESIGN §8 "Trust on NATS"): the server list, the identity's
//! credentials, TLS, and an inbox prefix of its own.
//!
//! **Guarantees.**
//! * Credentials never reach a log line or an error. A user and password written into `NATS_URL`
//!   (`nats://user:pass@host:4222`) are taken out of the URL before anything else sees it:
//!   async-nats gets the bare addresses (its own debug logs print them) and the credentials
//!   through its options; every error names the servers as [`Servers`] shows them, host and
//!   port only.
//! * One source of credentials per identity: a `.creds` file, an nkey seed, or a user and
//!   password (in the settings or the URL). Two configured at once is refused, not guessed.
//! * Each identity reads replies on its own inbox prefix (`_INBOX_<identity>`), so server
//!   permissions can keep every party out of the others' request replies and pulled messages
//!   (`deploy/nats/users.conf`).
//! * A first connection that fails is an error within the connection timeout, naming the
//!   servers and the cause, never a silent wait. Later disconnects are retried by async-nats.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use async_nats::{ConnectOptions, ServerAddr};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::NatsCredentials;

/// How long one attempt to reach a server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The servers of `NATS_URL` (comma separated), without the credentials it may carry.
pub struct Servers {
    addrs: Vec<ServerAddr>,
    /// `scheme://host:port` of each, for messages.
    shown: Vec<String>,
    /// A user and password (or a token, as a user without password) found in the URLs.
    userinfo: Option<(String, Option<SecretString>)>,
}

impl Servers {
    /// Parses `NATS_URL`: one or more `nats://`, `tls://`, `ws://` URLs (or bare `host:port`),
    /// comma separated. No error repeats the input: it may hold a password.
    pub fn parse(urls: &str) -> anyhow::Result<Self> {
        let mut servers = Self {
            addrs: Vec::new(),
            shown: Vec::new(),
            userinfo: None,
        };
        for (n, raw) in urls.split(',').map(str::trim).enumerate() {
            if raw.is_empty() {
                continue;
            }
            let with_scheme = if raw.contains("://") {
                raw.to_owned()
            } else {
                format!("nats://{raw}")
            };
            let mut url = url::Url::parse(&with_scheme)
                .map_err(|e| anyhow!("NATS_URL entry {} is not a URL: {e}", n + 1))?;
            let user = percent_decoded(url.username());
            let password = url.password().map(percent_decoded);
            if !user.is_empty() {
                let found = (user, password.map(SecretString::from));
                match &servers.userinfo {
                    Some(known) if !same_userinfo(known, &found) => {
                        bail!("NATS_URL names different users for different servers")
                    }
                    _ => servers.userinfo = Some(found),
                }
            }
            // Infallible for the URL schemes NATS uses (they have a host).
            let _ = url.set_username("");
            let _ = url.set_password(None);
            let host = url.host_str().unwrap_or_default().to_owned();
            let port = url.port().map_or_else(String::new, |p| format!(":{p}"));
            let shown = format!("{}://{host}{port}", url.scheme());
            let addr: ServerAddr = url
                .as_str()
                .parse()
                .map_err(|e| anyhow!("NATS_URL entry {} ({shown}): {e}", n + 1))?;
            servers.addrs.push(addr);
            servers.shown.push(shown);
        }
        anyhow::ensure!(!servers.addrs.is_empty(), "NATS_URL names no server");
        Ok(servers)
    }
}

impl fmt::Display for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown.join(", "))
    }
}

impl fmt::Debug for Servers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // a user without a password is a token: the user is not shown either
        f.debug_struct("Servers")
            .field("servers", &self.shown)
            .field("credentials", &self.userinfo.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// A URL's user or password as written before percent-encoding (`p%40ss` is `p@ss`).
fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn same_userinfo(a: &(String, Option<SecretString>), b: &(String, Option<SecretString>)) -> bool {
    a.0 == b.0
        && a.1.as_ref().map(|p| p.expose_secret().to_owned())
            == b.1.as_ref().map(|p| p.expose_secret().to_owned())
}

/// Connects to `urls` as `identity` (the connection name, and the inbox prefix
/// `_INBOX_<identity>`), authenticating with `credentials` or, failing those, the user in the
/// URL; TLS with `tls_ca_file` when set.
pub async fn connect(
    urls: &str,
    identity: &str,
    credentials: &NatsCredentials,
    tls_ca_file: Option<&Path>,
) -> anyhow::Result<async_nats::Client> {
    let servers = Servers::parse(urls)?;
    let (options, who) = authenticate(
        ConnectOptions::new()
            .name(identity)
            .custom_inbox_prefix(format!("_INBOX_{identity}"))
            .connection_timeout(CONNECT_TIMEOUT),
        credentials,
        servers.userinfo.clone(),
    )
    .await?;
    let options = match tls_ca_file {
        Some(ca) => options
            .add_root_certificates(ca.to_path_buf())
            .require_tls(true),
        None => options,
    };
    options
        .connect(servers.addrs.clone())
        .await
        // async-nats's error keeps the I/O error under it ("connection refused" or a timeout)
        .map_err(|e| {
            anyhow::Error::new(e).context(format!("connecting to NATS at {servers} as {who}"))
        })
}

/// `options` with the one configured credential, and who that makes us (for messages).
async fn authenticate(
    options: ConnectOptions,
    credentials: &NatsCredentials,
    from_url: Option<(String, Option<SecretString>)>,
) -> anyhow::Result<(ConnectOptions, String)> {
    let NatsCredentials {
        creds_file,
        user,
        password,
        nkey_seed,
    } = credentials;
    let configured = [creds_file.is_some(), nkey_seed.is_some(), user.is_some()]
        .into_iter()
        .filter(|set| *set)
        .count();
    if configured > 1 {
        bail!("configure one NATS credential: a creds file, an nkey seed, or a user and password");
    }
    if password.is_some() && user.is_none() {
        bail!("a NATS password is configured without a user");
    }
    if configured == 1 && from_url.is_some() {
        bail!("NATS_URL carries a user while NATS credentials are configured too");
    }
    if let Some(path) = creds_file {
        let options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("reading the NATS credentials file {}", path.display()))?;
        return Ok((options, format!("the user of {}", path.display())));
    }
    if let Some(seed) = nkey_seed {
        return Ok((
            options.nkey(seed.expose_secret().to_owned()),
            "an nkey".to_owned(),
        ));
    }
    let (user, password) = match (user, from_url) {
        (Some(user), _) => (user.clone(), password.clone()),
        (None, Some(found)) => found,
        (None, None) => return Ok((options, "anonymous".to_owned())),
    };
    Ok(match password {
        Some(password) => (
            options.user_and_password(user.clone(), password.expose_secret().to_owned()),
            format!("user {user}"),
        ),
        // `nats://token@host`: a user without a password is a token.
        None => (options.token(user), "a token".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_taken_out_and_never_shown() {
        let s = Servers::parse("nats://svc:p%40ss+w0rd@nats-1:4222, tls://svc:p%40ss+w0rd@nats-2")
            .unwrap();
        assert_eq!(s.to_string(), "nats://nats-1:4222, tls://nats-2");
        let (user, password) = s.userinfo.clone().unwrap();
        assert_eq!(user, "svc");
        assert_eq!(password.unwrap().expose_secret(), "p@ss+w0rd");
        let debug = format!("{s:?} {:?}", s.addrs);
        assert!(!debug.contains("w0rd"), "{debug}");
    }

    #[test]
    fn bare_host_and_port_get_the_nats_scheme() {
        let s = Servers::parse("127.0.0.1:4222").unwrap();
        assert_eq!(s.to_string(), "nats://127.0.0.1:4222");
        assert!(s.userinfo.is_none());
    }

    #[test]
    fn an_unparseable_url_is_refused_without_repeating_it() {
        let e = Servers::parse("nats://user:hunter2@[bad").unwrap_err();
        assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
        assert!(Servers::parse(" , ").is_err());
        let e = Servers::parse("nats://a:one@h1,nats://b:two@h2").unwrap_err();
        assert!(!format!("{e:#}").contains("one"));
    }

    #[tokio::test]
    async fn two_credentials_at_once_are_refused() {
        let both = NatsCredentials {
            user: Some("u".into()),
            password: Some(SecretString::from("p")),
            nkey_seed: Some(SecretString::from("SU...")),
            creds_file: None,
        };
        assert!(authenticate(ConnectOptions::new(), &both, None)
            .await
            .is_err());
        let user = NatsCredentials {
            user: Some("u".into()),
            password: Some(SecretString::from("p")),
            ..NatsCredentials::default()
        };
        let from_url = Some(("v".to_owned(), Some(SecretString::from("q"))));
        assert!(authenticate(ConnectOptions::new(), &user, from_url)
            .await
            .is_err());
        let (_, who) = authenticate(ConnectOptions::new(), &user, None)
            .await
            .unwrap();
        assert_eq!(who, "user u");
    }
}
