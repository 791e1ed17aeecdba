//! A rule's component bytes from a `.wasm` file: header and size checked before the file is read.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest component Herald loads. The default rules are about 100 KB; a rule near this
/// size is a mistake (a debug build, a file that is not a rule), and reading it would cost
/// its size in memory before the compiler refused it.
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// The preamble of today's WebAssembly components: `\0asm`, version 0x0d, layer 1.
#[cfg(test)]
const COMPONENT_PREAMBLE: [u8; 8] = *b"\0asm\x0d\0\x01\0";

/// Why a module file is refused before (or while) it is read.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "it is not a WebAssembly component (it starts with {found}); build the rule with \
         `cargo build --release --target wasm32-wasip2` and point `module` at the .wasm"
    )]
    NotAComponent { found: String },
    #[error(
        "it is {size} bytes; a rule component may be at most {MAX_MODULE_BYTES} bytes \
         (build it with --release; the default rules are about 100 KB)"
    )]
    TooLarge { size: u64 },
}

/// Read the component at `path`, refusing a file that is not a component or is too large
/// after reading only its first 8 bytes and its size.
pub fn read_component(path: &Path) -> Result<Vec<u8>, ModuleError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut preamble = [0u8; 8];
    let got = read_up_to(&mut file, &mut preamble)?;
    if !is_component(&preamble[..got]) {
        return Err(ModuleError::NotAComponent {
            found: describe(&preamble[..got]),
        });
    }
    if size > MAX_MODULE_BYTES {
        return Err(ModuleError::TooLarge { size });
    }
    let mut wasm = Vec::with_capacity(size as usize);
    wasm.extend_from_slice(&preamble);
    // `take` keeps a file that grows while it is read within the cap too.
    file.take(MAX_MODULE_BYTES - 8).read_to_end(&mut wasm)?;
    Ok(wasm)
}

/// Whether `wasm` starts like a component: the magic `\0asm`, any version, layer 1.
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[6..8] == [1, 0]
}

/// Bytes that only a componentize-py component carries (its producers section).
const PYTHON_MARK: &[u8] = b"componentize-py";

/// Whether `wasm` was made by componentize-py (a Python rule).
pub fn is_python_component(wasm: &[u8]) -> bool {
    wasm.windows(PYTHON_MARK.len()).any(|w| w == PYTHON_MARK)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn describe(start: &[u8]) -> String {
    match start {
        [] => "nothing: the file is empty".to_owned(),
        [0, b'a', b's', b'm', 1, 0, 0, 0] => {
            "a core WebAssembly module, not a component (target wasm32-wasip2 makes components)"
                .to_owned()
        }
        bytes => format!("the bytes {}", hex::encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_component_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = [&COMPONENT_PREAMBLE[..], b"rest of it"].concat();
        let path = write(&dir, "ok.wasm", &bytes);
        assert_eq!(read_component(&path).unwrap(), bytes);
    }

    #[test]
    fn core_modules_text_and_empty_files_are_refused_by_their_header() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, says) in [
            (
                "core.wasm",
                &b"\0asm\x01\0\0\0more"[..],
                "core WebAssembly module",
            ),
            ("text.wasm", &b"hello world"[..], "68656c6c6f20776f"),
            ("empty.wasm", &b""[..], "the file is empty"),
        ] {
            let err = read_component(&write(&dir, name, bytes)).unwrap_err();
            assert!(matches!(err, ModuleError::NotAComponent { .. }), "{err}");
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
    }

    #[test]
    fn a_huge_sparse_component_is_refused_by_its_size_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "huge.wasm", &COMPONENT_PREAMBLE);
        let huge = 3u64 << 30;
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(huge)
            .unwrap();
        match read_component(&path) {
            Err(ModuleError::TooLarge { size }) => assert_eq!(size, huge),
            other => panic!("expected TooLarge, got {:?}", other.map(|w| w.len())),
        }
    }
}
