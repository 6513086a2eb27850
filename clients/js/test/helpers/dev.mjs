// Starts a real `firegate dev` (Google's Firestore emulator, the dev token
// issuer, seeded demo data) on free loopback ports, for integration and
// browser tests. The binary is built once per process into a temp dir (or
// taken from FIREGATE_BIN, which scripts/test-js.sh sets).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

let built = null;
function binary() {
  if (process.env.FIREGATE_BIN) return process.env.FIREGATE_BIN;
  if (!built) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'firegate-bin-'));
    built = path.join(dir, 'firegate');
    execFileSync('go', ['build', '-o', built, './cmd/firegate'], { cwd: repo, stdio: 'inherit' });
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return built;
}

/** Polls cond (which returns a truthy value or throws) until it succeeds or ms pass. */
export async function waitFor(cond, what, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
      last = new Error('condition false');
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}: ${last?.message ?? last}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Starts firegate dev; returns {base, ws, admin, token(user, org, ttl), metric(name), docs: {create, patch, remove}, stop()}.
 */
export async function startDev() {
  const proc = spawn(binary(), ['dev', '--addr', '127.0.0.1:0', '--admin-addr', '127.0.0.1:0', '--drain-timeout', '1s'], {
    env: { ...process.env, FIRESTORE_EMULATOR_HOST: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (b) => (out += b));
  proc.stderr.on('data', (b) => (err += b));
  const exited = new Promise((r) => proc.on('exit', r));
  const killer = () => proc.kill('SIGKILL');
  process.on('exit', killer);
  const banner = await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`firegate dev exited ${proc.exitCode}:\n${out}\n${err}`);
    const page = /demo page:\s+(http:\/\/\S+)\//.exec(out);
    const admin = /admin:\s+(http:\/\/\S+)\/metrics/.exec(out);
    return page && admin ? { base: page[1], admin: admin[1] } : null;
  }, 'the firegate dev banner', 120000);
  const { base, admin } = banner;
  await waitFor(async () => (await fetch(`${base}/readyz`)).ok, '/readyz', 60000);
  const json = async (res) => {
    const body = await res.text();
    if (!res.ok) throw new Error(`${res.status} ${body}`);
    return body ? JSON.parse(body) : null;
  };
  const docURL = (p) => `${base}/dev/docs/${p.split('/').map(encodeURIComponent).join('/')}`;
  return {
    base,
    admin,
    ws: base.replace(/^http/, 'ws') + '/v1/stream',
    async token(user, org, ttl = '5m') {
      const q = new URLSearchParams({ user, ttl });
      if (org) q.set('org', org);
      return (await json(await fetch(`${base}/dev/token?${q}`))).token;
    },
    async metric(name) {
      const text = await (await fetch(`${admin}/metrics`)).text();
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : NaN;
    },
    docs: {
      create: async (col, data) => json(await fetch(docURL(col), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) })),
      patch: async (p, data) => json(await fetch(docURL(p), { method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) })),
      remove: async (p) => json(await fetch(docURL(p), { method: 'DELETE' })),
    },
    output: () => out + err,
    async stop() {
      process.off('exit', killer);
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * A TCP proxy on a free loopback port: cut() drops every connection (a
 * network failure as the client sees it); while paused, new connections
 * are refused.
 */
export async function startProxy(target) {
  const url = new URL(target);
  const sockets = new Set();
  let paused = false;
  const server = net.createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(url.port), url.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    url: `ws://127.0.0.1:${port}/v1/stream`,
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
    },
    connections: () => sockets.size / 2,
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(r);
    }),
  };
}
