// Headless Debian chromium (/usr/bin/chromium) driven by playwright-core:
// no browser is downloaded. Each context gets a fresh --user-data-dir.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let shotDir = null;

/**
 * Runs fn(ctx) in a fresh browser profile; on failure saves a screenshot
 * of every open page to a temp dir and prints its path.
 */
export async function withBrowser(name, fn) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'firegate-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: ARGS });
  const logs = [];
  ctx.on('page', (p) => {
    p.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
    p.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  });
  try {
    await fn(ctx);
  } catch (err) {
    shotDir ??= mkdtempSync(path.join(os.tmpdir(), 'firegate-screenshots-'));
    const pages = ctx.pages();
    for (let i = 0; i < pages.length; i++) {
      const file = path.join(shotDir, `${name.replace(/[^a-z0-9]+/gi, '-')}-${i}.png`);
      try {
        await pages[i].screenshot({ path: file, fullPage: true });
        console.error(`screenshot: ${file}`);
      } catch (e) {
        console.error(`screenshot of page ${i} failed: ${e.message}`);
      }
    }
    if (logs.length) console.error(`browser console:\n${logs.slice(-50).join('\n')}`);
    throw err;
  } finally {
    await ctx.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
