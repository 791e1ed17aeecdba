//! Each rule's own key-value store: reads from a backend, writes buffered until the invocation succeeds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A committed value and when it expires (Unix ms, event time).
#[derive(Clone, Debug, PartialEq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub expires_unix_ms: Option<i64>,
}

/// Where committed values are read from.
pub trait KvRead: Send + Sync {
    fn get(&self, rule: &str, key: &str) -> Option<KvEntry>;
}

/// One change an invocation made; applied only if it succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct KvWrite {
    pub key: String,
    /// `None` deletes the key.
    pub entry: Option<KvEntry>,
}

/// Keys one invocation may write.
const MAX_PENDING_KEYS: usize = 1000;
/// Bytes (keys and values) one invocation may write.
const MAX_PENDING_BYTES: usize = 1 << 20;

/// An invocation's view: its own pending writes over the committed values.
pub struct KvOverlay {
    rule: String,
    backend: Arc<dyn KvRead>,
    now_unix_ms: i64,
    /// Last write per key; `None` deletes.
    pending: HashMap<String, Option<KvEntry>>,
    pending_bytes: usize,
}

impl KvOverlay {
    pub fn new(rule: &str, backend: Arc<dyn KvRead>, now_unix_ms: i64) -> KvOverlay {
        KvOverlay {
            rule: rule.to_owned(),
            backend,
            now_unix_ms,
            pending: HashMap::new(),
            pending_bytes: 0,
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let entry = match self.pending.get(key) {
            Some(pending) => pending.clone(),
            None => self.backend.get(&self.rule, key),
        }?;
        let live = entry.expires_unix_ms.is_none_or(|at| at > self.now_unix_ms);
        live.then_some(entry.value)
    }

    /// Buffer a write; refused past the per-invocation caps.
    pub fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
    ) -> Result<(), String> {
        let expires_unix_ms = ttl_seconds.map(|ttl| {
            let ttl_ms = i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
            self.now_unix_ms.saturating_add(ttl_ms)
        });
        self.write(
            key,
            Some(KvEntry {
                value,
                expires_unix_ms,
            }),
        )
    }

    pub fn delete(&mut self, key: String) -> Result<(), String> {
        self.write(key, None)
    }

    fn write(&mut self, key: String, entry: Option<KvEntry>) -> Result<(), String> {
        let size = key.len() + entry.as_ref().map_or(0, |e| e.value.len());
        self.pending_bytes += size;
        if self.pending_bytes > MAX_PENDING_BYTES
            || (self.pending.len() >= MAX_PENDING_KEYS && !self.pending.contains_key(&key))
        {
            return Err(format!(
                "kv writes of one invocation are capped at {MAX_PENDING_KEYS} keys and {MAX_PENDING_BYTES} bytes"
            ));
        }
        self.pending.insert(key, entry);
        Ok(())
    }

    /// The writes to commit, one per key, in key order.
    pub fn into_writes(self) -> Vec<KvWrite> {
        let mut writes: Vec<KvWrite> = self
            .pending
            .into_iter()
            .map(|(key, entry)| KvWrite { key, entry })
            .collect();
        writes.sort_by(|a, b| a.key.cmp(&b.key));
        writes
    }
}

/// An in-memory store, for dry runs and tests.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<(String, String), KvEntry>>,
}

impl MemoryKv {
    /// Apply a successful invocation's writes.
    pub fn apply(&self, rule: &str, writes: &[KvWrite]) {
        let mut entries = self.entries.lock().expect("kv lock");
        for write in writes {
            let key = (rule.to_owned(), write.key.clone());
            match &write.entry {
                Some(entry) => entries.insert(key, entry.clone()),
                None => entries.remove(&key),
            };
        }
    }
}

impl KvRead for MemoryKv {
    fn get(&self, rule: &str, key: &str) -> Option<KvEntry> {
        let entries = self.entries.lock().expect("kv lock");
        entries.get(&(rule.to_owned(), key.to_owned())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_writes_shadow_and_expire() {
        let backend = Arc::new(MemoryKv::default());
        backend.apply(
            "r",
            &[KvWrite {
                key: "a".into(),
                entry: Some(KvEntry {
                    value: b"old".to_vec(),
                    expires_unix_ms: None,
                }),
            }],
        );
        let mut kv = KvOverlay::new("r", backend.clone(), 1_000);
        assert_eq!(kv.get("a"), Some(b"old".to_vec()));
        kv.set("a".into(), b"new".to_vec(), Some(0)).unwrap();
        assert_eq!(kv.get("a"), None, "a ttl of 0 expires at once");
        kv.set("a".into(), b"newer".to_vec(), Some(60)).unwrap();
        kv.delete("b".into()).unwrap();
        let writes = kv.into_writes();
        assert_eq!(writes.len(), 2);
        assert_eq!(
            writes[0].entry.as_ref().unwrap().expires_unix_ms,
            Some(61_000)
        );
        assert_eq!(KvOverlay::new("other", backend, 0).get("a"), None);
    }

    #[test]
    fn writes_past_the_cap_are_refused() {
        let mut kv = KvOverlay::new("r", Arc::new(MemoryKv::default()), 0);
        let big = vec![0u8; 64 * 1024];
        let results: Vec<_> = (0..20)
            .map(|i| kv.set(format!("k{i}"), big.clone(), None))
            .collect();
        assert!(results[..15].iter().all(Result::is_ok));
        assert!(results[16..].iter().all(Result::is_err), "1 MiB is the cap");
    }
}
