/**
 * `integration-agent codec-server`: the Temporal codec server protocol
 * (POST /encode and /decode with `{ payloads: [...] }`, JSON-protobuf form)
 * so the Web UI can show decrypted payloads to authorised users.
 */
import type { Command } from 'commander';
import { loadConfig } from '../../../worker/config';
import { loadCodecKeys } from '../../../codec/keys';
import { AesGcmCodec } from '../../../codec/aes-gcm-codec';
import { startCodecServer } from '../../../codec/server';
import { CliError, emit } from '../context';

export function register(program: Command): void {
  program
    .command('codec-server')
    .description('serve /encode and /decode for the Temporal Web UI (token-protected, CORS for the UI origin)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8888')
    .option('--ui-origin <origin...>', 'Web UI origins allowed by CORS', ['http://localhost:8233', 'http://127.0.0.1:8233'])
    .option('--json', 'print the address as JSON')
    .action(async (opts: { listen: string; uiOrigin: string[]; json?: boolean }) => {
      const token = process.env.CODEC_SERVER_TOKEN;
      if (!token) throw new CliError('set CODEC_SERVER_TOKEN: the Web UI must send it as "Authorization: Bearer <token>" (UI setting "Pass the user access token")');
      const config = loadConfig();
      const at = opts.listen.lastIndexOf(':');
      const server = await startCodecServer({
        codec: new AesGcmCodec(loadCodecKeys(config.dataDir)),
        host: opts.listen.slice(0, at),
        port: Number(opts.listen.slice(at + 1)),
        token,
        allowedOrigins: opts.uiOrigin,
      });
      emit(opts, { url: server.url }, () => `codec server on ${server.url} (CORS: ${opts.uiOrigin.join(', ')}); Ctrl-C stops it`);
      await new Promise<void>((resolve) => {
        const stop = () => server.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
