/** The CLI from source (no build needed), for tests that spawn it: `node --require tsx/cjs test/helpers/cli-entry.ts ARGS`. */
import { main } from '../../src/client/cli/main';

void main(process.argv);
