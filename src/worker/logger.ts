/**
 * Logging: pino with redaction of anything that may hold secret material,
 * and an adapter that lets the Temporal SDK (message-first) log through it.
 */
import pino, { type Logger } from 'pino';
import type { LogLevel, LogMetadata, Logger as SdkLogger } from '@temporalio/common';

/** Keys whose values are replaced by `[redacted]` wherever they appear (two levels deep). */
export const REDACT_KEYS = ['secret', 'password', 'token', 'apiKey', 'authorization', 'Authorization', 'cookie', 'privateKey', 'data', 'routingKey', 'routing_key', 'alertWebhooks'];

/**
 * @param level pino level.
 * @param to where lines go: `stdout` (default), `stderr` (commands whose stdout carries `--json` output), or a stream.
 */
export function createLogger(level: string, to: 'stdout' | 'stderr' | pino.DestinationStream = 'stdout'): Logger {
  const destination = typeof to === 'string' ? pino.destination({ fd: to === 'stderr' ? 2 : 1, sync: true }) : to;
  const paths = [
    ...REDACT_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `headers.${k.toLowerCase()}`]),
    ...SECRET_HEADERS.flatMap((h) => [`headers["${h}"]`, `*.headers["${h}"]`]),
  ];
  return pino({ level, base: { pid: process.pid }, redact: { paths, censor: '[redacted]' }, serializers: { error: errorFields, err: errorFields } }, destination);
}

/**
 * An error as log fields: `{ type, message, cause? }` (the SDK logs failures
 * under `error`, which pino would print as `{}`). No stack and no details:
 * messages are written to name what failed without secret material; details
 * and stacks are left to the Temporal Web UI.
 */
export function errorFields(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const out: { type: string; message: string; cause?: string } = { type: value.name, message: value.message };
  const cause = (value as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message !== value.message) out.cause = cause.message;
  return out;
}

/** Header names that carry credentials under custom auth schemes (`auth: { scheme: header }`). */
export const SECRET_HEADERS = ['x-api-key', 'api-key', 'apikey', 'x-auth-token', 'proxy-authorization'];

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/** The SDK's Logger interface (`log(level, message, meta)`) on top of pino (`(meta, message)`). */
export class PinoSdkLogger implements SdkLogger {
  constructor(private readonly pino: Logger) {}
  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.pino[LEVELS[level]](meta ?? {}, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
