#!/usr/bin/env node
'use strict';
// undici marks its decompress interceptor experimental; that note is not for users of this CLI.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name === 'ExperimentalWarning' && /Interceptor/.test(w.message)) return;
  process.stderr.write(`${w.name}: ${w.message}\n`);
});
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
  // Every command has closed what it opened by now; should a library still hold
  // a handle open, do not hang: exit with the command's code shortly after.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
});
