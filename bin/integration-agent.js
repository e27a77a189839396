#!/usr/bin/env node
'use strict';
let cli;
try {
  cli = require('../lib/client/cli/main');
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes('lib/client/cli/main')) {
    process.stderr.write('integration-agent: not built yet; run `npm run build` first\n');
    process.exit(1);
  }
  throw err;
}
cli.main(process.argv).then(() => {
  // Commands that leave nothing running let the process end by itself.
});
