#!/usr/bin/env node
// Headless Chromium (Debian's /usr/bin/chromium) driven by puppeteer-core, as a library and
// as a CLI that runs one scenario:
//
//   node tests/browser/browser.mjs SCENARIO.mjs
//
// SCENARIO.mjs exports `async function run({ browser, page, env, assert, ... })`. The CLI
// gives it 60 s in all (BROWSER_TIMEOUT_MS overrides), prints one JSON line to stdout,
// {"ok":true,...} or {"ok":false,"error":...}, and exits 0 or 1. README.md has the rest.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
// The networking flags: the test machine has no network, and without them Chromium keeps
// trying (and failing) to reach Google's services at every start.
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Everything started here is stopped by cleanup(), also when a scenario fails or times out.
const cleanups = [];
export function onCleanup(fn) { cleanups.push(fn); }
export async function cleanup() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch { /* keep stopping the rest */ }
  }
}

const debug = (...a) => { if (process.env.BROWSER_DEBUG) console.error('[browser]', ...a); };

// Launch Chromium with a fresh, empty profile (no cookies from an earlier run).
export async function launchBrowser({ args = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install -y --no-install-recommends chromium (README.md)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtgate-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    userDataDir,
    protocolTimeout: 30_000,
  });
  onCleanup(() => fs.rmSync(userDataDir, { recursive: true, force: true }));
  onCleanup(() => browser.close());
  return browser;
}

// Start provider.mjs as a child process with `config` (the object of README.md's config
// file), the way a Rust test does: write the config, read the first stdout line, keep
// stdin open. Its stderr lines are kept in `log` (printed live with BROWSER_DEBUG=1).
export async function startProvider(config, { timeoutMs = 15_000 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jwtgate-provider-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, [path.join(here, 'provider.mjs'), file], { stdio: ['pipe', 'pipe', 'pipe'] });
  const log = [];
  readline.createInterface({ input: child.stderr }).on('line', (line) => {
    log.push(line);
    debug('provider:', line);
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const close = async () => {
    child.stdin.end(); // the provider exits on stdin EOF
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  onCleanup(close);

  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('provider.mjs printed no line in time')), timeoutMs);
    readline.createInterface({ input: child.stdout }).once('line', (line) => { clearTimeout(timer); resolve(line); });
    exited.then((code) => { clearTimeout(timer); reject(new Error(`provider.mjs exited (${code}): ${log.join('\n')}`)); });
  });
  const { issuer, port } = JSON.parse(first);
  return {
    issuer,
    port,
    child,
    log,
    close,
    discovery: () => getJson(`${issuer}/.well-known/openid-configuration`),
    stats: () => getJson(`${issuer}/test/stats`),
    logout: (sub, { revokeAll = false } = {}) => getJson(
      `${issuer}/test/logout?sub=${encodeURIComponent(sub)}${revokeAll ? '&revoke=all' : ''}`,
      { method: 'POST' },
    ),
  };
}

async function getJson(url, init) {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

// ---- CLI ----
async function main(scenarioPath) {
  const started = Date.now();
  const timeoutMs = Number(process.env.BROWSER_TIMEOUT_MS ?? 60_000);
  const result = { scenario: scenarioPath, ok: false };
  let page;
  let timer;
  try {
    if (!scenarioPath) throw new Error('usage: node browser.mjs SCENARIO.mjs');
    const { run } = await import(pathToFileURL(path.resolve(scenarioPath)).href);
    if (typeof run !== 'function') throw new Error(`${scenarioPath} exports no run()`);
    const browser = await launchBrowser();
    page = await browser.newPage();
    page.setDefaultTimeout(15_000);
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`scenario timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    const value = await Promise.race([
      run({ browser, page, env: process.env, assert, startProvider, onCleanup, log: debug }),
      timeout,
    ]);
    Object.assign(result, { ok: true, result: value ?? null });
  } catch (err) {
    result.error = String(err?.stack ?? err);
    // Where the browser was when it failed: the URL, and a screenshot if asked for.
    try {
      if (page) {
        result.url = page.url();
        if (process.env.BROWSER_SCREENSHOT) {
          await page.screenshot({ path: process.env.BROWSER_SCREENSHOT });
          result.screenshot = process.env.BROWSER_SCREENSHOT;
        }
      }
    } catch { /* the page may be gone */ }
  } finally {
    clearTimeout(timer);
  }
  // Stopping must not hang the run either.
  await Promise.race([cleanup(), new Promise((r) => { setTimeout(r, 10_000).unref(); })]);
  result.ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.ok ? 0 : 1);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv[2]);
}
