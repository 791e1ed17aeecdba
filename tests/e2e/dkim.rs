//! DKIM: Herald signs with RSA and ed25519 test keys and the receiver verifies against the public key.
//!
//! The keys below were made for these tests only (`openssl genrsa -traditional 2048`,
//! `openssl genpkey -algorithm ed25519`); they sign nothing else.

use std::collections::HashMap;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use crate::smtp::{BROADCAST_RULE, aiosmtpd, received_raw, scratch_with_rules};
use crate::support::{Scratch, assert_exit, stderr, stdout};

pub(crate) const RSA_PRIVATE: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAltmGSnEEdj336HDXDq7ocs7aPcnHW3KDeZGyP1PoZSTgFPWi
gVMFVIkeAmIqzIIhQUhcCEwbxDAvPGljgRN4GyIYBDXX8WY3hqITyDIzYe/5qocA
AulGuGCsd8bHvRkpaV4iOQNh3LT/CDvVP+ue7wgF9DyF9DzNPxlqjwyxNHBBtExG
AkQHVK7Q/tTMjvoIKXlCFGzpi5hPNbI2gR5/MgVNKFOpePPxKrJIROh7DRbOTiyL
OxBC/rRMbHA+/lnGOg7N3izstTwX9fRRmJqgUI4or6HbOhY+II101CqcTXbhrgxV
CNZ0XuPCL7mZuqK7lutmJP87AwEn8vJ42HHRqwIDAQABAoIBAAZuW6VM0C3iUnFc
bi64EjziyLcdpRwm86f5KCo+/4dgXRVHq5fr3CxQdDER0lVJrvVDinjoFb71du4S
aCWWmOY/O9riGMS34OIigslkKoCgZHp6qut02oj9xhyNIvLS4csWMktP85ofNUg6
lMrW1r3GD8rr0aIp/W4VPU+/8MYVekwTgKn2ILshVMw2x+aFdIiQH27NYJVMkcMK
JorObWZwFdrU3sZB8Y20PFbvyGkI87W6W+CfMBtOA4W3HqXW4/C01qIlcndkXwWK
+ZEOPTfUQ82Uu0NtnW3PekzaTDwXQNllZg4iRTbEC+kat0SK6qTW6wWRs1jW3niA
nm8XOrECgYEA0mrblv1/+0t10p0JnjJm1q87ev1VpRI7wxTV8pmSxFAnt8TSeQkc
6T0+Tw79E+9usXqexsBTCMroRYtPZtrIv/uFpqO6DhxOKf/+fA7TQ8MZw2LrxqzK
MzVf86d+J7WrqkYyTIQwwKm7tbfLhE106qGW75LRBUe4lnb4cZSWfg8CgYEAt4c2
tXtBgnu/gXKCDc6dirfvtrI6sOVfkL7UbH+N6PtiabDz8JAGsXdGtO8shC15f7gP
XHyoRSb1XZTWaV4/roEq1w7T75AOgpWSOlKja2O4mSxpCbm/C4VkGldQ6gU9qVPa
0QlKUfDHx9PdMMxztX5B97euN7Kmo4AXciBWTqUCgYB+GvahximmhHIHmIAEJHbH
oVuHeT6T4JqabulOLMXuC4/SLg5p5ZFDI6YtIXGBOhTgHvn7aZYaBekwjK44mVSI
4ogV97fw7vvVZguxc/0fdlUBaU6e0j2YdRudXjtYNyO7t7g7bVn+jXrnDFDXaMhy
OgfIavgELxisbH63K3MJ9wKBgQCsVRA/O3zZLKA3yjFrC5+NWYiDcjqATvH8teQ7
+U5k/mB7xEhblLJkRA8l6QxRFW5oSopKG1faj2mJNTBcgr6jevCiPm8uHYQyhIZp
s512Qo5dboE3O66z/85umZ0GEmPDM1VeQi4CYWkHL98cam8gdm01UcoKzPuCvc3G
Qa0pbQKBgCNtfGaBDU5kvyHVbIPPb/V9XjGPutRvbglbRe5MYrxuOJ3dh9U5uBuR
LMsueS1OTKW9KmBwEkyCUiGC66bICrVCqEBJnSdNUnknbJL/akTwZVuiv/yjYRqi
KrC32D0baFIGbf/JfiTqr/9lhFqQkccwAggKecR9qiMQ1hGRQQ8d
-----END RSA PRIVATE KEY-----
";
pub(crate) const RSA_PUBLIC: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAltmGSnEEdj336HDXDq7ocs7aPcnHW3KDeZGyP1PoZSTgFPWigVMFVIkeAmIqzIIhQUhcCEwbxDAvPGljgRN4GyIYBDXX8WY3hqITyDIzYe/5qocAAulGuGCsd8bHvRkpaV4iOQNh3LT/CDvVP+ue7wgF9DyF9DzNPxlqjwyxNHBBtExGAkQHVK7Q/tTMjvoIKXlCFGzpi5hPNbI2gR5/MgVNKFOpePPxKrJIROh7DRbOTiyLOxBC/rRMbHA+/lnGOg7N3izstTwX9fRRmJqgUI4or6HbOhY+II101CqcTXbhrgxVCNZ0XuPCL7mZuqK7lutmJP87AwEn8vJ42HHRqwIDAQAB";
pub(crate) const ED25519_PRIVATE: &str = "Uvcovg6HN7a0vMfgsekMDhAD2UjeLLgpcBJo38d9Z6w=";
pub(crate) const ED25519_PUBLIC: &str = "ofACxPSw1pP38Hm8L84Kn2tIveBptpidtYKPSd7QITE=";

/// The DNS a receiver would query, answered from memory: `<selector>._domainkey.<domain>.`.
struct KeyRecords(HashMap<Box<str>, Txt>);

impl ResolverCache<Box<str>, Txt> for KeyRecords {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.get(name).cloned()
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, _: Txt, _: std::time::Instant) {}
}

/// Verify every DKIM-Signature of `message` against the published key; the results.
pub(crate) fn verify(
    message: &[u8],
    selector: &str,
    algorithm: &str,
    public: &str,
) -> Vec<DkimResult> {
    let record = format!("v=DKIM1; k={algorithm}; p={public}");
    let key = DomainKey::parse(record.as_bytes()).expect("a valid key record");
    let name: Box<str> = format!("{selector}._domainkey.example.org.").into();
    let keys = KeyRecords(HashMap::from([(name, Txt::from(key))]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The resolver is never asked: every key is in `keys`.
        let authenticator =
            MessageAuthenticator::new(ResolverConfig::default(), ResolverOpts::default()).unwrap();
        let parsed = AuthenticatedMessage::parse(message).expect("a parsable message");
        authenticator
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(&keys))
            .await
            .iter()
            .map(|output| output.result().clone())
            .collect()
    })
}

/// A scratch that sends the broadcast rule's mail through `port`, signed with `key` (in
/// `dkim.key`, beside the config that names it).
fn dkim_scratch(port: u16, selector: &str, algorithm: &str, key: &str) -> Scratch {
    let scratch = scratch_with_rules(
        port,
        &format!(
            "    dkim: {{selector: {selector}, domain: example.org, key_file: dkim.key, \
             algorithm: {algorithm}}}\n"
        ),
        BROADCAST_RULE,
    );
    std::fs::write(scratch.path("dkim.key"), key).unwrap();
    scratch
}

fn send_broadcast(scratch: &Scratch) -> std::process::Output {
    let event = serde_json::json!({
        "specversion": "1.0", "id": "dkim-1", "source": "omero://omero.example.org",
        "type": "herald.broadcast", "time": "2026-11-23T09:00:00Z",
        "data": {"subject": "Signed notice", "body": "Signed body.\n.dot line\n", "user_names": ["alice"]}
    });
    std::fs::write(scratch.path("events.jsonl"), format!("{event}\n")).unwrap();
    let out = scratch.herald_own(&["send", scratch.path("events.jsonl").to_str().unwrap()]);
    assert_exit(&out, 0);
    scratch.herald_own(&["deliver", "--until-empty"])
}

#[test]
fn dkim_signature_verifies_at_the_receiver() {
    for (selector, algorithm, private, public) in [
        ("rsa1", "rsa", RSA_PRIVATE, RSA_PUBLIC),
        ("ed1", "ed25519", ED25519_PRIVATE, ED25519_PUBLIC),
    ] {
        let server = aiosmtpd(&[]);
        let scratch = dkim_scratch(server.port, selector, algorithm, private);
        let out = send_broadcast(&scratch);
        assert_exit(&out, 0);
        let received = received_raw(&server);
        assert_eq!(received.len(), 1, "{}", stdout(&out));
        let data = &received[0].0;
        let text = String::from_utf8_lossy(data);
        assert!(
            text.starts_with("DKIM-Signature:") || text.contains("\r\nDKIM-Signature:"),
            "{text}"
        );
        assert_eq!(
            verify(data, selector, algorithm, public),
            [DkimResult::Pass],
            "{algorithm}: {text}"
        );
        // The same message with its body changed must fail: the check can fail.
        let tampered = text.replace("Signed body.", "Signed b0dy.");
        let results = verify(tampered.as_bytes(), selector, algorithm, public);
        assert!(
            results.iter().all(|r| *r != DkimResult::Pass) && !results.is_empty(),
            "{algorithm}: a tampered body verified: {results:?}"
        );
    }
}

#[test]
fn a_bad_dkim_key_file_is_a_clear_config_error_and_nothing_is_sent() {
    let server = aiosmtpd(&[]);
    for (algorithm, key) in [("rsa", "not a key\n"), ("ed25519", RSA_PRIVATE)] {
        let scratch = dkim_scratch(server.port, "s1", algorithm, key);
        let out = send_broadcast(&scratch);
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("mail.smtp.dkim.key_file"), "{err}");
        assert!(err.contains("dkim.key"), "{err}");
        assert!(err.contains("fix:"), "{err}");
        assert_eq!(
            scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
            1
        );
    }
    assert!(received_raw(&server).is_empty());
}
