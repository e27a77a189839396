/**
 * Durations as written in the registry and on the command line: an integer or
 * decimal followed by a unit, `500ms`, `30s`, `5m`, `1h`, `7d`. Compound forms
 * such as `1h30m` are accepted. Parsed once at the edge into milliseconds.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

/**
 * Parses a duration string into milliseconds.
 *
 * @param text e.g. `"30s"`, `"1h30m"`, `"500ms"`.
 * @returns whole milliseconds (rounded), always finite and >= 0.
 * @throws RangeError naming the value and the accepted forms when `text` is not a duration.
 */
export function parseDuration(text: string): number {
  const ms = tryParseDuration(text);
  if (ms === undefined) {
    throw new RangeError(`invalid duration "${text}": use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 7d`);
  }
  return ms;
}

/** Like {@link parseDuration} but returns `undefined` instead of throwing. */
export function tryParseDuration(text: string): number | undefined {
  if (typeof text !== 'string') return undefined;
  const s = text.trim();
  if (s.length === 0) return undefined;
  PART.lastIndex = 0;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = PART.lastIndex;
  }
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

/** Formats milliseconds as the shortest exact duration string (`90000` -> `"1m30s"`). */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`formatDuration: expected a finite ms >= 0, got ${ms}`);
  if (ms === 0) return '0ms';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000], ['ms', 1]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
