#!/usr/bin/env node
// Runs browser.html in headless Chromium through playwright-core, for tests/websocket.rs.
//
// Chromium finds the CA and the client certificate in the NSS database under $HOME/.pki/nssdb,
// which the Rust test prepares, and picks the certificate through the managed policy
// AutoSelectCertificateForUrls. Playwright's own client-certificate option is not used, so
// the certificate goes through the browser's real TLS stack.
//
// Stdout gets `subscribed` once the page's subscription is acknowledged and `message TOPIC PAYLOAD`
// when the message arrives; page console lines go to stderr. A page error, or a step that
// takes longer than --timeout seconds, ends the script with status 1.
//
// Usage: node browser_run.js --port P --username U --password W --client-id ID --topic T
//        --user-data-dir DIR [--screenshot FILE] [--timeout SECS] [--chromium PATH]

"use strict";

const path = require("node:path");
const { pathToFileURL } = require("node:url");
const { parseArgs } = require("node:util");

let chromium;
try {
  ({ chromium } = require("playwright-core"));
} catch (error) {
  console.error(`error: playwright-core is not installed (${error.message}): run \`npm ci\` in tests/websocket`);
  process.exit(3);
}

const { values: options } = parseArgs({
  options: {
    port: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    "client-id": { type: "string" },
    topic: { type: "string" },
    "user-data-dir": { type: "string" },
    screenshot: { type: "string" },
    timeout: { type: "string", default: "40" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
for (const name of ["port", "username", "password", "client-id", "topic", "user-data-dir"]) {
  if (options[name] === undefined) {
    console.error(`error: missing --${name}`);
    process.exit(2);
  }
}

const timeoutMs = Number(options.timeout) * 1000;
const deadline = Date.now() + timeoutMs;
const remainingMs = () => Math.max(1, deadline - Date.now());

// Flags for a closed network: no background requests, no QUIC, and every host name but
// localhost resolves to nothing, so the browser can reach only this machine's loopback.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
];

async function main() {
  const pageUrl = pathToFileURL(path.join(__dirname, "browser.html"));
  pageUrl.search = new URLSearchParams({
    port: options.port,
    username: options.username,
    password: options.password,
    client_id: options["client-id"],
    topic: options.topic,
  }).toString();

  // launchPersistentContext takes the profile directory that the test made, so nothing is
  // left behind in a directory of Playwright's choosing.
  const context = await chromium.launchPersistentContext(options["user-data-dir"], {
    executablePath: options.chromium,
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
    timeout: remainingMs(),
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (message) => console.error(`page console: ${message.text()}`));
    page.on("pageerror", (error) => console.error(`page error: ${error.message}`));

    await page.goto(pageUrl.href, { timeout: remainingMs() });
    await waitForState(page, "subscribed");
    console.log("subscribed");

    await waitForState(page, "received");
    const message = await page.textContent("#message");
    console.log(`message ${message}`);
    if (options.screenshot) {
      await page.screenshot({ path: options.screenshot });
    }
  } finally {
    await context.close();
  }
}

// Waits until the page title is `state`; fails early when the page reports an error.
async function waitForState(page, state) {
  try {
    await page.waitForFunction(
      (expected) => document.title === expected || document.title.startsWith("error:"),
      state,
      { timeout: remainingMs(), polling: 100 },
    );
  } catch (error) {
    throw new Error(`page state is ${JSON.stringify(await page.title())}, expected ${state}: ${error.message}`);
  }
  const title = await page.title();
  if (title !== state) {
    const log = await page.textContent("#log");
    throw new Error(`page reported ${JSON.stringify(title)} while waiting for ${state}\n--- page log ---\n${log}`);
  }
}

const guard = setTimeout(() => {
  console.error(`error: browser run not finished within ${options.timeout} s`);
  process.exit(1);
}, timeoutMs + 5000);
guard.unref();

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`error: ${error.message}`);
    process.exit(1);
  },
);
