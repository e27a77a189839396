/**
 * `integration-agent codec-server`: the Temporal codec server protocol
 * (POST /encode and /decode with `{ payloads: [...] }`, JSON-protobuf form)
 * so the Web UI and the Temporal CLI can show decrypted payloads to authorised users.
 *
 * In production it requires `CODEC_SERVER_TOKEN` on every request (a reverse
 * proxy in front of the UI adds it for authenticated users, docs/web-ui.md).
 * `--trust-local-ui PORT` is the `dev` mode: the loopback dev UI on PORT may
 * decode without a token.
 */
import type { Command } from 'commander';
import { loadConfig } from '../../../worker/config';
import { loadCodecKeys } from '../../../codec/keys';
import { AesGcmCodec } from '../../../codec/aes-gcm-codec';
import { loopbackUiOrigins, parseOrigin, startCodecServer } from '../../../codec/server';
import { CliError, emit } from '../context';

const DEFAULT_UI_ORIGINS = ['http://localhost:8233', 'http://127.0.0.1:8233'];

/** commander collector: `--ui-origin a --ui-origin b,c` gives `[a, b, c]`, each checked to be an origin. */
function collectOrigins(value: string, previous: string[] | undefined): string[] {
  const more = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((o) => {
      try {
        return parseOrigin(o, '--ui-origin');
      } catch (err) {
        throw new CliError((err as Error).message);
      }
    });
  return [...(previous ?? []), ...more];
}

/** Splits `host:port` / `[v6]:port`; throws a CliError naming the option when malformed. */
function parseListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(listen.slice(at + 1));
  if (at <= 0 || !host || !Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--listen: "${listen}" is not host:port (e.g. 127.0.0.1:8888; port 0 picks a free one)`);
  return { host, port };
}

/** Registers `codec-server` on the program. */
/** Shortest CODEC_SERVER_TOKEN accepted: 16 characters (`openssl rand -hex 32` gives 64). */
const MIN_TOKEN_LENGTH = 16;

export function register(program: Command): void {
  program
    .command('codec-server')
    .description('serve /encode and /decode for the Temporal Web UI and CLI (bearer token; CORS for the UI origins)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8888')
    .option('--ui-origin <origins>', `Web UI origin allowed by CORS; repeat it or give a comma list (default ${DEFAULT_UI_ORIGINS.join(',')})`, collectOrigins)
    .option('--trust-local-ui <port>', 'let the loopback dev Web UI on this port (http://127.0.0.1:PORT, http://localhost:PORT) decode without a token; needs a loopback --listen', (v) => Number.parseInt(v, 10))
    .option('--json', 'print the address as JSON')
    .action(async (opts: { listen: string; uiOrigin?: string[]; trustLocalUi?: number; json?: boolean }) => {
      const token = process.env.CODEC_SERVER_TOKEN || undefined;
      let trusted: string[] = [];
      if (opts.trustLocalUi !== undefined) {
        try {
          trusted = loopbackUiOrigins(opts.trustLocalUi);
        } catch {
          throw new CliError(`--trust-local-ui: expected the dev Web UI's port (1-65535), got ${String(opts.trustLocalUi)}`);
        }
      }
      if (!token && trusted.length === 0) {
        throw new CliError(
          'set CODEC_SERVER_TOKEN (e.g. export CODEC_SERVER_TOKEN="$(openssl rand -hex 32)"): every request must carry "Authorization: Bearer <token>" — the Temporal CLI sends it with --codec-auth, and a Web UI needs a reverse proxy that authenticates users and adds the header (docs/web-ui.md); browsers cannot send it themselves',
        );
      }
      // A short token can be guessed; its value is never printed, only its length.
      if (token && token.length < MIN_TOKEN_LENGTH) {
        throw new CliError(
          `CODEC_SERVER_TOKEN is ${token.length} characters long; use at least ${MIN_TOKEN_LENGTH} random characters (e.g. export CODEC_SERVER_TOKEN="$(openssl rand -hex 32)")`,
        );
      }
      const { host, port } = parseListen(opts.listen);
      const allowedOrigins = opts.uiOrigin ?? (trusted.length ? [] : DEFAULT_UI_ORIGINS);
      const config = loadConfig();
      let server;
      try {
        server = await startCodecServer({
          codec: new AesGcmCodec(loadCodecKeys(config.dataDir)),
          host,
          port,
          token,
          allowedOrigins,
          trustedDecodeOrigins: trusted,
        });
      } catch (err) {
        if (err instanceof RangeError) throw new CliError(err.message);
        throw err;
      }
      const cors = [...trusted, ...allowedOrigins];
      const report = { url: server.url, pid: process.pid, corsOrigins: cors, tokenRequired: trusted.length === 0 };
      // Started by `dev`: hand the address over the IPC channel, and stop when dev goes away (even if it was killed).
      if (process.send) process.send(report);
      const stopped = new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        if (process.send) process.once('disconnect', stop);
      });
      emit(
        opts,
        report,
        () =>
          `codec server on ${server.url} (CORS: ${cors.join(', ') || 'none'}; ${trusted.length ? `decodes without a token for ${trusted.join(' and ')}${token ? ', else bearer token' : ''}` : 'bearer token required'}); Ctrl-C stops it`,
      );
      await stopped;
    });
}
