//! A small key-value store private to this rule, for throttles and digests.
//!
//! Writes become visible to later events only when this invocation succeeds:
//! they are committed together with the messages it returns.

/// Read a key. Expired and missing keys read as `None`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::herald::rule::host::kv_get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|host| host.kv.get(key).cloned());
}

/// Write a key, optionally expiring `ttl_seconds` after the event's time.
pub fn set(key: &str, value: &[u8], ttl_seconds: Option<u64>) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::herald::rule::host::kv_set(key, value, ttl_seconds);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = ttl_seconds;
        crate::testing::with(|host| host.kv.insert(key.to_owned(), value.to_vec()));
    }
}

/// Remove a key.
pub fn delete(key: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::herald::rule::host::kv_delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::with(|host| host.kv.remove(key));
}
