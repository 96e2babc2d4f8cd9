//! Tests of the crate against real tools: OpenSSL verifies what is issued, NSS imports the
//! PKCS#12 files, and rustls handshakes run over loopback sockets.

mod handshake;
mod issuing;
mod pkcs12_import;
mod revocation;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{init_ca, issue_server, CaOptions, KeyType};

/// A data directory that is deleted when the test ends.
pub(crate) struct DataDir {
    _temp: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

impl DataDir {
    pub(crate) fn new() -> Self {
        let temp = tempfile::tempdir().expect("create a temporary directory");
        let path = temp.path().join("data");
        DataDir { _temp: temp, path }
    }

    /// Creates a data directory with an ECDSA CA (encrypted with `passphrase` if given) and a
    /// server certificate for localhost and 127.0.0.1.
    pub(crate) fn with_ca_and_server(passphrase: Option<&str>) -> Self {
        let data = DataDir::new();
        let options = CaOptions {
            passphrase: passphrase.map(str::to_owned),
            common_name: "test CA".to_owned(),
            ..CaOptions::default()
        };
        init_ca(&data.path, &options, false).expect("init_ca");
        issue_server(
            &data.path,
            &["localhost".to_owned()],
            &["127.0.0.1".parse().unwrap()],
            KeyType::EcdsaP256,
            passphrase,
            30,
        )
        .expect("issue_server");
        data
    }

    pub(crate) fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }
}

/// Runs an external tool; a missing tool fails the test with the package to install.
pub(crate) fn run_tool<I, S>(program: &str, package: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` not found; install it (Debian: apt-get install {package}) to run this test")
        }
        Err(error) => panic!("cannot run {program}: {error}"),
    }
}

/// Runs `openssl ARGS`.
pub(crate) fn openssl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_tool("openssl", "openssl", args)
}

/// Runs `openssl ARGS -in FILE`.
pub(crate) fn openssl_on(args: &[&str], file: &Path) -> Output {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend([OsStr::new("-in"), file.as_os_str()]);
    openssl(all)
}

/// Runs `openssl verify` for `cert` against the CA of `data`, with the CRL when `crl` is set,
/// and returns whether it succeeded along with its output.
pub(crate) fn openssl_verify(data: &DataDir, cert: &Path, purpose: &str, crl: bool) -> (bool, String) {
    let ca = data.join("ca.crt");
    let crl_file = data.join("crl.pem");
    let mut args: Vec<&OsStr> =
        vec!["verify".as_ref(), "-purpose".as_ref(), purpose.as_ref(), "-CAfile".as_ref(), ca.as_os_str()];
    if crl {
        args.extend(["-crl_check".as_ref(), "-CRLfile".as_ref(), crl_file.as_os_str()]);
    }
    args.push(cert.as_os_str());
    let output = openssl(args);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Returns the Unix permission bits of `path`.
pub(crate) fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|error| panic!("stat {}: {error}", path.display())).permissions().mode()
        & 0o777
}
