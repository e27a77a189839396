/**
 * Every committed history under test/histories/ replays against the current
 * workflow code; a nondeterminism (a change that needed `patched`) fails here.
 * Histories captured through the payload codec use the fixture key in
 * test/histories/codec.keys (a test key, not a deployment secret).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { AesGcmCodec } from '../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../src/codec/keys';
import { workflowSource } from './helpers/temporal';

const dir = join(__dirname, 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

test('there are committed histories to replay', () => {
  expect(files.length).toBeGreaterThan(0);
});

test.each(files)('%s replays without nondeterminism', async (file) => {
  const keys = parseCodecKeys(readFileSync(join(dir, 'codec.keys'), 'utf8'), 'test/histories/codec.keys');
  const raw = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { workflowId?: string; history?: unknown; events?: unknown };
  // Files are either a bare history ({ events: [...] }) or { workflowId, history }.
  const history = raw.history ?? raw;
  const workflowId = raw.workflowId ?? file.replace(/\.json$/, '');
  await Worker.runReplayHistory({ ...workflowSource(), dataConverter: { payloadCodecs: [new AesGcmCodec(keys)] } }, history, workflowId);
});

test('histories captured through the payload codec hold ciphertext only (search attributes stay plain: the server indexes them)', () => {
  const encrypted = Buffer.from('binary/encrypted').toString('base64');
  const encodings: string[] = [];
  const walk = (o: unknown): void => {
    if (Array.isArray(o)) return o.forEach(walk);
    if (!o || typeof o !== 'object') return;
    for (const [k, v] of Object.entries(o)) {
      if (k === 'searchAttributes') continue;
      if (k === 'metadata' && v && typeof (v as { encoding?: unknown }).encoding === 'string') encodings.push((v as { encoding: string }).encoding);
      walk(v);
    }
  };
  for (const file of files.filter((f) => f.startsWith('dev-'))) walk(JSON.parse(readFileSync(join(dir, file), 'utf8')));
  expect(encodings.length).toBeGreaterThan(0);
  expect(new Set(encodings)).toEqual(new Set([encrypted]));
});
