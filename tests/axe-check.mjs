// WCAG 2.1 A/AA check of web pages with axe-core in headless Chromium, driven over the DevTools pipe (no
// WebSocket library needed). Used by tests/console.rs; the client certificate comes from the NSS database in $HOME
// and the managed policy that selects it.
//
// usage: node tests/axe-check.mjs AXE_MIN_JS USER_DATA_DIR URL...
// prints one JSON object: {"<url>": [{"id", "impact", "help", "targets"}...], ...}; exits 2 when a page did not load.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";

const [axePath, profile, ...urls] = process.argv.slice(2);
const axeSource = readFileSync(axePath, "utf8");
const chromium = spawn(
  "chromium",
  [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=nl-NL",
    "--window-size=1400,1500",
    "--remote-debugging-pipe",
    `--user-data-dir=${profile}`,
    "about:blank",
  ],
  { stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"] },
);
const toBrowser = chromium.stdio[3];
const fromBrowser = chromium.stdio[4];
const timer = setTimeout(() => {
  console.error("axe-check: timed out");
  chromium.kill("SIGKILL");
  process.exit(2);
}, 120_000);

let nextId = 0;
const pending = new Map();
const listeners = [];
let buffer = Buffer.alloc(0);
fromBrowser.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (let end = buffer.indexOf(0); end >= 0; end = buffer.indexOf(0)) {
    const message = JSON.parse(buffer.subarray(0, end).toString("utf8"));
    buffer = buffer.subarray(end + 1);
    if (message.id !== undefined && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(JSON.stringify(message.error)));
      else resolve(message.result);
    } else if (message.method) {
      for (const l of listeners.slice()) l(message);
    }
  }
});

function send(method, params = {}, sessionId = undefined) {
  const id = ++nextId;
  const message = { id, method, params };
  if (sessionId) message.sessionId = sessionId;
  toBrowser.write(JSON.stringify(message) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

function once(method, sessionId) {
  return new Promise((resolve) => {
    const l = (m) => {
      if (m.method === method && m.sessionId === sessionId) {
        listeners.splice(listeners.indexOf(l), 1);
        resolve(m.params);
      }
    };
    listeners.push(l);
  });
}

async function evaluate(sessionId, expression) {
  const r = await send(
    "Runtime.evaluate",
    { expression, awaitPromise: true, returnByValue: true },
    sessionId,
  );
  if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
  return r.result.value;
}

const results = {};
let failed = false;
try {
  for (const url of urls) {
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
    await send("Page.enable", {}, sessionId);
    // The console's Content-Security-Policy allows no script; the checker's own script must still run.
    await send("Page.setBypassCSP", { enabled: true }, sessionId);
    const loaded = once("Page.loadEventFired", sessionId);
    const nav = await send("Page.navigate", { url }, sessionId);
    if (nav.errorText) {
      console.error(`axe-check: ${url}: ${nav.errorText}`);
      failed = true;
      continue;
    }
    await loaded;
    await evaluate(sessionId, axeSource);
    results[url] = await evaluate(
      sessionId,
      `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
         .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            targets: v.nodes.map(n => n.target.join(' '))})))`,
    );
    await send("Target.closeTarget", { targetId });
  }
} catch (e) {
  console.error(`axe-check: ${e.stack || e}`);
  failed = true;
}
clearTimeout(timer);
console.log(JSON.stringify(results));
chromium.kill();
process.exit(failed ? 2 : 0);
