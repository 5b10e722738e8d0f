//! A Kubernetes secret volume, written the way the kubelet's atomic writer writes one: every
//! version of the payload in its own timestamped directory (`..2026_12_06_20_00_00.123`),
//! `..data` a symlink to the current one, swapped by renaming a new symlink over it (one
//! atomic `rename`), and each key a symlink through it (`token` -> `..data/token`). A reader
//! that opens `token` sees the old file or the new one, never a mix and never nothing; the
//! old directory is removed after the swap, as the kubelet does.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::format_description;

/// One volume, at a directory the test owns.
pub struct SecretVolume {
    dir: PathBuf,
    /// The timestamped directory `..data` points at, once something was published.
    current: Option<String>,
    /// The keys published last (their links are visible).
    keys: Vec<String>,
    versions: u32,
}

impl SecretVolume {
    /// An empty volume at `dir` (created, 0755 like a kubelet's tmpfs mount).
    pub fn new(dir: &Path) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        SecretVolume {
            dir: dir.to_path_buf(),
            current: None,
            keys: Vec::new(),
            versions: 0,
        }
    }

    /// The path a key is read at (`<dir>/<key>`).
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Publishes `files` (key, content) with `mode` (the volume's `defaultMode`; Kubernetes'
    /// default is 0644) and, when given, group `gid` (`fsGroup`). Keys left out disappear.
    pub fn publish(&mut self, files: &[(&str, &[u8])], mode: u32, gid: Option<u32>) {
        self.versions += 1;
        let stamp = format!(
            "..{}.{:09}",
            OffsetDateTime::now_utc()
                .format(format_description!(
                    "[year]_[month]_[day]_[hour]_[minute]_[second]"
                ))
                .unwrap(),
            self.versions
        );
        let payload = self.dir.join(&stamp);
        std::fs::create_dir(&payload).unwrap();
        std::fs::set_permissions(&payload, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (key, content) in files {
            let file = payload.join(key);
            std::fs::write(&file, content).unwrap();
            if let Some(gid) = gid {
                std::os::unix::fs::chown(&file, None, Some(gid)).unwrap();
            }
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        // The swap: a new link, renamed over `..data` in one step.
        let tmp = self.dir.join("..data_tmp");
        symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        // The user-visible links, made once; those of keys no longer published removed.
        let keys: Vec<String> = files.iter().map(|(k, _)| (*k).to_owned()).collect();
        for key in &keys {
            let link = self.dir.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{key}"), &link).unwrap();
            }
        }
        for gone in self.keys.iter().filter(|k| !keys.contains(k)) {
            std::fs::remove_file(self.dir.join(gone)).unwrap();
        }
        if let Some(old) = self.current.replace(stamp) {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
        self.keys = keys;
    }
}
