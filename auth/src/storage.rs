//! Reading the password file from disk and replacing it atomically.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::password_file::parse_lines;
use crate::{AuthError, LoadReport, PasswordFile};

/// Permissions of a saved password file: read and write for the owner only.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Permissions of a directory that `save` creates for the password file.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

impl PasswordFile {
    /// Reads and parses the password file at `path`.
    ///
    /// Malformed lines become warnings as in [`parse`](Self::parse). A line that is not valid
    /// UTF-8 is skipped with a warning too, and unlike other skipped lines it is not kept,
    /// so a later `save` drops it.
    pub fn load(path: &Path) -> Result<LoadReport, AuthError> {
        let bytes = fs::read(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        let lines = split_lines(&bytes).map(|line| std::str::from_utf8(line).ok());
        Ok(parse_lines(lines))
    }

    /// Writes the file to `path` atomically, with mode 0600 on Unix.
    ///
    /// The text goes to a temporary file in the same directory, which is flushed to disk and
    /// then renamed over `path`, so readers see either the old or the new file, never a
    /// partial one. A missing parent directory is created with mode 0700. If `path` is a
    /// symbolic link, the link itself is replaced by a regular file.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let write_error = |source: io::Error| AuthError::Write {
            path: path.to_owned(),
            source,
        };

        let Some(file_name) = path.file_name() else {
            return Err(write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path does not end in a file name",
            )));
        };
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        create_dir(dir)?;

        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(file_name);
        prefix.push(".");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(FILE_MODE));
        }

        // Dropping `temp` on an error path deletes the temporary file.
        let mut temp = builder.tempfile_in(dir).map_err(write_error)?;
        temp.write_all(self.to_text().as_bytes())
            .map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(path)
            .map_err(|error| write_error(error.error))?;

        sync_dir(dir).map_err(write_error)
    }
}

/// Splits file bytes into lines as `str::lines` does: at `\n`, dropping one trailing `\r`
/// and without an empty last line after a final newline.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let lines = (!bytes.is_empty()).then(|| body.split(|&byte| byte == b'\n'));
    lines
        .into_iter()
        .flatten()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

fn create_dir(dir: &Path) -> Result<(), AuthError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir).map_err(|source| AuthError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Flushes the directory entry of the rename to disk, so that the new file survives a crash.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn save_load_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");

        let mut file = PasswordFile::new();
        file.set_password("alice", b"wonderland").unwrap();
        file.set_password("bob", b"builder").unwrap();
        file.save(&path).unwrap();

        let report = PasswordFile::load(&path).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let loaded = report.file;
        assert_eq!(loaded.usernames(), ["alice", "bob"]);
        assert!(loaded.verify("alice", b"wonderland"));
        assert!(loaded.verify("bob", b"builder"));
        assert!(!loaded.verify("alice", b"builder"));
        assert!(!loaded.verify("carol", b"wonderland"));
        assert_eq!(loaded.to_text(), file.to_text());
    }

    #[test]
    fn saved_file_mode_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");

        // A pre-existing world-readable file must not pass its mode on.
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

        let mut file = PasswordFile::new();
        file.set_password("alice", b"pw").unwrap();
        file.save(&path).unwrap();

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode is {mode:o}");
    }

    #[test]
    fn save_creates_parent_dir_0700() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("data").join("auth");
        let path = parent.join("passwd");

        PasswordFile::new().save(&path).unwrap();

        assert!(path.is_file());
        for created in [dir.path().join("data"), parent] {
            let mode = fs::metadata(&created).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{} has mode {mode:o}", created.display());
        }
    }

    #[test]
    fn save_replaces_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, "old:contents\n").unwrap();
        let old_inode = fs::metadata(&path).unwrap().ino();
        // A reader that opened the old file keeps seeing it whole, which an in-place
        // rewrite would break.
        let old_handle = fs::File::open(&path).unwrap();

        let mut file = PasswordFile::new();
        file.set_password("alice", b"pw").unwrap();
        file.save(&path).unwrap();

        assert_ne!(fs::metadata(&path).unwrap().ino(), old_inode);
        let old_text = io::read_to_string(old_handle).unwrap();
        assert_eq!(old_text, "old:contents\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), file.to_text());
        assert_eq!(
            entries(dir.path()),
            ["passwd"],
            "temporary file left behind"
        );
    }

    #[test]
    fn failed_save_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in place of the file makes the final rename fail.
        let path = dir.path().join("passwd");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();

        let error = PasswordFile::new().save(&path).unwrap_err();
        assert!(matches!(error, AuthError::Write { .. }), "{error:?}");
        assert!(error.to_string().contains("passwd"), "{error}");
        assert_eq!(entries(dir.path()), ["passwd"]);
    }

    #[test]
    fn save_rejects_path_without_file_name() {
        let error = PasswordFile::new().save(Path::new("/")).unwrap_err();
        assert!(matches!(error, AuthError::Write { .. }), "{error:?}");
    }

    #[test]
    fn load_missing_file_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent-passwd");
        let error = PasswordFile::load(&path).unwrap_err();
        match &error {
            AuthError::Read { source, .. } => assert_eq!(source.kind(), io::ErrorKind::NotFound),
            other => panic!("expected AuthError::Read, got {other:?}"),
        }
        assert!(error.to_string().contains("absent-passwd"), "{error}");
    }

    #[test]
    fn load_skips_invalid_utf8_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::new();
        file.set_password("alice", b"pw").unwrap();
        let mut bytes = b"# comment\r\nbad\xff:x\n".to_vec();
        bytes.extend_from_slice(file.to_text().as_bytes());
        fs::write(&path, bytes).unwrap();

        let report = PasswordFile::load(&path).unwrap();
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert_eq!(report.warnings[0].line, 2);
        assert!(report.warnings[0].reason.contains("UTF-8"));
        assert!(report.file.verify("alice", b"pw"));
    }

    #[test]
    fn split_lines_matches_str_lines() {
        for text in [
            "", "\n", "a", "a\n", "a\r\nb", "a\n\nb\n", "\r\n\r\n", "a\rb\n",
        ] {
            let from_bytes: Vec<&[u8]> = split_lines(text.as_bytes()).collect();
            let from_str: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
            assert_eq!(from_bytes, from_str, "{text:?}");
        }
    }
}
