/**
 * Names a user types (service and credential ids, registry keys) checked
 * against the names that exist, with a did-you-mean: one function shared by
 * `validate` (registry-parse.ts) and every CLI command and client call that
 * takes an id.
 */
import type { Registry } from './registry';

/**
 * The closest candidate by optimal-string-alignment distance (Levenshtein plus
 * adjacent transpositions), case-insensitive, when it is within a quarter of
 * the word's length (at least 1 edit) and shorter than either word; ties go
 * to the earlier candidate.
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestDist = Math.max(1, Math.floor(word.length / 4)) + 1;
  for (const c of candidates) {
    if (c === word) continue;
    const d = osaDistance(w, c.toLowerCase());
    if (d < bestDist && d < Math.min(word.length, c.length)) {
      bestDist = d;
      best = c;
    }
  }
  return best;
}

function osaDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, (_, i) => Array.from({ length: n + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

export type RegistryIdKind = 'service' | 'credential';

/** What the registry says of one id: whether it is there, else the closest id it has. */
export interface RegistryIdLookup {
  kind: RegistryIdKind;
  id: string;
  known: boolean;
  /** The closest id of that kind, when `known` is false and one is close. */
  suggestion?: string;
  /** How many ids of that kind the registry has. */
  count: number;
  /** The registry's `source` (file) and `versionHash`. */
  source: string;
  registryVersion: string;
}

/** Looks `id` up among the registry's services or credentials. Pure. */
export function lookupRegistryId(registry: Pick<Registry, 'services' | 'credentials' | 'source' | 'versionHash'>, kind: RegistryIdKind, id: string): RegistryIdLookup {
  const ids = (kind === 'service' ? registry.services : registry.credentials).map((x) => x.id);
  const known = ids.includes(id);
  const suggestion = known ? undefined : didYouMean(id, ids);
  return { kind, id, known, ...(suggestion ? { suggestion } : {}), count: ids.length, source: registry.source, registryVersion: registry.versionHash };
}

/** `unknown service "biling-api" in the registry (did you mean "billing-api"?)`, as `validate` words it. */
export function unknownIdMessage(l: Pick<RegistryIdLookup, 'kind' | 'id' | 'suggestion' | 'count' | 'source'>): string {
  const where = l.source ? ` in the registry ${l.source}` : ' in the registry';
  const hint = l.suggestion ? ` (did you mean "${l.suggestion}"?)` : l.count === 0 ? ` (it has no ${l.kind}s)` : '';
  return `unknown ${l.kind} "${l.id}"${where}${hint}`;
}

/**
 * An id the registry does not have. A RangeError, so programs that already
 * catch bad arguments as RangeError catch it too.
 */
export class UnknownIdError extends RangeError {
  readonly kind: RegistryIdKind;
  readonly id: string;
  readonly suggestion?: string;
  constructor(lookup: RegistryIdLookup, advice = '') {
    super(unknownIdMessage(lookup) + advice);
    this.name = 'UnknownIdError';
    this.kind = lookup.kind;
    this.id = lookup.id;
    this.suggestion = lookup.suggestion;
  }
}
