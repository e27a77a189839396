// Prebuilds the workflow bundle (lib/workflow-bundle.js) so workers start without webpack.
'use strict';
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { bundleWorkflowCode } = require('@temporalio/worker');

const silent = { trace() {}, debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m), log() {} };

// Modules evaluated once per worker and shared by every workflow (the reused V8 context),
// instead of once per workflow run: zod and the pure domain modules workflows import
// (src/worker/bundle.ts, shared with workers bundling from source and the benchmarks).
const preloadModules = require('../lib/worker/bundle').workflowPreloadModules();

bundleWorkflowCode({ workflowsPath: require.resolve('../lib/workflows'), logger: silent, preloadModules })
  .then(({ code }) => {
    writeFileSync(join(__dirname, '..', 'lib', 'workflow-bundle.js'), code);
  })
  .catch((err) => {
    console.error(`workflow bundle failed: ${err.message}`);
    process.exit(1);
  });
