#!/usr/bin/env node
// A solc-compatible command line over solc-js, for py-solc-x's compile_standard.
//
// The solcjs CLI shipped with the npm package prints a line before the JSON and
// rejects --allow-paths, so py-solc-x cannot drive it. This shim answers the two
// calls py-solc-x makes:
//   solcjs-shim --version
//   solcjs-shim --standard-json [--base-path P] [--include-path P]... [--allow-paths P,Q]
// and prints only what solc itself would print. Imports are resolved against the
// base path and include paths, and only inside the allowed paths.
'use strict';
const fs = require('fs');
const path = require('path');

function loadSolc() {
  const candidates = [
    process.env.PROVENANCE_SOLCJS,
    path.resolve(__dirname, '..', '.tools', 'npm', 'node_modules', 'solc'),
    // when invoked through the .tools/bin symlink
    path.resolve(path.dirname(fs.realpathSync(process.argv[1])), '..', '.tools', 'npm', 'node_modules', 'solc'),
  ].filter(Boolean);
  for (const c of candidates) {
    if (fs.existsSync(path.join(c, 'package.json'))) return require(c);
  }
  process.stderr.write(`solcjs-shim: solc-js not found (looked in ${candidates.join(', ')}); run scripts/setup.sh\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = { includePaths: [], allowPaths: [], basePath: null, mode: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`option ${a} needs a value`);
      return argv[++i];
    };
    if (a === '--version') opts.mode = 'version';
    else if (a === '--standard-json') opts.mode = 'standard-json';
    else if (a === '--base-path') opts.basePath = value();
    else if (a === '--include-path') opts.includePaths.push(value());
    else if (a === '--allow-paths') opts.allowPaths.push(...value().split(',').filter(Boolean));
    else throw new Error(`unsupported option ${a}`);
  }
  return opts;
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`solcjs-shim: ${e.message}\n`);
    process.exit(2);
  }
  const solc = loadSolc();
  if (opts.mode === 'version') {
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return;
  }
  if (opts.mode !== 'standard-json') {
    process.stderr.write('solcjs-shim: give --version or --standard-json\n');
    process.exit(2);
  }
  const base = path.resolve(opts.basePath || process.cwd());
  const roots = [base, ...opts.includePaths.map((p) => path.resolve(base, p))];
  const allowed = [base, ...roots, ...opts.allowPaths.map((p) => path.resolve(base, p))];
  const inside = (file) => allowed.some((dir) => file === dir || file.startsWith(dir + path.sep));

  function findImports(unitName) {
    for (const root of roots) {
      const file = path.resolve(root, unitName);
      if (!inside(file)) continue;
      if (fs.existsSync(file)) return { contents: fs.readFileSync(file, 'utf8') };
    }
    return { error: `File not found inside the base path or any include path: ${unitName}` };
  }

  const input = fs.readFileSync(0, 'utf8');
  process.stdout.write(solc.compile(input, { import: findImports }));
}

main();
