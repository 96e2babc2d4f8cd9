#!/usr/bin/env node
// MQTT.js client over WSS, driven by tests/websocket.rs.
//
// Connects to wss://localhost:PORT/mqtt with a client certificate, the CA and a password,
// subscribes, publishes a message to its own topic and waits for it, prints `ready`, then
// waits for one more message that the Rust test publishes with mosquitto_pub.
//
// Stdout gets one line per step: `connected`, `subscribed QOS`, `own-message TOPIC PAYLOAD`,
// `ready`, `message TOPIC PAYLOAD`. Errors go to stderr with a non-zero exit status.
//
// Usage: node mqttjs_client.js --port P --protocol-version 4|5 --ca F --cert F --key F
//        --username U --password W --client-id ID --topic T --payload P [--timeout SECS]

"use strict";

const fs = require("node:fs");
const { parseArgs } = require("node:util");

let mqtt;
try {
  mqtt = require("mqtt");
} catch (error) {
  console.error(`error: MQTT.js is not installed (${error.message}): run \`npm ci\` in tests/websocket`);
  process.exit(3);
}

const { values: options } = parseArgs({
  options: {
    host: { type: "string", default: "localhost" },
    port: { type: "string" },
    path: { type: "string", default: "/mqtt" },
    "protocol-version": { type: "string" },
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    "client-id": { type: "string" },
    topic: { type: "string" },
    payload: { type: "string" },
    timeout: { type: "string", default: "20" },
  },
});

for (const name of ["port", "protocol-version", "ca", "cert", "key", "username", "password", "client-id", "topic", "payload"]) {
  if (options[name] === undefined) {
    console.error(`error: missing --${name}`);
    process.exit(2);
  }
}

const timeoutMs = Number(options.timeout) * 1000;
const fail = (message) => {
  console.error(`error: ${message}`);
  process.exit(1);
};
// The whole run is bounded, whatever step it hangs in.
setTimeout(() => fail(`not finished within ${options.timeout} s`), timeoutMs).unref();

const url = `wss://${options.host}:${options.port}${options.path}`;
const client = mqtt.connect(url, {
  protocolVersion: Number(options["protocol-version"]),
  clientId: options["client-id"],
  username: options.username,
  password: options.password,
  ca: fs.readFileSync(options.ca),
  cert: fs.readFileSync(options.cert),
  key: fs.readFileSync(options.key),
  rejectUnauthorized: true,
  reconnectPeriod: 0,
  connectTimeout: timeoutMs,
  clean: true,
});

let ownMessageSeen = false;

client.on("error", (error) => fail(`MQTT.js error on ${url}: ${error.message}`));
client.on("close", () => {
  if (!client.disconnecting) {
    fail(`connection to ${url} closed`);
  }
});

client.on("connect", (connack) => {
  console.log(`connected ${connack.returnCode ?? connack.reasonCode ?? 0}`);
  client.subscribe(options.topic, { qos: 1 }, (error, granted) => {
    if (error) {
      fail(`subscribe failed: ${error.message}`);
    }
    if (granted.some((grant) => grant.qos >= 0x80)) {
      fail(`SUBACK refused the subscription: ${JSON.stringify(granted)}`);
    }
    console.log(`subscribed ${granted.map((grant) => grant.qos).join(",")}`);
    client.publish(options.topic, options.payload, { qos: 1 }, (publishError) => {
      if (publishError) {
        fail(`publish failed: ${publishError.message}`);
      }
    });
  });
});

client.on("message", (topic, payload) => {
  if (!ownMessageSeen) {
    ownMessageSeen = true;
    console.log(`own-message ${topic} ${payload.toString()}`);
    console.log("ready");
    return;
  }
  console.log(`message ${topic} ${payload.toString()}`);
  client.end(false, () => process.exit(0));
});
