#!/usr/bin/env python3
"""Paho MQTT client over WSS, driven by tests/websocket.rs.

Connects to the broker's WebSocket-over-TLS listener with a client certificate and a
password, subscribes to a topic, publishes a message to it and waits for that message to
come back. It then prints `ready` and waits for one more message on the topic, which the
Rust test publishes with mosquitto_pub on the plain TCP listener.

Every step prints one line on stdout, so the test can follow the client:
    connected REASON
    subscribed GRANTED
    own-message TOPIC PAYLOAD
    ready
    message TOPIC PAYLOAD
Errors go to stderr and end the client with a non-zero exit status.

Needs paho-mqtt 2.x (`python3 -m pip install paho-mqtt==2.1.0`).
"""

import argparse
import queue
import sys
import time

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError as error:
    print(
        f"paho-mqtt 2.x is not installed for {sys.executable} ({error}): "
        "install it with `python3 -m pip install paho-mqtt==2.1.0`",
        file=sys.stderr,
    )
    sys.exit(3)

PROTOCOLS = {
    "3.1": mqtt.MQTTv31,
    "3.1.1": mqtt.MQTTv311,
    "5": mqtt.MQTTv5,
}


def emit(line):
    print(line, flush=True)


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/mqtt", help="HTTP path of the WebSocket endpoint")
    parser.add_argument("--subprotocol", help="Sec-WebSocket-Protocol to offer instead of paho's `mqtt`")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True, help="MQTT version")
    parser.add_argument("--ca", required=True, help="CA certificate (PEM) that signed the server certificate")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--key", required=True, help="client private key (PEM)")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--payload", required=True, help="payload of the client's own message")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds allowed for each step")
    return parser.parse_args()


def main():
    args = parse_args()
    events = queue.Queue()
    protocol = PROTOCOLS[args.protocol]

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=protocol,
        transport="websockets",
    )
    headers = {"Sec-Websocket-Protocol": args.subprotocol} if args.subprotocol else None
    client.ws_set_options(path=args.path, headers=headers)
    client.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key)
    client.username_pw_set(args.username, args.password)

    client.on_connect = lambda _client, _userdata, _flags, reason, _properties: events.put(("connect", reason))
    client.on_subscribe = lambda _client, _userdata, _mid, reasons, _properties: events.put(("subscribe", reasons))
    client.on_message = lambda _client, _userdata, message: events.put(("message", message))
    client.on_disconnect = lambda _client, _userdata, _flags, reason, _properties: events.put(("disconnect", reason))

    def wait_for(kind):
        deadline = time.monotonic() + args.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                fail(f"no {kind} event within {args.timeout} s")
            try:
                event, value = events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event == kind:
                return value
            if event == "disconnect":
                fail(f"disconnected while waiting for {kind}: {value}")
            fail(f"unexpected {event} event while waiting for {kind}: {value}")

    # The connect call itself does the TCP, TLS and WebSocket handshakes; bound them too.
    client.connect_timeout = args.timeout
    try:
        client.connect(args.host, args.port, keepalive=30)
    except Exception as error:  # noqa: BLE001 - any failure to connect ends this client
        fail(f"connect to wss://{args.host}:{args.port}{args.path} failed: {error!r}")
    client.loop_start()
    try:
        reason = wait_for("connect")
        if reason.is_failure:
            fail(f"CONNACK refused the connection: {reason}")
        emit(f"connected {reason}")

        client.subscribe(args.topic, qos=1)
        granted = wait_for("subscribe")
        if any(code.is_failure for code in granted):
            fail(f"SUBACK refused the subscription: {granted}")
        emit(f"subscribed {','.join(str(int(code.value)) for code in granted)}")

        info = client.publish(args.topic, args.payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"publish failed: {mqtt.error_string(info.rc)}")
        message = wait_for("message")
        emit(f"own-message {message.topic} {message.payload.decode('utf-8', 'replace')}")
        emit("ready")

        message = wait_for("message")
        emit(f"message {message.topic} {message.payload.decode('utf-8', 'replace')}")
        client.disconnect()
    finally:
        client.loop_stop()


if __name__ == "__main__":
    main()
