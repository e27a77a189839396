// Prints the path of a Temporal CLI, building it with `go install` into .cache/bin when none is found.
'use strict';
require('tsx/cjs');
const { resolveTemporalCli, temporalCliVersion } = require('../src/dev/temporal-cli.ts');
try {
  const path = resolveTemporalCli();
  process.stdout.write(`${path}\n`);
  process.stderr.write(`${temporalCliVersion(path).split('\n')[0]}\n`);
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
}
