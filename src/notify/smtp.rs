//! The SMTP client: one connection, kept between emails, with `TCP_NODELAY` set.
//!
//! lettre's transport writes an email's body and its final `.` in two writes on a socket
//! without `TCP_NODELAY`: the `.` then waits in the kernel for the server's (delayed, up to
//! 40 ms) acknowledgement of the body. That stalled every email ~40 ms (about 20 emails a
//! second per sender), and it is worse than slow: a sender killed in those 40 ms has already
//! handed the `.` to its kernel, which still sends it, so the server accepts an email whose
//! acceptance the sender never hears of and never records: a second copy after the restart
//! (RFC 1047). Here the socket is ours: `TCP_NODELAY`, so the `.` leaves with the body, and
//! the window between the server's acceptance and the sender's record of it shrinks to the
//! server's own reply time.
//!
//! The URL is read as lettre reads it: `smtp://` (plain, port 25), `smtp://...?tls=required`
//! or `?tls=opportunistic` (STARTTLS, port 587), `smtps://` (TLS from the start, port 465);
//! `user:password@` for authentication (PLAIN, then LOGIN); a path names the EHLO host.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// A kept connection idle for longer than this is checked (`NOOP`) before it is used.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// How a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("connecting to the SMTP server: {0}")]
    Connect(#[from] std::io::Error),
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl SmtpError {
    /// Whether the server refused for good (a 5xx reply): trying again will not help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Smtp(e) if e.is_permanent())
    }
}

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encryption {
    None,
    /// `STARTTLS` after the greeting; `required`: refuse a server that does not offer it.
    StartTls {
        required: bool,
    },
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// An SMTP server and the one connection kept to it.
pub struct Smtp {
    host: String,
    port: u16,
    tls: Encryption,
    credentials: Option<Credentials>,
    hello: ClientId,
    connect_timeout: Duration,
    kept: Mutex<Option<Kept>>,
}

struct Kept {
    connection: AsyncSmtpConnection,
    used: Instant,
}

impl Smtp {
    /// The server `url` names (see the module's documentation).
    pub fn from_url(url: &str, connect_timeout: Duration) -> anyhow::Result<Self> {
        let url = url::Url::parse(url).context("APP__NOTIFY__SMTP_URL is not a URL")?;
        let host = url
            .host_str()
            .context("APP__NOTIFY__SMTP_URL names no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let tls_query = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (tls, default_port) = match (url.scheme(), tls_query.as_deref()) {
            ("smtp", None) => (Encryption::None, 25),
            ("smtp", Some("required")) => (Encryption::StartTls { required: true }, 587),
            ("smtp", Some("opportunistic")) => (Encryption::StartTls { required: false }, 587),
            ("smtps", _) => (Encryption::Implicit, 465),
            (scheme, tls) => bail!(
                "APP__NOTIFY__SMTP_URL: scheme {scheme:?} with tls={tls:?} is none of smtp://, \
                 smtp://...?tls=required|opportunistic, smtps://"
            ),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = url
            .password()
            .map(|password| Credentials::new(decode(url.username()), decode(password)));
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
            credentials,
            hello,
            connect_timeout,
            kept: Mutex::new(None),
        })
    }

    /// Delivers `message` on the kept connection (a new one when there is none, it broke, or
    /// it does not answer after a long idle time). Any failure drops the connection.
    pub async fn send(&self, message: &Message) -> Result<(), SmtpError> {
        let mut slot = self.kept.lock().await;
        // taken out while in use: a delivery cancelled half-way leaves no half-used connection
        let mut kept = match slot.take() {
            Some(kept) if !kept.connection.has_broken() => kept,
            _ => self.connect().await?,
        };
        if kept.used.elapsed() >= IDLE_CHECK && !kept.connection.test_connected().await {
            kept.connection.abort().await;
            kept = self.connect().await?;
        }
        kept.connection
            .send(message.envelope(), &message.formatted())
            .await?;
        kept.used = Instant::now();
        *slot = Some(kept);
        Ok(())
    }

    /// Says goodbye on the kept connection, if any.
    pub async fn close(&self) {
        if let Some(mut kept) = self.kept.lock().await.take() {
            kept.connection.quit().await.ok();
        }
    }

    async fn connect(&self) -> Result<Kept, SmtpError> {
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"))??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn AsyncTokioStream> = match self.tls {
            Encryption::Implicit => Box::new(TlsTcp::connect(tcp, &self.host).await?),
            Encryption::None | Encryption::StartTls { .. } => Box::new(tcp),
        };
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let Encryption::StartTls { required } = self.tls {
            if connection.can_starttls() {
                let parameters = TlsParameters::new(self.host.clone())?;
                connection.starttls(parameters, &self.hello).await?;
            } else if required {
                connection.abort().await;
                return Err(std::io::Error::other(
                    "the server does not offer STARTTLS, and the URL says tls=required",
                )
                .into());
            }
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(Kept {
            connection,
            used: Instant::now(),
        })
    }
}

/// A TCP connection with TLS from its first byte, for `smtps://`.
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl TlsTcp {
    async fn connect(tcp: TcpStream, host: &str) -> std::io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls_native_certs::load_native_certs().certs {
            roots.add(certificate).ok();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        Ok(Self(stream))
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Smtp {
        Smtp::from_url(url, Duration::from_secs(1)).expect(url)
    }

    #[test]
    fn urls_are_read_as_lettre_reads_them() {
        let plain = parsed("smtp://mail.example.com");
        assert_eq!((plain.port, plain.tls), (25, Encryption::None));
        assert!(plain.credentials.is_none());
        let start = parsed("smtp://u%40x:p%2Fw@mail.example.com?tls=required");
        assert_eq!(
            (start.port, start.tls),
            (587, Encryption::StartTls { required: true })
        );
        assert_eq!(
            start.credentials,
            Some(Credentials::new("u@x".to_owned(), "p/w".to_owned()))
        );
        let maybe = parsed("smtp://mail.example.com:2525?tls=opportunistic");
        assert_eq!(
            (maybe.port, maybe.tls),
            (2525, Encryption::StartTls { required: false })
        );
        let implicit = parsed("smtps://mail.example.com/shop.example.com");
        assert_eq!((implicit.port, implicit.tls), (465, Encryption::Implicit));
        assert_eq!(
            implicit.hello,
            ClientId::Domain("shop.example.com".to_owned())
        );
        assert_eq!(parsed("smtp://[::1]:25").host, "::1");
    }

    #[test]
    fn other_urls_are_refused() {
        for url in ["http://mail.example.com", "smtp://h?tls=maybe", "smtp:x"] {
            assert!(
                Smtp::from_url(url, Duration::from_secs(1)).is_err(),
                "{url}"
            );
        }
    }
}
