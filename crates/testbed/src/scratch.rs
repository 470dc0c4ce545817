//! Files a test writes for the programs it runs (fixtures, manifests, configuration), in a
//! directory of its own that is deleted on drop, and whether a program is installed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::TestbedError;

/// A directory under the system's temporary directory, named after the test's `prefix`, the
/// process and a counter; deleted with everything in it on drop (also when a test panics).
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new, empty directory.
    pub fn new(prefix: &str) -> Result<ScratchDir, TestbedError> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("knp-{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| TestbedError::Io {
            what: format!("creating {}", path.display()),
            source,
        })?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to the file `name` in the directory and returns its path as a string (for
    /// command lines).
    pub fn file(&self, name: &str, text: &str) -> Result<String, TestbedError> {
        let path = self.path.join(name);
        std::fs::write(&path, text).map_err(|source| TestbedError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        Ok(path.to_string_lossy().into_owned())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Whether `program` is installed in one of the system's program directories (`/usr/sbin`,
/// `/sbin`, `/usr/bin`, `/bin`), where root's commands are, whatever the test's `PATH` says.
pub fn installed(program: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_and_its_files_go_on_drop() {
        let dir = ScratchDir::new("scratch-test").expect("scratch");
        let file = dir.file("a.txt", "hello").expect("file");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "hello");
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
        assert!(installed("sh"));
        assert!(!installed("no-such-program-knp"));
    }
}
