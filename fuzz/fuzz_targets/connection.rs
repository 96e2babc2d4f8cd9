//! Feeds arbitrary bytes to one broker connection, through `connection::serve`, the code path
//! of every listener after its transport: first-packet reader, codec, CONNECT handling,
//! authentication, session, router, retained store and wills.
//!
//! The first input byte (modulo 4) selects what the client sends before the rest:
//! 0 nothing, 1 a valid MQTT 3.1.1 CONNECT, 2 a valid MQTT 5.0 CONNECT, 3 a valid MQTT 3.1
//! CONNECT. Each CONNECT logs in as the one user of the password file, so the rest of the
//! input reaches the packets after CONNECT. The client then closes its sending side and
//! reads everything the broker writes, until the broker closes the connection.
//!
//! Each input gets a new broker, so that a crash reproduces from its input alone. All inputs
//! share one runtime whose clock is paused, so timers (keep alive, close waits, will delay,
//! session expiry) fire as soon as nothing else can run, at no cost in real time.
//!
//! With `LPIOTIA_FUZZ_PRINT=1` set, the target prints what the broker sent, in hex, which
//! helps when replaying one input: `cargo fuzz run connection FILE`.

#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lpiotia_auth::PasswordFile;
use lpiotia_broker::connection::{serve, ListenerInfo, PeerInfo};
use lpiotia_broker::{Broker, BrokerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The one user: `mosquitto_passwd` 2.0.11 output for "m6" with password "pw6" (salted
/// SHA-512), which verifies in microseconds where argon2id takes milliseconds.
const PASSWORD_LINE: &str = "m6:$6$FK/aUGEUm7ZDnxew$LntYfuCC1HxC+gN7u4eYI8XJ7P7G1HvEf9Rp+dnG823Wqu4oMdBt2wROuLwlRBwYAOQ0UX+rdILU4gRXU/yWRA==";
const USERNAME: &[u8] = b"m6";
const PASSWORD: &[u8] = b"pw6";

/// Keep alive of the CONNECT prefixes, in seconds.
const KEEP_ALIVE: u16 = 60;

/// Time on the paused clock that one connection may take, from the first byte to the end
/// of `serve`. After the client's end of file, the broker's longest legitimate wait is a few
/// seconds (1 s for the client's close after DISCONNECT, 2 s to flush the last packets), so a
/// connection still open after this is a hang.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);

/// Time on the paused clock let pass after the connection ended, so that delayed wills and
/// session expiries up to this long fire within the run.
const AFTERMATH: Duration = Duration::from_secs(24 * 3600);

/// Capacity of the in-memory pipe between client and broker, in each direction.
const PIPE_CAPACITY: usize = 64 * 1024;

static PASSWORDS: LazyLock<PasswordFile> = LazyLock::new(|| {
    let report = PasswordFile::parse(PASSWORD_LINE);
    assert!(report.warnings.is_empty(), "fuzz user rejected: {:?}", report.warnings);
    report.file
});

static LISTENER: LazyLock<Arc<ListenerInfo>> = LazyLock::new(|| {
    Arc::new(ListenerInfo { name: "fuzz".to_owned(), allow_anonymous: true, certificate_must_match_username: false })
});

/// The CONNECT prefixes selected by the first input byte; index 0 is no prefix.
static PREFIXES: LazyLock<[Vec<u8>; 4]> = LazyLock::new(|| {
    [
        Vec::new(),
        connect_packet(b"MQTT", 4, b"fuzz-311"),
        connect_packet(b"MQTT", 5, b"fuzz-5"),
        connect_packet(b"MQIsdp", 3, b"fuzz-31"),
    ]
});

/// Whether to print the broker's output, from `LPIOTIA_FUZZ_PRINT`.
static PRINT_OUTPUT: LazyLock<bool> = LazyLock::new(|| std::env::var_os("LPIOTIA_FUZZ_PRINT").is_some_and(|value| value == "1"));

thread_local! {
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("build the tokio runtime");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut input = PREFIXES[usize::from(mode % 4)].clone();
    input.extend_from_slice(rest);
    RUNTIME.with(|runtime| runtime.block_on(run_connection(input)));
});

/// Serves one connection that sends `input`, then lets the broker's timers run out.
async fn run_connection(input: Vec<u8>) {
    let broker = Broker::new(BrokerConfig::default(), PASSWORDS.clone());
    let (client, server) = tokio::io::duplex(PIPE_CAPACITY);
    let peer = PeerInfo { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 50000)), certificate_cn: None };
    let served = tokio::spawn(serve(Arc::clone(&broker), server, peer, Arc::clone(&LISTENER)));

    let (mut from_broker, mut to_broker) = tokio::io::split(client);
    let send = async move {
        // The broker may close before it has read everything: a failed write is expected.
        let _ = to_broker.write_all(&input).await;
        let _ = to_broker.shutdown().await;
    };
    let drain = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut received = Vec::new();
        while let Ok(read) = from_broker.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            if *PRINT_OUTPUT {
                received.extend_from_slice(&buffer[..read]);
            }
        }
        if *PRINT_OUTPUT {
            let hex: Vec<String> = received.iter().map(|byte| format!("{byte:02x}")).collect();
            eprintln!("broker sent {} bytes: {}", received.len(), hex.join(" "));
        }
    };
    let exchange = async move {
        tokio::join!(send, drain);
        served.await
    };
    match tokio::time::timeout(CONNECTION_DEADLINE, exchange).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("connection task failed: {error}"),
        Err(_) => panic!("connection still open {CONNECTION_DEADLINE:?} after the client's end of file"),
    }

    tokio::time::sleep(AFTERMATH).await;
    // Ends the will and session expiry tasks still waiting, as a broker shutdown does.
    broker.shutdown.cancel();
    tokio::task::yield_now().await;
}

/// Encodes a CONNECT with clean session, the fuzz user's credentials and no will.
fn connect_packet(protocol_name: &[u8], level: u8, client_id: &[u8]) -> Vec<u8> {
    const USERNAME_FLAG: u8 = 0x80;
    const PASSWORD_FLAG: u8 = 0x40;
    const CLEAN_SESSION_FLAG: u8 = 0x02;

    let mut body = Vec::new();
    put_string(&mut body, protocol_name);
    body.push(level);
    body.push(USERNAME_FLAG | PASSWORD_FLAG | CLEAN_SESSION_FLAG);
    body.extend_from_slice(&KEEP_ALIVE.to_be_bytes());
    if level == 5 {
        // Property Length 0: no CONNECT properties.
        body.push(0);
    }
    put_string(&mut body, client_id);
    put_string(&mut body, USERNAME);
    put_string(&mut body, PASSWORD);

    // A one-byte Remaining Length is enough for these short fields.
    let remaining = u8::try_from(body.len()).ok().filter(|length| *length < 0x80).expect("CONNECT under 128 bytes");
    let mut packet = vec![0x10, remaining];
    packet.extend_from_slice(&body);
    packet
}

/// Appends a two-byte length and the bytes, as MQTT encodes strings and binary data.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u16::try_from(bytes.len()).expect("field under 65536 bytes");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}
