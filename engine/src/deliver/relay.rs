//! Relayed messages: the bytes the SMTP listener took, Herald's `Received:` in front, DKIM-signed when configured.

use anyhow::Context;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use crate::config::{DkimAlgorithm, DkimSettings};

/// Signs relayed bytes as they are (lettre signs only messages it builds): relaxed/relaxed,
/// over the same header fields as rule mail.
pub struct RelaySigner {
    signer: DkimSigner<DkimKey, Done>,
}

impl RelaySigner {
    /// The signer of `mail.smtp.dkim`, or why its key cannot be used.
    pub fn new(settings: &DkimSettings) -> anyhow::Result<RelaySigner> {
        let text = std::fs::read_to_string(&settings.key_file).with_context(|| {
            format!(
                "cannot read mail.smtp.dkim.key_file {}",
                settings.key_file.display()
            )
        })?;
        let key = key(text.trim(), settings.algorithm).with_context(|| {
            format!(
                "mail.smtp.dkim.key_file {} is not a {:?} key for relayed mail; fix: rsa needs \
                 a PKCS#1 PEM (BEGIN RSA PRIVATE KEY), ed25519 the base64 private key",
                settings.key_file.display(),
                settings.algorithm
            )
        })?;
        let signer = DkimSigner::from_key(key)
            .domain(settings.domain.clone())
            .selector(settings.selector.clone())
            .headers(["From", "Subject", "To", "Date", "Message-ID"])
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(RelaySigner { signer })
    }

    /// The `DKIM-Signature:` field (with its CRLF) for `message`, or `None` when it cannot be
    /// signed (the message then goes out unsigned, as it came).
    fn signature(&self, message: &[u8]) -> Option<String> {
        match self.signer.sign(message) {
            Ok(signature) => Some(signature.to_header()),
            Err(err) => {
                tracing::warn!(%err, "a relayed message could not be DKIM-signed; sent as it came");
                None
            }
        }
    }
}

fn key(text: &str, algorithm: DkimAlgorithm) -> anyhow::Result<DkimKey> {
    Ok(match algorithm {
        DkimAlgorithm::Rsa => {
            use rustls_pki_types::PrivateKeyDer;
            use rustls_pki_types::pem::PemObject;
            let der = PrivateKeyDer::from_pem_slice(text.as_bytes())
                .map_err(|err| anyhow::anyhow!("not a PEM private key: {err}"))?;
            DkimKey::from(RsaKey::<Sha256>::from_key_der(der)?)
        }
        DkimAlgorithm::Ed25519 => {
            use base64::Engine;
            let seed = base64::engine::general_purpose::STANDARD.decode(text)?;
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            let public = ring::signature::KeyPair::public_key(&pair);
            DkimKey::from(Ed25519Key::from_seed_and_public_key(
                &seed,
                public.as_ref(),
            )?)
        }
    })
}

/// What goes on the wire: the signature (when signing), Herald's `Received:`, the message.
pub fn bytes(received: &str, raw: &[u8], signer: Option<&RelaySigner>) -> Vec<u8> {
    let signature = signer.and_then(|s| s.signature(raw)).unwrap_or_default();
    let mut bytes = Vec::with_capacity(signature.len() + received.len() + 2 + raw.len());
    bytes.extend_from_slice(signature.as_bytes());
    bytes.extend_from_slice(received.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(raw);
    bytes
}
