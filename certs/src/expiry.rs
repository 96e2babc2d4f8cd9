//! Warnings about certificates of the data directory that expire soon or have expired.

use std::path::Path;

use crate::inspect::{self, CertInfo, CertKind};

/// Returns one warning for each certificate of `data_dir` (CA, server, clients not revoked)
/// that has expired or expires within `within_days` days, and one for each file that cannot
/// be read. An empty data directory gives no warning.
pub fn expiry_warnings(data_dir: &Path, within_days: u32) -> Vec<String> {
    let infos = match inspect::list(data_dir) {
        Ok(infos) => infos,
        Err(crate::CertError::NoCa { .. }) => return Vec::new(),
        Err(error) => return vec![format!("cannot check certificate expiry: {error}")],
    };
    infos.iter().filter(|info| !info.revoked).filter_map(|info| expiry_warning(info, within_days)).collect()
}

/// Returns a warning if `info` has expired or expires within `within_days` days.
pub fn expiry_warning(info: &CertInfo, within_days: u32) -> Option<String> {
    let days_left = info.days_left();
    if !info.is_expired() && days_left > i64::from(within_days) {
        return None;
    }
    let label = match info.kind {
        CertKind::Ca => "CA certificate".to_owned(),
        CertKind::Server => "server certificate".to_owned(),
        CertKind::Client => format!("client certificate {}", info.common_name),
        CertKind::Other => "certificate".to_owned(),
    };
    let when = if info.is_expired() {
        format!("expired on {}", info.not_after_text())
    } else {
        format!("expires in {days_left} days, on {}", info.not_after_text())
    };
    let fix = match info.kind {
        CertKind::Ca => "make a new CA with `lpiotia-mqtt certs init --force` and reissue every certificate".to_owned(),
        CertKind::Server => "reissue it with `lpiotia-mqtt certs server`".to_owned(),
        CertKind::Client => format!(
            "revoke it with `lpiotia-mqtt certs revoke {name}` and issue a new one with `lpiotia-mqtt certs client {name}`",
            name = info.common_name
        ),
        CertKind::Other => "replace it".to_owned(),
    };
    Some(format!("{label} {} {when}; {fix}", info.path.display()))
}
