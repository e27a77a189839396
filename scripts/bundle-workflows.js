// Prebuilds the workflow bundle (lib/workflow-bundle.js) so workers start without webpack.
'use strict';
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { bundleWorkflowCode } = require('@temporalio/worker');

const silent = { trace() {}, debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m), log() {} };

// Modules evaluated once per worker and shared by every workflow (the reused V8 context),
// instead of once per cached workflow: zod and the pure domain modules workflows import.
// They hold no per-workflow state (no module-level mutable values: checked in review).
const preloadModules = ['zod', ...['health', 'health-shard', 'registry', 'graph', 'breaker', 'make'].map((m) => require.resolve(`../lib/domain/${m}`))];

bundleWorkflowCode({ workflowsPath: require.resolve('../lib/workflows'), logger: silent, preloadModules })
  .then(({ code }) => {
    writeFileSync(join(__dirname, '..', 'lib', 'workflow-bundle.js'), code);
  })
  .catch((err) => {
    console.error(`workflow bundle failed: ${err.message}`);
    process.exit(1);
  });
