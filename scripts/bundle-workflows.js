// Prebuilds the workflow bundle (lib/workflow-bundle.js) so workers start without webpack.
'use strict';
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { bundleWorkflowCode } = require('@temporalio/worker');

const silent = { trace() {}, debug() {}, info() {}, warn: (m) => console.warn(m), error: (m) => console.error(m), log() {} };

bundleWorkflowCode({ workflowsPath: require.resolve('../lib/workflows'), logger: silent })
  .then(({ code }) => {
    writeFileSync(join(__dirname, '..', 'lib', 'workflow-bundle.js'), code);
  })
  .catch((err) => {
    console.error(`workflow bundle failed: ${err.message}`);
    process.exit(1);
  });
