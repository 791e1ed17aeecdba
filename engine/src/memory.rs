//! Freed heap memory handed back to the kernel after a large passing use: a directory load, rule compilation.

/// Give the heap pages that are free now back to the kernel. glibc keeps freed memory for
/// reuse, so without this the peak of a one-off task (the YAML parser's copies of a large
/// directory, cranelift compiling rules) would stay resident for the process's life.
pub fn return_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
