//! Names in certificates: the host's own names and addresses for the server certificate, and
//! the rules for client names and DNS names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls_pki_types::DnsName;

use crate::error::{CertError, Result};

/// Maximum length of a client name, in characters.
pub const MAX_CLIENT_NAME_LEN: usize = 64;

/// Returns the host name of this machine, or `None` if it is empty or not a valid DNS name.
pub fn host_name() -> Option<String> {
    let name = gethostname::gethostname().to_string_lossy().trim().to_owned();
    let name = if name.is_empty() { read_etc_hostname()? } else { name };
    DnsName::try_from(name.as_str()).is_ok().then_some(name)
}

fn read_etc_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/etc/hostname").ok()?;
    let name = text.lines().next()?.trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// Returns the names and addresses under which clients on this machine and its networks
/// reach the broker. The names are the host name, `HOST.local` (mDNS) when the host name has
/// no dot, and `localhost`. The addresses are 127.0.0.1, ::1 and every interface address
/// except IPv6 link-local ones (fe80::/10), which need a zone index that a certificate cannot
/// carry.
pub fn default_server_names() -> (Vec<String>, Vec<IpAddr>) {
    let mut dns_names = Vec::new();
    if let Some(host) = host_name() {
        if !host.contains('.') && host != "localhost" {
            dns_names.push(format!("{host}.local"));
        }
        dns_names.insert(0, host);
    }
    dns_names.push("localhost".to_owned());
    dns_names.dedup();

    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => {
            for interface in interfaces {
                let ip = interface.ip();
                if !ip.is_unspecified() && !is_ipv6_link_local(ip) && !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list the network interfaces; the server certificate gets loopback addresses only")
        }
    }
    (dns_names, ips)
}

fn is_ipv6_link_local(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// Checks a client name: 1 to 64 characters from `A-Z a-z 0-9 . _ -`. The name becomes a
/// directory and file name and the certificate's common name, so nothing else is accepted.
pub fn validate_client_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_CLIENT_NAME_LEN
        && name != "."
        && name != ".."
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(CertError::InvalidClientName { name: name.to_owned() })
    }
}

/// Checks that `name` is a valid DNS name for a subjectAltName.
pub(crate) fn validate_dns_name(name: &str) -> Result<()> {
    DnsName::try_from(name)
        .map(|_| ())
        .map_err(|error| CertError::InvalidDnsName { name: name.to_owned(), reason: error.to_string() })
}
