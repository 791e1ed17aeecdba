//! TLS for Herald's own listeners: the certificate chain and key of `cert_file`/`key_file`, read at start.

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerTls;

/// A rustls server config from `tls`; `section` (e.g. `http`) names the keys in errors.
pub fn server_config(tls: &ServerTls, section: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_chain(tls, section)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|err| {
        anyhow::anyhow!(
            "cannot read a private key from {section}.key_file {}: {err}; fix: point it at \
             the PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate in cert_file",
            tls.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls has no safe protocol version")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "{section}.key_file {} does not match {section}.cert_file {}, or one is \
                 unusable; fix: use the key that belongs to the certificate",
                tls.key_file.display(),
                tls.cert_file.display()
            )
        })?;
    Ok(Arc::new(config))
}

fn read_chain(tls: &ServerTls, section: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let file = &tls.cert_file;
    let pem = std::fs::read(file).with_context(|| {
        format!(
            "cannot read {section}.cert_file {}; fix: point it at a PEM certificate chain",
            file.display()
        )
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{section}.cert_file {} is not valid PEM", file.display()))?;
    if chain.is_empty() {
        bail!(
            "{section}.cert_file {} holds no certificate; fix: point it at the server's PEM \
             certificate (then any intermediates)",
            file.display()
        );
    }
    Ok(chain)
}
