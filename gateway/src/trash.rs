//! Directories of deleted logs leave `<data_dir>/logs` at once, by a rename into
//! `<data_dir>/deleting`, and are removed there in the background.
//!
//! Removing a log's files takes as long as the file system needs for its gigabytes (a second
//! for 1.5 GB here). Done in line, that held up whoever deleted: in a cluster the reconciler,
//! which applies the controller's changes one after another, so a log created right after a
//! big delete got its follower a second late and every `acks=quorum` write waited for it.
//! The rename frees the log's name at once (a log recreated under it starts clean); a stop
//! in the middle of a removal leaves the rest in `deleting/`, emptied at the next start.

use std::io;
use std::path::{Path, PathBuf};

use tracing::warn;

/// The `deleting/` directory of one data directory.
#[derive(Debug, Clone)]
pub(crate) struct Trash {
    dir: PathBuf,
}

impl Trash {
    pub(crate) fn new(data_dir: &Path) -> Self {
        Trash {
            dir: data_dir.join("deleting"),
        }
    }

    /// Moves `dir` out of the way and removes it in the background. Blocking (a rename): call
    /// it from a blocking thread. A `dir` that does not exist is already gone.
    pub(crate) fn discard(&self, dir: &Path) -> io::Result<()> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::create_dir_all(&self.dir)?;
        let to = self
            .dir
            .join(format!("{name}.{:016x}", rand::random::<u64>()));
        match std::fs::rename(dir, &to) {
            Ok(()) => {
                remove_in_background(vec![to]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes, in the background, whatever a previous run left in `deleting/`.
    pub(crate) fn empty_in_background(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let left: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        if !left.is_empty() {
            remove_in_background(left);
        }
    }
}

/// One plain thread per removal (deletes are rare): it needs no runtime, so it also runs
/// while a node is opening or after its runtime stopped.
fn remove_in_background(paths: Vec<PathBuf>) {
    let spawned = std::thread::Builder::new()
        .name("pyralog-trash".into())
        .spawn(move || {
            for path in paths {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = removed {
                    warn!(path = %path.display(), error = %e, "could not remove a deleted log's files");
                }
            }
        });
    if let Err(e) = spawned {
        warn!(error = %e, "could not start removing deleted logs' files (left for the next start)");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn wait_until_gone(path: &Path) {
        let t = Instant::now();
        while path.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{} stayed",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_discarded_directory_leaves_its_place_at_once_and_is_removed_later() {
        let data = tempfile::tempdir().expect("tempdir");
        let log = data.path().join("logs").join("orders");
        std::fs::create_dir_all(log.join("0")).expect("mkdir");
        std::fs::write(
            log.join("0").join("00000000000000000000.log"),
            vec![7u8; 1 << 20],
        )
        .expect("write");
        let trash = Trash::new(data.path());
        trash.discard(&log).expect("discard");
        assert!(!log.exists(), "the name is free when discard returns");
        std::fs::create_dir_all(&log).expect("a log of the same name can start clean");
        let t = Instant::now();
        while std::fs::read_dir(data.path().join("deleting"))
            .expect("deleting/")
            .next()
            .is_some()
        {
            assert!(t.elapsed() < Duration::from_secs(10), "trash never emptied");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(log.exists(), "the new log is untouched");
    }

    #[test]
    fn discarding_a_missing_directory_is_fine() {
        let data = tempfile::tempdir().expect("tempdir");
        Trash::new(data.path())
            .discard(&data.path().join("logs").join("never"))
            .expect("nothing to do");
    }

    #[test]
    fn leftovers_of_a_stopped_removal_are_emptied_at_the_next_start() {
        let data = tempfile::tempdir().expect("tempdir");
        let left = data.path().join("deleting").join("orders.00000000000000ab");
        std::fs::create_dir_all(left.join("3")).expect("mkdir");
        std::fs::write(left.join("3").join("x.log"), b"data").expect("write");
        Trash::new(data.path()).empty_in_background();
        wait_until_gone(&left);
    }
}
