//! TLS for SMTP: the trust roots (system plus `ca_file`), the minimum version, and the stream type.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use lettre::transport::smtp::client::{
    AsyncTokioStream, Certificate, TlsParameters, TlsParametersBuilder, TlsVersion,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::MinTls;

/// TLS settings for one server name.
#[derive(Clone)]
pub struct Tls {
    /// For STARTTLS, done by lettre.
    pub starttls: TlsParameters,
    /// For implicit TLS, done on our own socket.
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl Tls {
    /// Trust the system's roots and, when given, the CA certificates in `ca_file`.
    pub fn new(host: &str, ca_file: Option<&Path>, min: MinTls) -> anyhow::Result<Tls> {
        let extra = match ca_file {
            Some(path) => read_ca(path)?,
            None => Vec::new(),
        };
        let server_name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("mail.smtp.host `{host}` is not a valid TLS server name"))?;
        Ok(Tls {
            starttls: lettre_params(host, &extra, min)?,
            connector: TlsConnector::from(Arc::new(rustls_config(&extra, min)?)),
            server_name,
        })
    }
}

fn read_ca(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| {
        format!(
            "cannot read mail.smtp.ca_file {}; fix: point it at a PEM file",
            path.display()
        )
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("mail.smtp.ca_file {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "mail.smtp.ca_file {} holds no certificate; fix: point it at the CA's PEM file",
            path.display()
        );
    }
    Ok(certs)
}

fn lettre_params(
    host: &str,
    extra: &[CertificateDer<'static>],
    min: MinTls,
) -> anyhow::Result<TlsParameters> {
    let version = match min {
        MinTls::V1_2 => TlsVersion::Tlsv12,
        MinTls::V1_3 => TlsVersion::Tlsv13,
    };
    let mut builder = TlsParametersBuilder::new(host.to_owned()).set_min_tls_version(version);
    for cert in extra {
        let cert = Certificate::from_der(cert.to_vec()).context("cannot use the CA certificate")?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .context("cannot set up TLS for STARTTLS")
}

fn rustls_config(
    extra: &[CertificateDer<'static>],
    min: MinTls,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for cert in extra {
        roots
            .add(cert.clone())
            .context("cannot trust the CA certificate in mail.smtp.ca_file")?;
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinTls::V1_2 => rustls::ALL_VERSIONS,
        MinTls::V1_3 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An implicit-TLS stream on a socket we made (so TCP_NODELAY is set), handed to lettre.
#[derive(Debug)]
pub struct SmtpsStream(pub TlsStream<TcpStream>);

impl AsyncTokioStream for SmtpsStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for SmtpsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SmtpsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
