//! The signing key's file: 64 hex characters of Ed25519 seed, readable by its owner only.
//!
//! Shared by the node (which creates its key on first start) and `pyralog ledger keygen`.

use std::io::Write;
use std::path::Path;

use pyralog_ledger::SigningKey;

/// Writes a new key to `path`: to a temporary file beside it, synced, then hard-linked into
/// place, so a crash never leaves a partial key and an existing file is never replaced (the
/// link fails with `AlreadyExists`).
pub fn create_key_file(path: &Path) -> std::io::Result<SigningKey> {
    let key = SigningKey::generate();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(key.seed_hex().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    written.map(|()| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_owner_only_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("ledger.key");
        let key = create_key_file(&path).expect("created");
        let text = std::fs::read_to_string(&path).expect("read");
        let back = SigningKey::from_seed_hex(&text).expect("parses");
        assert_eq!(back.verifying_key().to_hex(), key.verifying_key().to_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = create_key_file(&path).expect_err("never replaced");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
