/**
 * A real headless Chromium for UI tests: Debian's `/usr/bin/chromium` (or
 * `CHROMIUM_PATH`) driven by playwright-core, never a downloaded browser, with
 * a fresh profile and no network of its own beyond what the page asks for.
 */
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The flags every UI test launches Chromium with (no sandbox: tests may run as root in containers). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches Chromium with a fresh `--user-data-dir`; `close()` ends it and removes the profile.
 * @throws Error saying to run scripts/setup-system.sh when the browser is not installed (the test fails; it never skips).
 */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  try {
    accessSync(CHROMIUM_PATH, constants.X_OK);
  } catch {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}: run \`bash scripts/setup-system.sh\` (installs Debian's chromium package; CI runs it), or set CHROMIUM_PATH to a Chromium binary`,
    );
  }
  const profile = mkdtempSync(join(tmpdir(), 'ia-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
