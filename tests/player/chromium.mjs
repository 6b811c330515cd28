// The browser of the page tests (playpage.mjs, library.mjs): Debian's Chromium, headless, with
// one set of flags, in a throw-away profile; and their command-line parsing.

import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

// Launches Chromium in a fresh profile (`prefix` + random under the temp directory) within
// `timeoutMs`; returns its context, first page and `close` (closes it, removes the profile).
export async function launch(prefix, timeoutMs) {
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const removeProfile = () => rm(userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: timeoutMs,
    });
  } catch (e) {
    await removeProfile();
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const close = async () => {
    try {
      await context.close();
    } finally {
      await removeProfile();
    }
  };
  return { context, page, close };
}

// parseArgs (strict) of `options`, or exit 2 with `usage` (`script: why` first); `-h` prints it.
export function parseOrExit(script, usage, options) {
  const fail = (msg) => {
    if (msg) console.error(`${script}: ${msg}`);
    console.error(usage);
    process.exit(2);
  };
  let values;
  try {
    values = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h', default: false } }, strict: true }).values;
  } catch (e) {
    fail(e.message);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  return { opts: values, usage: fail };
}

// Runs `fns` last first, logging (with `log`) and going past the ones that throw.
export async function runCleanups(fns, log) {
  for (const fn of fns.reverse()) {
    try {
      await fn();
    } catch (e) {
      log(`cleanup: ${e.message}`);
    }
  }
}
