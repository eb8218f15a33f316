use std::path::{Path, PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Error, Result};

/// PEM material for a TLS-enabled etcd: a throwaway CA, and a client certificate and
/// key it signed (the server certificate is valid for `127.0.0.1` and `localhost`).
#[derive(Clone)]
pub struct TlsPem {
    /// The CA certificate.
    pub ca_pem: String,
    /// Client certificate accepted by the members (`--client-cert-auth`).
    pub client_cert_pem: String,
    /// Client private key.
    pub client_key_pem: String,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem").finish_non_exhaustive()
    }
}

impl TlsPem {
    /// Client options trusting the CA and presenting the client certificate.
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(
                &self.client_cert_pem,
                &self.client_key_pem,
            ))
    }
}

/// Server-side files of a TLS setup.
#[derive(Debug, Clone)]
pub(crate) struct ServerTls {
    pub(crate) pem: TlsPem,
    pub(crate) ca_file: PathBuf,
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

fn tls_err(e: rcgen::Error) -> Error {
    Error::Invalid(format!("generating test certificates: {e}"))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    eku: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(tls_err)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = eku;
    let cert = params.signed_by(&key, issuer).map_err(tls_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Generates a CA, a server and a client certificate; writes the server side to `dir`.
pub(crate) fn generate(dir: &Path) -> Result<ServerTls> {
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "omni-testkit-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).map_err(tls_err)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let (server_cert, server_key) = leaf(
        &issuer,
        "etcd",
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    let (client_cert_pem, client_key_pem) =
        leaf(&issuer, "omni", vec![ExtendedKeyUsagePurpose::ClientAuth])?;
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(Error::io(format!("write {}", p.display())))?;
        Ok(p)
    };
    Ok(ServerTls {
        ca_file: write("ca.crt", &ca_pem)?,
        cert_file: write("server.crt", &server_cert)?,
        key_file: write("server.key", &server_key)?,
        pem: TlsPem {
            ca_pem,
            client_cert_pem,
            client_key_pem,
        },
    })
}

/// Connect options for the test clients, with TLS when given.
pub(crate) fn connect_options(tls: Option<&TlsPem>) -> ConnectOptions {
    let opts = ConnectOptions::new();
    match tls {
        Some(t) => opts.with_tls(t.tls_options()),
        None => opts,
    }
}

/// Writes a fresh CA (`ca.crt`) and a server certificate and key valid for
/// `127.0.0.1` and `localhost` (`server.crt`, `server.key`) into `dir`;
/// returns the three paths in that order.
pub fn write_server_certs(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let tls = generate(dir)?;
    Ok((tls.ca_file, tls.cert_file, tls.key_file))
}
