// Builds the demo into dist/: bundles src/main.js (with socket.io-client and
// the always-online client) into dist/demo.js and copies the static files.
'use strict';
const fs = require('fs');
const path = require('path');
const esbuild = require('esbuild');

const src = path.join(__dirname, 'src');
const dist = path.join(__dirname, 'dist');

fs.mkdirSync(dist, { recursive: true });
esbuild.buildSync({
  entryPoints: [path.join(src, 'main.js')],
  outfile: path.join(dist, 'demo.js'),
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  logLevel: 'warning',
});
for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(src, f), path.join(dist, f));
console.log('built', path.relative(process.cwd(), dist) || '.');
