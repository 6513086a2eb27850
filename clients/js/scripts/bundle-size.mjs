// Measures a package's browser bundle: esbuild (bundle, minify, ESM,
// es2020, browser) then gzip -9. Usage:
//   node scripts/bundle-size.mjs                     @firegate/client
//   node scripts/bundle-size.mjs <entry file> <name> anything else (e.g. centrifuge, installed in a temp dir)
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = process.argv[2] ?? path.join(here, '../packages/client/src/index.ts');
const name = process.argv[3] ?? '@firegate/client';
const res = await build({ entryPoints: [entry], bundle: true, minify: true, format: 'esm', target: 'es2020', platform: 'browser', write: false, legalComments: 'none', logLevel: 'warning' });
const min = res.outputFiles[0].contents;
const gz = gzipSync(min, { level: 9 });
console.log(`${name}: ${min.length} bytes minified, ${gz.length} bytes minified+gzip`);
