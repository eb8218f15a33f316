//! The API listener: HTTPS with rustls when a certificate is configured,
//! plain HTTP otherwise (loopback only unless the operator insists).
//!
//! Why not a self-signed certificate on first start: every client would have
//! to pin it (`--ca-cert data/…`) or skip verification, and a skipped check is
//! what operators end up scripting. Refusing a public plain-HTTP bind keeps
//! the default safe and the loopback default (README, seed guide) unchanged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls { cert: PathBuf, key: PathBuf },
}

impl Transport {
    /// Checks the TLS flags against the bind address.
    ///
    /// # Errors
    /// Only one of cert and key given, or a non-loopback bind without TLS
    /// and without `insecure_http`.
    pub fn resolve(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        insecure_http: bool,
        bind: SocketAddr,
    ) -> anyhow::Result<Transport> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Transport::Tls { cert, key }),
            (Some(_), None) => bail!("--tls-cert needs --tls-key"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert"),
            (None, None) if bind.ip().is_loopback() || insecure_http => Ok(Transport::Plain),
            (None, None) => bail!(
                "--bind {bind}: refusing plain HTTP on a non-loopback address (tokens and \
                 backup keys would cross the network in clear); pass --tls-cert and --tls-key, \
                 or --insecure-http to accept that"
            ),
        }
    }
}

/// Reads a PEM certificate chain and private key into a server config.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {}: invalid PEM", cert.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {}: no certificate in the file", cert.display());
    }
    // The key's own parse error could quote key material; name the file only.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        anyhow::anyhow!(
            "--tls-key {}: no readable PEM private key in the file",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .context("--tls-cert/--tls-key: the key does not match the certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` on `listener` until `shutdown`, then waits for open
/// connections to finish, as `axum::serve` does.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("serving the API");
    };
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some(stream) = handshake(&acceptor, stream, peer).await else {
                return;
            };
            let service = TowerToHyperService::new(app);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// The TLS handshake; a client speaking plain HTTP gets a plain answer
/// saying so, instead of a closed connection it cannot explain.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return None;
    }
    // 0x16 starts every TLS handshake record; a letter starts an HTTP method.
    if first[0].is_ascii_alphabetic() {
        answer_plain_http(stream).await;
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

const PLAIN_HTTP_ANSWER: &str =
    r#"{"error":{"code":"invalid","message":"this port serves HTTPS: use an https:// endpoint"}}"#;

async fn answer_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_ANSWER}",
        PLAIN_HTTP_ANSWER.len()
    );
    // Read what the client sent so closing does not reset the connection
    // before it reads the answer.
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_http_only_on_loopback_unless_insisted() {
        let t = Transport::resolve(None, None, false, addr("127.0.0.1:8099")).unwrap();
        assert_eq!(t, Transport::Plain);
        assert_eq!(
            Transport::resolve(None, None, false, addr("[::1]:8099")).unwrap(),
            Transport::Plain
        );
        let err = Transport::resolve(None, None, false, addr("0.0.0.0:8099")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("0.0.0.0:8099") && msg.contains("--insecure-http"),
            "{msg}"
        );
        assert_eq!(
            Transport::resolve(None, None, true, addr("0.0.0.0:8099")).unwrap(),
            Transport::Plain
        );
        let tls = Transport::resolve(
            Some("c".into()),
            Some("k".into()),
            false,
            addr("0.0.0.0:8099"),
        )
        .unwrap();
        assert!(matches!(tls, Transport::Tls { .. }));
        let err = Transport::resolve(Some("c".into()), None, false, addr("127.0.0.1:1"));
        assert!(format!("{:#}", err.unwrap_err()).contains("--tls-key"));
    }

    #[test]
    fn bad_cert_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "SECRET-MATERIAL").unwrap();
        let err = format!("{:#}", server_config(&cert, &key).unwrap_err());
        assert!(err.contains("--tls-cert"), "{err}");
        let err = format!(
            "{:#}",
            server_config(&dir.path().join("missing"), &key).unwrap_err()
        );
        assert!(err.contains("missing"), "{err}");
    }
}
