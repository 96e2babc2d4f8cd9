//! Settings of one listener: its kind, bind address, client address allow-list and
//! connection limit, plus the TLS and WebSocket options that later listener kinds read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Description of a valid bind address, used in error messages.
pub(crate) const EXPECTED_BIND: &str = "an address like 0.0.0.0:1883";

/// Description of a valid allow-list entry, used in error messages.
pub(crate) const EXPECTED_NETWORK: &str =
    "an IP address or CIDR range like 10.0.0.0/8, 192.168.1.20 or fd00::/8";

/// Description of a valid listener kind, used in error messages.
pub(crate) const EXPECTED_KIND: &str = "one of tcp, tls, ws, wss";

/// Transport of a listener.
///
/// NOTE: every kind is accepted here, but only the broker decides which kinds it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket without TLS.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// Returns the name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// Returns true for the kinds that run TLS (`tls`, `wss`).
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Returns true for the kinds that carry MQTT inside WebSocket (`ws`, `wss`).
    pub fn uses_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`ListenerKind::from_str`], naming the rejected text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listener kind {text:?}: expected {EXPECTED_KIND}")]
pub struct ParseListenerKindError {
    /// The text that was rejected.
    pub text: String,
}

impl FromStr for ListenerKind {
    type Err = ParseListenerKindError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "tcp" => Ok(ListenerKind::Tcp),
            "tls" => Ok(ListenerKind::Tls),
            "ws" => Ok(ListenerKind::Ws),
            "wss" => Ok(ListenerKind::Wss),
            _ => Err(ParseListenerKindError {
                text: text.to_owned(),
            }),
        }
    }
}

impl Serialize for ListenerKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ListenerKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| de::Error::custom(format_args!("expected {EXPECTED_KIND}")))
    }
}

/// Settings of one listener, the section `[listeners.NAME]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// Transport served on this listener.
    pub kind: ListenerKind,

    /// Local address and port to listen on. Port 0 lets the system choose one.
    #[serde(deserialize_with = "deserialize_bind")]
    pub bind: SocketAddr,

    /// Client addresses allowed to connect. Connections from any other address are closed
    /// before a packet is read. Defaults to every address for listeners that are not in the
    /// embedded defaults.
    #[serde(default = "allow_any", deserialize_with = "deserialize_allow")]
    pub allow: Vec<IpNet>,

    /// Whether clients that send no username and password are accepted.
    #[serde(default)]
    pub allow_anonymous: bool,

    /// Open connections on this listener, or 0 for no limit.
    #[serde(default)]
    pub max_connections: usize,

    /// Whether the broker opens this listener.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// TLS certificate chain in PEM (`tls`, `wss`). Unset: the broker chooses its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,

    /// TLS private key in PEM (`tls`, `wss`). Unset: the broker chooses its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,

    /// CA certificate that client certificates must chain to (`tls`, `wss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,

    /// Whether TLS clients must present a certificate signed by the CA (`tls`, `wss`).
    #[serde(default = "default_true")]
    pub require_certificate: bool,

    /// More CA certificates that client certificates may chain to (`tls`, `wss`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_ca_files: Vec<PathBuf>,

    /// Certificate revocation list in PEM (`tls`, `wss`). Unset: `<data_dir>/crl.pem` when it
    /// exists, which `certs revoke` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_file: Option<PathBuf>,

    /// Whether the client certificate's Common Name must equal the MQTT username (`tls`, `wss`).
    #[serde(default)]
    pub certificate_must_match_username: bool,

    /// Seconds allowed for the TLS handshake and for the WebSocket upgrade, each.
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,

    /// Largest TLS record the broker sends, in bytes (for clients with small receive
    /// buffers). Unset: the rustls default of 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fragment_size: Option<usize>,

    /// HTTP path of the WebSocket endpoint (`ws`, `wss`).
    #[serde(default = "default_websocket_path")]
    pub path: String,
}

impl ListenerSettings {
    /// Returns true if a client at `ip` may connect, that is if an entry of `allow` contains
    /// it. An IPv4-mapped IPv6 address such as `::ffff:10.1.2.3`, which a dual-stack socket
    /// reports for IPv4 clients, is checked as the IPv4 address it maps.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|network| network.contains(&ip))
    }
}

/// Parses one allow-list entry. An address without a prefix length is a single host
/// (/32 or /128), and host bits after the prefix are cleared.
pub(crate) fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(network) = text.parse::<IpNet>() {
        return Some(network.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

fn allow_any() -> Vec<IpNet> {
    vec![
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0)),
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 0)),
    ]
}

fn default_true() -> bool {
    true
}

fn default_handshake_timeout_secs() -> u64 {
    10
}

fn default_websocket_path() -> String {
    "/mqtt".to_owned()
}

fn deserialize_bind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim()
        .parse()
        .map_err(|_| de::Error::custom(format_args!("expected {EXPECTED_BIND}")))
}

fn deserialize_allow<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    deserializer.deserialize_seq(AllowListVisitor)
}

/// Reads the allow-list one entry at a time, so that an invalid entry is reported with its
/// own index and value.
struct AllowListVisitor;

impl<'de> Visitor<'de> for AllowListVisitor {
    type Value = Vec<IpNet>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of entries, each {EXPECTED_NETWORK}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<IpNet>, A::Error> {
        let mut networks = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(AllowEntry(network)) = seq.next_element()? {
            networks.push(network);
        }
        Ok(networks)
    }
}

/// One allow-list entry.
struct AllowEntry(IpNet);

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_network(&text)
            .map(AllowEntry)
            .ok_or_else(|| de::Error::custom(format_args!("expected {EXPECTED_NETWORK}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener_allowing(entries: &[&str]) -> ListenerSettings {
        ListenerSettings {
            kind: ListenerKind::Tcp,
            bind: "127.0.0.1:0".parse().unwrap(),
            allow: entries.iter().map(|e| parse_network(e).unwrap()).collect(),
            allow_anonymous: false,
            max_connections: 0,
            enabled: true,
            cert_file: None,
            key_file: None,
            ca_file: None,
            require_certificate: true,
            extra_ca_files: Vec::new(),
            crl_file: None,
            certificate_must_match_username: false,
            handshake_timeout_secs: default_handshake_timeout_secs(),
            max_fragment_size: None,
            path: default_websocket_path(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn allows_ipv4() {
        let listener = listener_allowing(&["10.0.0.0/8", "192.168.1.20"]);
        assert!(listener.allows(ip("10.1.2.3")));
        assert!(listener.allows(ip("192.168.1.20")));
        assert!(!listener.allows(ip("192.168.1.21")));
        assert!(!listener.allows(ip("11.0.0.1")));
    }

    #[test]
    fn allows_ipv6() {
        let listener = listener_allowing(&["fc00::/7", "::1"]);
        assert!(listener.allows(ip("fd12:3456::1")));
        assert!(listener.allows(ip("::1")));
        assert!(!listener.allows(ip("2001:db8::1")));
        assert!(!listener.allows(ip("127.0.0.1")));
    }

    #[test]
    fn allows_ipv4_mapped_as_ipv4() {
        let listener = listener_allowing(&["10.0.0.0/8"]);
        assert!(listener.allows(ip("::ffff:10.1.2.3")));
        assert!(!listener.allows(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn allows_any_default() {
        let mut listener = listener_allowing(&[]);
        listener.allow = allow_any();
        for address in [
            "1.2.3.4",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(listener.allows(ip(address)), "{address} is allowed");
        }
    }

    #[test]
    fn allows_nothing_when_empty() {
        let listener = listener_allowing(&[]);
        assert!(!listener.allows(ip("127.0.0.1")));
    }

    #[test]
    fn parse_network_forms() {
        assert_eq!(
            parse_network("127.0.0.1"),
            Some("127.0.0.1/32".parse().unwrap())
        );
        assert_eq!(parse_network("::1"), Some("::1/128".parse().unwrap()));
        assert_eq!(
            parse_network(" 10.0.0.0/8 "),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            parse_network("10.1.2.3/8"),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(parse_network("10.0.0.0/33"), None);
        assert_eq!(parse_network("lan"), None);
        assert_eq!(parse_network(""), None);
    }

    #[test]
    fn kind_parses_own_names() {
        for kind in [
            ListenerKind::Tcp,
            ListenerKind::Tls,
            ListenerKind::Ws,
            ListenerKind::Wss,
        ] {
            assert_eq!(kind.as_str().parse::<ListenerKind>(), Ok(kind));
        }
        assert!("TCP".parse::<ListenerKind>().is_err());
        assert!("mqtt".parse::<ListenerKind>().is_err());
    }
}
