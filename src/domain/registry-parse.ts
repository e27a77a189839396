/**
 * Parsing a registry document (YAML or JSON text) into a validated {@link Registry}.
 * Pure: takes text, returns a value; file I/O lives in the callers.
 *
 * Three passes, and every problem of the pass that fails is reported (not just
 * the first): YAML syntax (tabs, indentation, duplicate keys, with line and
 * column); the schema (types, ranges, durations, URLs, unknown keys with a
 * did-you-mean); references (duplicate ids, unknown services and credentials,
 * an issuer listed as a consumer, dependency cycles). The schema and reference
 * passes run together, so one run reports both kinds.
 */
import { createHash } from 'node:crypto';
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import { findCycles, formatCycle, type GraphNode } from './graph';
import { didYouMean } from './ids';
import { registrySchema, type Registry } from './registry';

/** Re-exported: the did-you-mean lives in ./ids, shared with the CLI's id checks. */
export { didYouMean };

/** One problem found in a registry file. */
export interface RegistryProblem {
  /** Dotted path into the document, e.g. `services[3].dependsOn[0]`; empty for the whole file. */
  path: string;
  message: string;
  /** 1-based line in the source, when known. */
  line?: number;
  /** 1-based column, given for YAML syntax errors. */
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

type Path = ReadonlyArray<string | number>;

function pathToString(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const k of path) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out;
}

/**
 * Parses and validates a registry.
 *
 * Top-level keys starting with `x-` are ignored (a place for YAML anchors, as
 * in Compose files), and `<<` merge keys are honoured.
 *
 * @param text YAML or JSON source (JSON syntax is checked strictly when `source` ends in `.json`).
 * @param source file name used in messages.
 * @returns every problem found, sorted by line, or the registry with its version hash.
 */
export function parseRegistry(text: string, source: string): ParseResult {
  const lineCounter = new LineCounter();
  if (/\.json$/i.test(source)) {
    const problem = jsonSyntaxProblem(text);
    if (problem) return { ok: false, problems: [problem] };
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, merge: true, lineCounter });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const pos = e.pos?.[0];
        const at = pos === undefined ? undefined : lineCounter.linePos(pos);
        let message = e.message.split('\n')[0]!;
        if (e.code === 'DUPLICATE_KEY' && e.pos) message = `duplicate key ${JSON.stringify(keyText(text, e.pos[0]))}: keys in a mapping must be unique`;
        const problem: RegistryProblem = { path: '', message: `invalid YAML: ${message}` };
        if (at) Object.assign(problem, { line: at.line, column: at.col });
        return problem;
      }),
    };
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    return { ok: false, problems: [{ path: '', message: 'the registry is empty: expected a mapping with "services:" and "credentials:"' }] };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    return { ok: false, problems: [{ path: '', message: `invalid YAML: ${(err as Error).message.split('\n')[0]}` }] };
  }
  if (isRecord(raw)) raw = Object.fromEntries(Object.entries(raw).filter(([k]) => !k.startsWith('x-')));

  const locate = locator(doc, lineCounter);
  const problems: RegistryProblem[] = [];
  const parsed = registrySchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(...issueProblems(issue as Issue, locate));
  problems.push(...referenceProblems(raw, locate));
  if (problems.length > 0 || !parsed.success) return { ok: false, problems: sortProblems(problems) };
  return { ok: true, registry: { ...parsed.data, versionHash: registryVersionHash(text), source } };
}

/**
 * JSON.parse's own complaint, with its position as line and column. Duplicate
 * keys, which JSON.parse accepts, are left to the YAML pass.
 */
function jsonSyntaxProblem(text: string): RegistryProblem | undefined {
  try {
    JSON.parse(text);
    return undefined;
  } catch (err) {
    const message = (err as Error).message;
    const m = / in JSON at position (\d+)/.exec(message);
    const problem: RegistryProblem = { path: '', message: `invalid JSON: ${message.replace(/ in JSON at position \d+.*$/, '')}` };
    if (m) {
      const before = text.slice(0, Number(m[1]));
      const lineStart = before.lastIndexOf('\n') + 1;
      Object.assign(problem, { line: before.split('\n').length, column: before.length - lineStart + 1 });
    }
    return problem;
  }
}

/** The key text at a YAML error position (for duplicate-key messages). */
function keyText(text: string, offset: number): string {
  const m = /^(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^:\n,{}[\]]*))/.exec(text.slice(offset, offset + 200));
  return (m?.[1] ?? m?.[2] ?? m?.[3] ?? '').trim();
}

const SLUG = /^[a-z0-9][a-z0-9-]*$/;

/** A string that is a valid id; other values are the schema pass's to report. */
function isId(v: unknown): v is string {
  return typeof v === 'string' && SLUG.test(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sortProblems(problems: (RegistryProblem & { offset?: number })[]): RegistryProblem[] {
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const k = `${p.path}\u0000${p.message}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    })
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.offset ?? Infinity) - (b.p.offset ?? Infinity) || a.i - b.i)
    .map(({ p: { offset: _offset, ...p } }) => p);
}

// ---------------------------------------------------------------- locations

/** `offset` (source position) orders problems on one line; it is dropped from results. */
type Locate = (path: Path, at?: 'key' | 'value') => { line?: number; offset?: number };

/**
 * Maps a document path to a source line: the value's node, or the key's when
 * `at` is `key`; for a path that is absent (a missing key, a merged value), the
 * deepest node that exists.
 */
function locator(doc: Document, lc: LineCounter): Locate {
  return (path, at = 'value') => {
    let node: unknown = doc.contents;
    let best: YamlNode | undefined = node as YamlNode;
    for (let i = 0; i < path.length; i++) {
      const step = path[i]!;
      let next: unknown;
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(step));
        if (pair && at === 'key' && i === path.length - 1) {
          best = pair.key as YamlNode;
          break;
        }
        next = pair?.value;
      } else if (isSeq(node) && typeof step === 'number') {
        next = node.items[step];
      }
      if (!next || typeof next !== 'object' || !('range' in next)) break;
      node = next;
      best = next as YamlNode;
    }
    const offset = best?.range?.[0];
    return offset === undefined ? {} : { line: lc.linePos(offset).line, offset };
  };
}

// ---------------------------------------------------------------- schema issues

/** The parts of a zod issue read here (zod 4 issue shapes). */
interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  input?: unknown;
  keys?: string[];
  expected?: string;
  minimum?: number | bigint;
  maximum?: number | bigint;
  inclusive?: boolean;
  origin?: string;
  values?: unknown[];
  format?: string;
  prefix?: string;
}

/** zod's own default messages, replaced by ours; messages written in the schema are kept. */
const ZOD_DEFAULT = /^(Too small|Too big|Invalid input|Invalid option|Invalid string|Invalid|Unrecognized key)/;

function issueProblems(issue: Issue, locate: Locate): RegistryProblem[] {
  const path = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(path);
    return (issue.keys ?? []).map((key) => ({
      path: pathToString([...path, key]),
      message: unknownKeyMessage(key, known),
      ...locate([...path, key], 'key'),
    }));
  }
  const last = path[path.length - 1];
  // An absent key reaches zod as `undefined` (YAML and JSON have no undefined values).
  if (issue.input === undefined && typeof last === 'string' && issue.code !== 'custom') {
    const parent = path.slice(0, -1);
    return [{ path: pathToString(parent), message: `missing required key "${last}"`, ...locate(parent) }];
  }
  return [{ path: pathToString(path), message: issueMessage(issue, path), ...locate(path) }];
}

function issueMessage(issue: Issue, path: Path): string {
  const got = `got ${describeValue(issue.input)}`;
  if (!ZOD_DEFAULT.test(issue.message)) {
    // A message written in the schema; add the value when it is a short scalar and not named already.
    const scalar = issue.input === null || ['string', 'number', 'boolean'].includes(typeof issue.input);
    return scalar && issue.message.startsWith('must') ? `${issue.message}, ${got}` : issue.message;
  }
  switch (issue.code) {
    case 'invalid_type':
      if (path.length === 0) return `the registry must be a mapping with "services:" and "credentials:", ${got}`;
      return `expected ${describeType(issue.expected ?? 'value')}, ${got}`;
    case 'too_small':
    case 'too_big': {
      const small = issue.code === 'too_small';
      const bound = Number(small ? issue.minimum : issue.maximum);
      if (issue.origin === 'array') {
        return small ? `must have at least ${bound} item${bound === 1 ? '' : 's'}, got ${countOf(issue.input)}` : `must have at most ${bound} items, got ${countOf(issue.input)}`;
      }
      if (issue.origin === 'string') {
        return small ? (bound === 1 ? 'must not be empty' : `must be at least ${bound} characters`) : `must be at most ${bound} characters`;
      }
      const op = small ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
      return `must be ${op} ${bound}, ${got}`;
    }
    case 'invalid_value': {
      const values = (issue.values ?? []).map(String);
      const hint = typeof issue.input === 'string' ? didYouMean(issue.input, values) : undefined;
      return `must be one of ${values.join(', ')}; ${got}${hint ? ` (did you mean "${hint}"?)` : ''}`;
    }
    case 'invalid_format':
      if (issue.format === 'starts_with') return `must start with "${issue.prefix}", ${got}`;
      return `has an invalid format, ${got}`;
    default:
      return `${issue.message}, ${got}`;
  }
}

function countOf(v: unknown): number {
  return Array.isArray(v) ? v.length : 0;
}

function describeType(expected: string): string {
  const names: Record<string, string> = {
    object: 'a mapping',
    record: 'a mapping',
    array: 'a list',
    string: 'a string',
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
  };
  return names[expected] ?? expected;
}

function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return String(v);
}

/** Keys the schema allows at `path` (for did-you-mean), by walking zod's definitions. */
function knownKeysAt(path: Path): string[] {
  let schema: unknown = registrySchema;
  for (const step of path) {
    schema = unwrap(schema);
    const def = defOf(schema);
    if (def?.type === 'array' && typeof step === 'number') schema = def.element;
    else if (def?.type === 'object' && typeof step === 'string') schema = (def.shape as Record<string, unknown>)[step];
    else return [];
  }
  const def = defOf(unwrap(schema));
  return def?.type === 'object' ? Object.keys(def.shape as object) : [];
}

function defOf(schema: unknown): Record<string, unknown> | undefined {
  return (schema as { _zod?: { def?: Record<string, unknown> } } | undefined)?._zod?.def;
}

function unwrap(schema: unknown): unknown {
  for (let i = 0; i < 20; i++) {
    const def = defOf(schema);
    if (!def) return schema;
    if (['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch', 'nonoptional'].includes(def.type as string)) schema = def.innerType;
    else if (def.type === 'pipe') schema = def.in;
    else return schema;
  }
  return schema;
}

function unknownKeyMessage(key: string, known: string[]): string {
  const hint = didYouMean(key, known);
  if (hint) return `unknown key "${key}" (did you mean "${hint}"?)`;
  return known.length > 0 ? `unknown key "${key}": expected one of ${known.join(', ')}` : `unknown key "${key}"`;
}

// ---------------------------------------------------------------- references

/**
 * Cross-references, read from the raw document so they are checked even when
 * the schema pass found problems elsewhere: duplicate ids, unknown services in
 * `dependsOn` and `issuer`/`consumers`, unknown credentials, an issuer listed
 * as a consumer, repeated entries, and dependency cycles.
 */
function referenceProblems(raw: unknown, locate: Locate): RegistryProblem[] {
  if (!isRecord(raw)) return [];
  const services = Array.isArray(raw.services) ? raw.services : [];
  const credentials = Array.isArray(raw.credentials) ? raw.credentials : [];
  const problems: RegistryProblem[] = [];
  const at = (path: Path, message: string) => problems.push({ path: pathToString(path), message, ...locate(path) });

  const serviceAt = indexIds(services, 'services', 'service', at, locate);
  const credentialAt = indexIds(credentials, 'credentials', 'credential', at, locate);
  const serviceIds = [...serviceAt.keys()];
  const credentialIds = [...credentialAt.keys()];
  const unknown = (kind: string, id: string, known: string[]) => {
    const hint = didYouMean(id, known);
    return `unknown ${kind} "${id}"${hint ? ` (did you mean "${hint}"?)` : ''}`;
  };

  const graph: GraphNode[] = [];
  services.forEach((s, i) => {
    if (!isRecord(s)) return;
    const own = typeof s.id === 'string' ? s.id : undefined;
    const deps = Array.isArray(s.dependsOn) ? s.dependsOn : [];
    const seen = new Set<string>();
    deps.forEach((d, j) => {
      if (!isId(d)) return;
      if (seen.has(d)) at(['services', i, 'dependsOn', j], `"${d}" is listed twice`);
      seen.add(d);
      if (d !== own && !serviceAt.has(d)) at(['services', i, 'dependsOn', j], unknown('service', d, serviceIds));
    });
    if (isId(s.credential) && !credentialAt.has(s.credential)) {
      at(['services', i, 'credential'], unknown('credential', s.credential, credentialIds));
    }
    if (own !== undefined && serviceAt.get(own) === i) graph.push({ id: own, dependsOn: deps.filter((d): d is string => typeof d === 'string') });
  });

  credentials.forEach((c, k) => {
    if (!isRecord(c)) return;
    const issuer = isId(c.issuer) ? c.issuer : undefined;
    if (issuer !== undefined && !serviceAt.has(issuer)) at(['credentials', k, 'issuer'], unknown('service', issuer, serviceIds));
    const consumers = Array.isArray(c.consumers) ? c.consumers : [];
    const seen = new Set<string>();
    consumers.forEach((id, m) => {
      if (!isId(id)) return;
      const path = ['credentials', k, 'consumers', m];
      if (seen.has(id)) at(path, `"${id}" is listed twice`);
      seen.add(id);
      if (id === issuer) at(path, `"${id}" is the issuer of credential "${String(c.id)}" and cannot also be its consumer`);
      else if (!serviceAt.has(id)) at(path, unknown('service', id, serviceIds));
    });
  });

  for (const cycle of findCycles(graph)) {
    // Point at the edge that closes the cycle: the last service's dependsOn entry naming the first.
    const from = cycle[cycle.length - 2]!;
    const i = serviceAt.get(from)!;
    const deps = (services[i] as Record<string, unknown>).dependsOn as unknown[];
    at(['services', i, 'dependsOn', deps.indexOf(cycle[0])], formatCycle(cycle));
  }
  return problems;
}

/** id -> index of its first definition; reports later duplicates. */
function indexIds(
  items: unknown[],
  key: 'services' | 'credentials',
  kind: string,
  at: (path: Path, message: string) => void,
  locate: Locate,
): Map<string, number> {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    if (!isRecord(item) || typeof item.id !== 'string') return;
    const j = first.get(item.id);
    if (j === undefined) {
      first.set(item.id, i);
      return;
    }
    const line = locate([key, j, 'id']).line;
    at([key, i, 'id'], `duplicate ${kind} id "${item.id}" (first defined at ${key}[${j}]${line ? `, line ${line}` : ''})`);
  });
  return first;
}
