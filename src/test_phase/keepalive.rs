//! The keep-alive kiln puts in place of an image's entrypoint: a static
//! program of a few bytes, written here as a minimal ELF executable and
//! copied into the container before it starts, so images without `sleep` (or
//! any shell — distroless, scratch) can be tested as images too. It blocks in
//! one system call forever (`pause` on x86-64, `ppoll` with no descriptors
//! on arm64) and is killed when the container is removed. Other
//! architectures fall back to the image's own `sleep`.

/// Where the helper is copied in the container.
pub const HELPER_PATH: &str = "/.kiln-keepalive";
/// The fallback: the image's own `sleep`.
pub const SLEEP: [&str; 2] = ["sleep", "2147483647"];

/// The keep-alive chosen for one test run (from the image's architecture).
#[derive(Debug, Clone)]
pub(crate) struct KeepAlive {
    /// kiln's static helper, when there is one for the architecture.
    pub helper: Option<Vec<u8>>,
}

impl KeepAlive {
    /// The keep-alive for an image of `architecture`.
    pub fn for_architecture(architecture: &str) -> Self {
        KeepAlive {
            helper: helper_for(architecture),
        }
    }

    /// For a container that is created but never started (file tests): a
    /// command is needed to create it, and nothing is copied in, so its
    /// file system is exactly the image's.
    pub fn never_started() -> Self {
        KeepAlive { helper: None }
    }

    /// The entrypoint and command that replace the image's.
    pub fn argv(&self) -> (Vec<String>, Vec<String>) {
        match self.helper {
            Some(_) => (vec![HELPER_PATH.to_string()], Vec::new()),
            None => (vec![SLEEP[0].to_string()], vec![SLEEP[1].to_string()]),
        }
    }

    /// For check names: which keep-alive runs.
    pub fn describe(&self) -> &'static str {
        match self.helper {
            Some(_) => "kiln's static keep-alive",
            None => "the image's `sleep`",
        }
    }

    /// A tar holding the helper at [`HELPER_PATH`] (mode 0755), if any.
    pub fn archive(&self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(bytes) = &self.helper else {
            return Ok(None);
        };
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(bytes.len() as u64);
        b.append_data(
            &mut h,
            HELPER_PATH.trim_start_matches('/'),
            bytes.as_slice(),
        )?;
        b.into_inner().map(Some)
    }
}

/// Load address of the single segment.
const BASE: u64 = 0x40_0000;
/// ELF header (64) + one program header (56).
const HEADERS: usize = 120;

/// x86-64: `mov eax, 34 (pause); syscall; jmp back`.
const AMD64: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];

/// arm64: `mov x0..x3, #0; mov x8, #73 (ppoll); svc #0; b back` (6 words).
const ARM64: [u32; 7] = [
    0xd280_0000,
    0xd280_0001,
    0xd280_0002,
    0xd280_0003,
    0xd280_0928,
    0xd400_0001,
    0x17ff_fffa,
];

/// The helper for a Docker architecture name (`amd64`, `arm64`), if kiln
/// has one.
pub fn helper_for(architecture: &str) -> Option<Vec<u8>> {
    match architecture {
        "amd64" | "x86_64" => Some(elf(0x3e, &AMD64)),
        "arm64" | "aarch64" => {
            let code: Vec<u8> = ARM64.iter().flat_map(|w| w.to_le_bytes()).collect();
            Some(elf(0xb7, &code))
        }
        _ => None,
    }
}

/// A static little-endian ELF64 executable of one read+execute segment.
fn elf(machine: u16, code: &[u8]) -> Vec<u8> {
    let size = (HEADERS + code.len()) as u64;
    let mut b = Vec::with_capacity(size as usize);
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&machine.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    b.extend_from_slice(&(BASE + HEADERS as u64).to_le_bytes()); // entry
    b.extend_from_slice(&64u64.to_le_bytes()); // program headers
    b.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 64, 0, 0] {
        // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        b.extend_from_slice(&half.to_le_bytes());
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R + X
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    b.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    b.extend_from_slice(&BASE.to_le_bytes()); // paddr
    b.extend_from_slice(&size.to_le_bytes()); // filesz
    b.extend_from_slice(&size.to_le_bytes()); // memsz
    b.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    debug_assert_eq!(b.len(), HEADERS);
    b.extend_from_slice(code);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_are_elf_executables() {
        for arch in ["amd64", "arm64"] {
            let h = helper_for(arch).unwrap();
            assert_eq!(&h[..4], b"\x7fELF");
            assert_eq!(
                u64::from_le_bytes(h[24..32].try_into().unwrap()),
                BASE + 120
            );
        }
        assert!(helper_for("s390x").is_none());
    }

    /// Runs the x86-64 helper on this machine: it must block, not exit.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn amd64_helper_blocks() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keepalive");
        std::fs::write(&path, helper_for("amd64").unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "the helper exited");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
