/**
 * Finds a Temporal CLI binary without downloading anything at run time, in
 * this order: `TEMPORAL_CLI_PATH`; `temporal` on PATH; the project-local cache
 * `.cache/bin/temporal` (gitignored); else it builds one with
 * `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` into that cache.
 * v1.5.1 is the last release that can be go-installed (later go.mod files carry
 * a replace directive) and it embeds the Web UI.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

/** Project root: the folder holding package.json (works from src/ and lib/). */
export const PROJECT_ROOT = resolve(__dirname, '..', '..');
export const CLI_CACHE_DIR = join(PROJECT_ROOT, '.cache', 'bin');

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

export class TemporalCliNotFoundError extends Error {
  constructor(detail: string) {
    super(
      `cannot find or build the Temporal CLI (${detail}). Install Go (https://go.dev/dl) so that ` +
        `'go install ${TEMPORAL_CLI_MODULE}' can run, or install the Temporal CLI yourself and set TEMPORAL_CLI_PATH to it.`,
    );
    this.name = 'TemporalCliNotFoundError';
  }
}

/** The Go toolchain's `go`: `$GOROOT/bin/go`, else `go` on PATH, else `/usr/local/go/bin/go`; undefined when none. */
export function findGo(): string | undefined {
  if (process.env.GOROOT && existsSync(join(process.env.GOROOT, 'bin', 'go'))) return join(process.env.GOROOT, 'bin', 'go');
  return onPath('go') ?? (isExecutable('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
}

/**
 * Returns the path of a usable `temporal` binary, building it with Go when
 * nothing else is found (takes a few minutes the first time; progress goes to stderr).
 *
 * @param opts.build set false to only look, never build.
 * @throws TemporalCliNotFoundError saying what to install.
 */
export function resolveTemporalCli(opts: { build?: boolean; log?: (msg: string) => void } = {}): string {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new TemporalCliNotFoundError(`TEMPORAL_CLI_PATH=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const found = onPath('temporal');
  if (found) return found;
  const cached = join(CLI_CACHE_DIR, 'temporal');
  if (isExecutable(cached)) return cached;
  if (opts.build === false) throw new TemporalCliNotFoundError('not in TEMPORAL_CLI_PATH, on PATH, or in .cache/bin');
  const go = findGo();
  if (!go) throw new TemporalCliNotFoundError('no temporal binary and no Go toolchain to build one');
  mkdirSync(CLI_CACHE_DIR, { recursive: true });
  log(`building the Temporal CLI: go install ${TEMPORAL_CLI_MODULE} (first run only; a few minutes)`);
  const r = spawnSync(go, ['install', TEMPORAL_CLI_MODULE], {
    env: { ...process.env, GOBIN: CLI_CACHE_DIR, CGO_ENABLED: process.env.CGO_ENABLED ?? '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0 || !isExecutable(cached)) throw new TemporalCliNotFoundError(`go install exited with ${r.status ?? r.signal}`);
  return cached;
}

/** The version line the binary prints, for diagnostics. */
export function temporalCliVersion(path: string): string {
  return execFileSync(path, ['--version'], { encoding: 'utf8' }).trim();
}
