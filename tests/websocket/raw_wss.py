#!/usr/bin/env python3
"""Raw WebSocket-over-TLS client for the cases that real MQTT clients cannot produce.

tests/websocket.rs runs this script with one mode at a time and reads its stdout, one
`KEY VALUE` line per observation. The WebSocket framing follows RFC 6455 and the MQTT
packets MQTT 3.1.1 (OASIS, 2014); only the Python standard library is needed.

Modes:
    handshake       upgrade with --subprotocol and print the status and the echoed subprotocol
    text-frame      connect with MQTT, then send a text frame; print how the connection ended
    split-batched   CONNECT split across two frames, SUBSCRIBE and PUBLISH in one frame,
                    and a frame that ends one packet and starts the next
    no-client-cert  TLS without a client certificate; print how the handshake ended
    get             HTTPS GET of --path, with the response body written to --output
"""

import argparse
import base64
import hashlib
import os
import socket
import ssl
import struct
import sys
import time

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_RESPONSE_HEAD = 16 * 1024

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA

CONNACK = 2
PUBLISH = 3
SUBACK = 9
PINGRESP = 13


def emit(key, value=""):
    print(f"{key} {value}".rstrip(), flush=True)


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


class ConnectionEnded(Exception):
    """The server closed the connection: a close frame, end of file, or a TLS alert."""


# --- MQTT 3.1.1 packets -------------------------------------------------------------------

def encode_remaining_length(length):
    encoded = bytearray()
    while True:
        byte = length % 128
        length //= 128
        if length:
            byte |= 0x80
        encoded.append(byte)
        if not length:
            return bytes(encoded)


def encode_string(text):
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def packet(first_byte, body):
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


def connect_packet(client_id, username, password):
    # Protocol name MQTT, level 4, flags: username, password, clean session; keep alive 60 s.
    variable_header = encode_string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
    payload = encode_string(client_id) + encode_string(username) + encode_string(password)
    return packet(0x10, variable_header + payload)


def subscribe_packet(packet_id, topic_filter, qos):
    return packet(0x82, struct.pack("!H", packet_id) + encode_string(topic_filter) + bytes([qos]))


def publish_packet(topic, payload):
    return packet(0x30, encode_string(topic) + payload.encode("utf-8"))


def pingreq_packet():
    return bytes([0xC0, 0x00])


def disconnect_packet():
    return bytes([0xE0, 0x00])


# --- WebSocket client ---------------------------------------------------------------------

class WebSocket:
    """A client WebSocket on a TLS socket: masked frames out, unmasked frames in."""

    def __init__(self, sock):
        self.sock = sock
        self.received = bytearray()
        self.mqtt_bytes = bytearray()

    def read_exact(self, count):
        while len(self.received) < count:
            try:
                chunk = self.sock.recv(65536)
            except ssl.SSLError as error:
                raise ConnectionEnded(f"tls-error {error.reason or error}") from error
            except ConnectionResetError as error:
                raise ConnectionEnded("reset") from error
            if not chunk:
                raise ConnectionEnded("eof")
            self.received.extend(chunk)
        data = bytes(self.received[:count])
        del self.received[:count]
        return data

    def send_frame(self, opcode, payload):
        mask = os.urandom(4)
        header = bytearray([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 65536:
            header.append(0x80 | 126)
            header.extend(struct.pack("!H", length))
        else:
            header.append(0x80 | 127)
            header.extend(struct.pack("!Q", length))
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def recv_frame(self):
        """Returns (opcode, payload) of the next frame from the server."""
        first, second = self.read_exact(2)
        opcode = first & 0x0F
        if second & 0x80:
            fail("the server sent a masked frame (RFC 6455 section 5.1 forbids it)")
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read_exact(8))
        return opcode, self.read_exact(length)

    def recv_mqtt_packet(self):
        """Returns (packet type, body) of the next MQTT packet, reading as many frames as needed."""
        while True:
            parsed = parse_mqtt_packet(self.mqtt_bytes)
            if parsed is not None:
                return parsed
            opcode, payload = self.recv_frame()
            if opcode == OPCODE_BINARY or opcode == OPCODE_CONTINUATION:
                self.mqtt_bytes.extend(payload)
            elif opcode == OPCODE_CLOSE:
                raise ConnectionEnded(f"close-frame {close_code(payload)}")
            elif opcode == OPCODE_PING:
                self.send_frame(OPCODE_PONG, payload)
            elif opcode == OPCODE_TEXT:
                fail("the server sent a text frame; MQTT over WebSocket uses binary frames")

    def wait_for_close(self, timeout):
        """Reads until the server ends the connection; returns how it ended, or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, payload = self.recv_frame()
                if opcode == OPCODE_CLOSE:
                    return f"close-frame {close_code(payload)}"
                if opcode in (OPCODE_BINARY, OPCODE_CONTINUATION):
                    emit("unexpected-data", payload.hex())
        except ConnectionEnded as ended:
            return str(ended)
        except socket.timeout:
            return None


def close_code(payload):
    if len(payload) >= 2:
        return str(struct.unpack("!H", payload[:2])[0])
    return "none"


def parse_mqtt_packet(buffer):
    """Removes and returns the first whole MQTT packet in `buffer`, or None if it is incomplete."""
    if len(buffer) < 2:
        return None
    length = 0
    multiplier = 1
    index = 1
    while True:
        if index >= len(buffer):
            return None
        byte = buffer[index]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        index += 1
        if not byte & 0x80:
            break
        if index > 4:
            fail(f"malformed remaining length in {bytes(buffer[:5]).hex()}")
    if len(buffer) < index + length:
        return None
    packet_type = buffer[0] >> 4
    body = bytes(buffer[index:index + length])
    del buffer[:index + length]
    return packet_type, body


def tls_context(args, with_client_certificate=True, max_version=None):
    context = ssl.create_default_context(cafile=args.ca)
    if with_client_certificate:
        context.load_cert_chain(certfile=args.cert, keyfile=args.key)
    if max_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def open_tls(args, with_client_certificate=True, max_version=None):
    raw = socket.create_connection((args.host, args.port), timeout=args.timeout)
    context = tls_context(args, with_client_certificate, max_version)
    return context.wrap_socket(raw, server_hostname=args.host)


def read_response_head(sock):
    """Reads an HTTP response head; returns (status, headers as a lowercase dict, bytes after it)."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_RESPONSE_HEAD:
            fail(f"HTTP response head larger than {MAX_RESPONSE_HEAD} bytes")
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionEnded("eof before the end of the HTTP response head")
        data.extend(chunk)
    head, rest = bytes(data).split(b"\r\n\r\n", 1)
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        fail(f"malformed HTTP status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def websocket_handshake(sock, args, subprotocol):
    """Sends the upgrade request; returns (status, headers, WebSocket or None)."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {args.path} HTTP/1.1",
        f"Host: {args.host}:{args.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
    status, headers, rest = read_response_head(sock)
    if status != 101:
        return status, headers, None

    expected_accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest()).decode("ascii")
    if headers.get("sec-websocket-accept") != expected_accept:
        fail(f"Sec-WebSocket-Accept is {headers.get('sec-websocket-accept')!r}, expected {expected_accept!r}")
    websocket = WebSocket(sock)
    websocket.received.extend(rest)
    return status, headers, websocket


def open_websocket(args, subprotocol="mqtt"):
    sock = open_tls(args)
    status, headers, websocket = websocket_handshake(sock, args, subprotocol)
    if websocket is None:
        fail(f"WebSocket upgrade failed with HTTP {status}")
    emit("subprotocol", headers.get("sec-websocket-protocol", "none"))
    return websocket


def expect_packet(websocket, expected_type, name):
    packet_type, body = websocket.recv_mqtt_packet()
    if packet_type != expected_type:
        fail(f"expected {name} (type {expected_type}), got packet type {packet_type} with body {body.hex()}")
    return body


def mqtt_connect(websocket, args, split):
    connect = connect_packet(args.client_id, args.username, args.password)
    if split:
        # The first frame ends inside the variable header, so the broker must join frames.
        websocket.send_frame(OPCODE_BINARY, connect[:5])
        time.sleep(0.2)
        websocket.send_frame(OPCODE_BINARY, connect[5:])
    else:
        websocket.send_frame(OPCODE_BINARY, connect)
    body = expect_packet(websocket, CONNACK, "CONNACK")
    if len(body) != 2:
        fail(f"CONNACK body is {body.hex()}, expected 2 bytes")
    emit("connack", str(body[1]))
    if body[1] != 0:
        fail(f"CONNACK return code {body[1]}")


def decode_publish(body):
    (topic_length,) = struct.unpack("!H", body[:2])
    topic = body[2:2 + topic_length].decode("utf-8")
    return topic, body[2 + topic_length:].decode("utf-8", "replace")


# --- modes ---------------------------------------------------------------------------------

def run_handshake(args):
    sock = open_tls(args)
    status, headers, _websocket = websocket_handshake(sock, args, args.subprotocol)
    emit("status", str(status))
    emit("subprotocol", headers.get("sec-websocket-protocol", "none"))


def run_text_frame(args):
    websocket = open_websocket(args)
    mqtt_connect(websocket, args, split=False)
    websocket.send_frame(OPCODE_TEXT, b"not MQTT: text frame")
    ended = websocket.wait_for_close(args.timeout)
    emit("closed", ended if ended else f"still-open-after {args.timeout} s")


def run_split_batched(args):
    websocket = open_websocket(args)
    mqtt_connect(websocket, args, split=True)

    # SUBSCRIBE and PUBLISH in one frame: the PUBLISH must reach the new subscription.
    batch = subscribe_packet(1, args.topic, 0) + publish_packet(args.topic, args.payload)
    websocket.send_frame(OPCODE_BINARY, batch)
    # MQTT 3.1.1 section 3.8.4 lets the server send matching PUBLISHes before the SUBACK,
    # and a broker that writes the subscription to disk first does so.
    replies = [websocket.recv_mqtt_packet(), websocket.recv_mqtt_packet()]
    for packet_type, body in replies:
        if packet_type == SUBACK:
            emit("suback", body.hex())
        elif packet_type == PUBLISH:
            topic, payload = decode_publish(body)
            emit("publish", f"{topic} {payload}")
        else:
            fail(f"expected SUBACK and PUBLISH, got packet type {packet_type} with body {body.hex()}")

    # One frame that contains a whole PINGREQ and the start of a PUBLISH, then the rest.
    second = publish_packet(args.topic, args.payload + "-straddling")
    websocket.send_frame(OPCODE_BINARY, pingreq_packet() + second[:4])
    time.sleep(0.2)
    websocket.send_frame(OPCODE_BINARY, second[4:])
    expect_packet(websocket, PINGRESP, "PINGRESP")
    emit("pingresp")
    topic, payload = decode_publish(expect_packet(websocket, PUBLISH, "PUBLISH"))
    emit("publish", f"{topic} {payload}")

    websocket.send_frame(OPCODE_BINARY, disconnect_packet())
    websocket.send_frame(OPCODE_CLOSE, struct.pack("!H", 1000))


def run_no_client_cert(args):
    try:
        sock = open_tls(args, with_client_certificate=False, max_version=args.tls_max)
        emit("tls-client-handshake", sock.version())
        # Under TLS 1.3 the client finishes its side before the server checks for a client
        # certificate, so the refusal shows up on the first read.
        status, _headers, _websocket = websocket_handshake(sock, args, "mqtt")
        emit("status", str(status))
    except ssl.SSLError as error:
        emit("tls-refused", error.reason or str(error))
    except (ConnectionEnded, ConnectionResetError, BrokenPipeError) as error:
        emit("tls-refused", str(error) or type(error).__name__)


def run_get(args):
    sock = open_tls(args)
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode("ascii"))
    status, headers, body = read_response_head(sock)
    emit("status", str(status))
    emit("content-type", headers.get("content-type", "none"))
    expected = int(headers.get("content-length", "-1"))
    body = bytearray(body)
    while expected < 0 or len(body) < expected:
        try:
            chunk = sock.recv(65536)
        except ssl.SSLError:
            break
        if not chunk:
            break
        body.extend(chunk)
    if expected >= 0 and len(body) != expected:
        fail(f"body has {len(body)} bytes, Content-Length is {expected}")
    with open(args.output, "wb") as output:
        output.write(body)
    emit("body-length", str(len(body)))


MODES = {
    "handshake": run_handshake,
    "text-frame": run_text_frame,
    "split-batched": run_split_batched,
    "no-client-cert": run_no_client_cert,
    "get": run_get,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/mqtt")
    parser.add_argument("--subprotocol", default="mqtt", help="Sec-WebSocket-Protocol offered (handshake mode)")
    parser.add_argument("--ca", required=True, help="CA certificate (PEM) that signed the server certificate")
    parser.add_argument("--cert", help="client certificate (PEM)")
    parser.add_argument("--key", help="client private key (PEM)")
    parser.add_argument("--username", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--client-id", default="raw-wss")
    parser.add_argument("--topic", default="raw/wss")
    parser.add_argument("--payload", default="raw")
    parser.add_argument("--tls-max", choices=["1.2", "1.3"], help="highest TLS version offered")
    parser.add_argument("--output", help="file for the response body (get mode)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed for each read")
    args = parser.parse_args()
    if args.mode != "no-client-cert" and not (args.cert and args.key):
        parser.error(f"mode {args.mode} needs --cert and --key")
    if args.mode == "get" and not args.output:
        parser.error("mode get needs --output")
    return args


def main():
    args = parse_args()
    try:
        MODES[args.mode](args)
    except ConnectionEnded as ended:
        fail(f"the server ended the connection: {ended}")
    except socket.timeout:
        fail(f"no reply within {args.timeout} s")


if __name__ == "__main__":
    main()
