/**
 * Parsing a registry document (YAML or JSON text) into a validated {@link Registry}.
 * Pure: takes text, returns a value; file I/O lives in the callers.
 */
import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import { registrySchema, type Registry } from './registry';

/** One problem found in a registry file. */
export interface RegistryProblem {
  /** Dotted path into the document, e.g. `services[3].dependsOn[0]`; empty for the whole file. */
  path: string;
  message: string;
  /** 1-based line in the source, when known. */
  line?: number;
  column?: number;
}

export type ParseResult = { ok: true; registry: Registry } | { ok: false; problems: RegistryProblem[] };

/** Thrown by loaders when a registry is invalid; `message` lists every problem, one per line. */
export class RegistryValidationError extends Error {
  constructor(
    readonly source: string,
    readonly problems: RegistryProblem[],
  ) {
    super(`${source}: ${problems.length} problem(s) in registry\n` + problems.map((p) => formatProblem(p, source)).join('\n'));
    this.name = 'RegistryValidationError';
  }
}

/** `services[3].dependsOn[0]: unknown service "billing-db" (services.yaml:42)` */
export function formatProblem(p: RegistryProblem, source: string): string {
  const where = p.line ? ` (${source}:${p.line}${p.column ? `:${p.column}` : ''})` : ` (${source})`;
  return `${p.path ? `${p.path}: ` : ''}${p.message}${where}`;
}

/** sha256 of the text, hex, first 16 characters: the registry's version. */
export function registryVersionHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function pathToString(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const k of path) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out;
}

/**
 * Parses and validates a registry.
 *
 * @param text YAML or JSON source.
 * @param source file name used in messages.
 * @returns every problem found (not just the first), or the registry with its version hash.
 */
export function parseRegistry(text: string, source: string): ParseResult {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  const lineOf = (offset: number | undefined): { line?: number; column?: number } => {
    if (offset === undefined) return {};
    let line = 1;
    let last = -1;
    for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) { line++; last = i; }
    return { line, column: offset - last };
  };
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => ({ path: '', message: e.message.split('\n')[0]!, ...lineOf(e.pos?.[0]) })),
    };
  }
  const raw = doc.toJS() ?? {};
  const parsed = registrySchema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.map((i) => {
        const node = doc.getIn(i.path as (string | number)[], true) as { range?: [number, number, number] } | undefined;
        return { path: pathToString(i.path), message: i.message, ...lineOf(node?.range?.[0]) };
      }),
    };
  }
  return { ok: true, registry: { ...parsed.data, versionHash: registryVersionHash(text), source } };
}
