// The published shape of both packages: ESM and CommonJS entries load,
// declarations exist and use no `any`, and nothing but React (a peer) is a
// runtime dependency.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../packages');
const require = createRequire(import.meta.url);

for (const name of ['client', 'react']) {
  test(`@firegate/${name}: ESM, CJS and .d.ts entries, no any in public types, no runtime dependencies`, async () => {
    const pkg = JSON.parse(readFileSync(path.join(root, name, 'package.json'), 'utf8'));
    const exp = pkg.exports['.'];
    const esm = await import(path.join(root, name, exp.import));
    const cjs = require(path.join(root, name, exp.require));
    const api = name === 'client' ? ['createClient', 'collection', 'doc', 'Timestamp', 'FiregateError'] : ['FiregateProvider', 'useCollection', 'useDocument', 'useWrite'];
    for (const fn of api) {
      assert.equal(typeof esm[fn], 'function', `ESM ${fn}`);
      assert.equal(typeof cjs[fn], 'function', `CJS ${fn}`);
    }
    const typesDir = path.dirname(path.join(root, name, exp.types));
    const dts = readdirSync(typesDir).filter((f) => f.endsWith('.d.ts'));
    assert.ok(dts.includes('index.d.ts'));
    for (const f of dts) {
      const code = readFileSync(path.join(typesDir, f), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '').replace(/'[^'\n]*'|"[^"\n]*"/g, "''");
      assert.doesNotMatch(code, /\bany\b/, `${f} uses any`);
    }
    const deps = Object.keys(pkg.dependencies ?? {});
    assert.deepEqual(deps, name === 'client' ? [] : ['@firegate/client']);
    if (name === 'react') assert.ok(pkg.peerDependencies.react);
  });
}
