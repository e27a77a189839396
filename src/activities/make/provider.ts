/**
 * The `make` rotation provider (consumer side): a rotated credential is pushed
 * into the Make connections that hold it.
 *
 * - install: `POST /connections/{id}/set-data` for every connection of the
 *   service listing this credential (`make.connections[].credential`), with
 *   the secret under `dataField` next to the static `data` fields (Make
 *   replaces the whole data). The saga's rollback installs the previous
 *   version the same way, which puts the previous data back.
 * - verify: `POST /connections/{id}/test`; every connection `verified: true`.
 *   Make cannot say which version a connection holds, so a passing test
 *   reports the version just installed.
 * - preflight (extra, read-only): before anything changes, reports a Make
 *   API token whose scopes (`GET /users/me/current-authorization`) lack
 *   {@link MAKE_ROTATION_SCOPES} (the writes would fail with 403 mid-rotation),
 *   or whose scopes cannot be read; then each connection whose data cannot
 *   be edited through the API (`editable: false`), whose `GET /connections/{id}/editable-data-schema` (`{
 *   editableParameters: string[] }`) is empty or unreadable, whose `dataField`
 *   it does not list, or whose `data` leaves out a field it lists (set-data
 *   would empty it). A schema that cannot be checked is a problem, never a pass.
 *
 * Make has no API to mint or revoke third-party credentials, so `mint` and
 * `revoke` refuse: a Make service is a consumer only.
 */
import { MAKE_ROTATION_SCOPES, makeConnectionData, makeMissingScopes, type MakeConnectionConfig } from '../../domain/make';
import type { ServiceSpec } from '../../domain/registry';
import { ProviderError, type ProviderContext, type RotationProvider } from '../providers/types';
import { MakeApiError, MakeRateLimitWaitError, type MakeClient } from './client';
import type { MakeClients } from './clients';

/** A RotationProvider plus the read-only plan check the rotation preflight can call. */
export interface MakeRotationProvider extends RotationProvider {
  /**
   * Problems that would stop installing `ctx.credential` into `ctx.service`,
   * found without changing anything; empty when clear.
   */
  preflight(ctx: ProviderContext): Promise<string[]>;
}

/** Replaces every occurrence of `secret` (when long enough to matter) with [REDACTED]. */
function redact(text: string, secret?: string): string {
  return secret && secret.length >= 4 ? text.split(secret).join('[REDACTED]') : text;
}

/**
 * Throws the provider error for a failed Make call. Make does not echo
 * connection data in its errors; the secret is redacted anyway, should an
 * answer ever quote it.
 */
function asProviderError(err: unknown, what: string, secret?: string): never {
  if (err instanceof ProviderError) throw new ProviderError(redact(err.message, secret), err.retryable, err.status);
  if (err instanceof MakeApiError) throw new ProviderError(redact(`${what}: ${err.message}`, secret), err.retryable, err.info.status);
  if (err instanceof MakeRateLimitWaitError) throw new ProviderError(`${what}: ${err.message}`, true, 429);
  const e = err as { retryable?: unknown; status?: unknown; message?: unknown };
  throw new ProviderError(redact(`${what}: ${String(e?.message ?? err).slice(0, 300)}`, secret), e?.retryable !== false, typeof e?.status === 'number' ? e.status : undefined);
}

/** The connections of `service` that hold `credentialId`; throws a non-retryable ProviderError when none does. */
function connectionsFor(service: ServiceSpec, credentialId: string): MakeConnectionConfig[] {
  const list = (service.make?.connections ?? []).filter((c) => c.credential === credentialId);
  if (list.length === 0) {
    throw new ProviderError(`services.${service.id}.make.connections: no connection lists credential "${credentialId}"; add credential: ${credentialId} to the connection that holds it`, false);
  }
  return list;
}

/**
 * The problem with the service's Make API token for rotating `credentialId`
 * into its connections, or undefined when its scopes hold
 * {@link MAKE_ROTATION_SCOPES}. A call that fails or an answer without a
 * scope list is a problem too: the check is never passed on a guess.
 */
async function tokenScopeProblem(client: MakeClient, service: ServiceSpec, credentialId: string, signal?: AbortSignal): Promise<string | undefined> {
  const token = service.credential ? `the Make API token (credential ${service.credential})` : 'the Make API token';
  const fix = `create a Make API token with ${MAKE_ROTATION_SCOPES.join(' and ')} (Make: Profile → API → Add token; scopes cannot be added to an existing token), store it with \`integration-agent credentials import ${service.credential ?? '<token credential>'}\`, then rotate again`;
  let granted: string[];
  try {
    granted = (await client.currentAuthorization(signal)).scope;
  } catch (err) {
    const what = err instanceof Error ? err.message : String(err);
    return `service ${service.id}: the scopes of ${token} could not be checked, so the rotation could fail with 403 mid-way: ${what.slice(0, 400)}; if the token lacks a scope, ${fix}`;
  }
  const missing = makeMissingScopes(granted, MAKE_ROTATION_SCOPES);
  if (missing.length === 0) return undefined;
  const has = granted.length ? [...granted].sort().join(', ') : 'none';
  return `service ${service.id}: ${token} lacks scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which installing ${credentialId} into Make connections needs (POST /connections/{id}/set-data and /test; GET /users/me/current-authorization lists its scopes as ${has}): ${fix}`;
}

const label = (c: MakeConnectionConfig) => `Make connection ${c.id}${c.name ? ` (${c.name})` : ''}`;

/** @param clients the Make clients (coordinator transport, organization limits). */
export function createMakeProvider(clients: MakeClients): MakeRotationProvider {
  const clientOf = async (ctx: ProviderContext) => {
    try {
      return (await clients.forSpec(ctx.service, ctx.signal)).client;
    } catch (err) {
      if (err instanceof MakeApiError || err instanceof MakeRateLimitWaitError) asProviderError(err, `service ${ctx.service.id}`);
      throw new ProviderError((err as Error).message, false);
    }
  };

  return {
    name: 'make',

    async mint(ctx) {
      throw new ProviderError(`credentials.${ctx.credential.id}: the make provider cannot mint (Make has no API that issues third-party credentials); make another service the issuer`, false);
    },

    async revoke(ctx) {
      throw new ProviderError(`credentials.${ctx.credential.id}: the make provider cannot revoke (Make has no API that revokes third-party credentials); make another service the issuer`, false);
    },

    async preflight(ctx) {
      let conns: MakeConnectionConfig[];
      try {
        conns = connectionsFor(ctx.service, ctx.credential.id);
      } catch (err) {
        return [(err as Error).message];
      }
      const client = await clientOf(ctx);
      const problems: string[] = [];
      const scopeProblem = await tokenScopeProblem(client, ctx.service, ctx.credential.id, ctx.signal);
      if (scopeProblem) problems.push(scopeProblem);
      for (const c of conns) {
        try {
          const conn = await client.connection(c.id, ctx.signal);
          if (conn.editable === false) {
            problems.push(`${label(c)} of service ${ctx.service.id} cannot be edited through the Make API (editable: false, e.g. an OAuth connection): update it in Make, or remove credential ${ctx.credential.id} from it`);
            continue;
          }
          const fields = await client.editableParameters(c.id, ctx.signal);
          if (fields.length === 0) {
            problems.push(
              `${label(c)} of service ${ctx.service.id}: GET /connections/${c.id}/editable-data-schema lists no editable fields, so set-data cannot be checked (it would replace all data): check the connection in Make, or rotate it by hand`,
            );
            continue;
          }
          // Without dataField the secret is a JSON object that supplies the other fields; it is not read here.
          if (c.dataField) {
            if (!fields.includes(c.dataField)) {
              problems.push(`${label(c)} of service ${ctx.service.id} has no editable field "${c.dataField}" (editable fields: ${fields.join(', ')}): fix make.connections[].dataField`);
            }
            const missing = fields.filter((f) => f !== c.dataField && !Object.hasOwn(c.data, f));
            if (missing.length) {
              problems.push(`${label(c)} of service ${ctx.service.id}: set-data replaces all data and fields ${missing.join(', ')} would become empty; list them under make.connections[].data`);
            }
          }
        } catch (err) {
          problems.push(`${label(c)} of service ${ctx.service.id}: ${(err as Error).message}`);
        }
      }
      return problems;
    },

    async install(ctx, req) {
      const conns = connectionsFor(ctx.service, ctx.credential.id);
      const client = await clientOf(ctx);
      for (const c of conns) {
        const what = `install ${ctx.credential.id} version ${req.versionId} into ${label(c)} of service ${ctx.service.id}`;
        let data: Record<string, unknown>;
        try {
          data = makeConnectionData(c, req.secret);
        } catch (err) {
          throw new ProviderError(`${what}: ${(err as Error).message}`, false);
        }
        try {
          const conn = await client.connection(c.id, ctx.signal);
          if (conn.editable === false) throw new ProviderError(`${what}: the connection cannot be edited through the Make API (editable: false); update it in Make`, false);
          await client.setConnectionData(c.id, data, `${req.idempotencyKey}/${c.id}`, ctx.signal);
        } catch (err) {
          asProviderError(err, what, req.secret);
        }
      }
    },

    async verify(ctx, req) {
      const conns = connectionsFor(ctx.service, ctx.credential.id);
      const client = await clientOf(ctx);
      for (const c of conns) {
        let verified: boolean;
        try {
          verified = await client.testConnection(c.id, ctx.signal);
        } catch (err) {
          asProviderError(err, `verify ${label(c)} of service ${ctx.service.id}`, req.secret);
        }
        if (!verified) return { versionId: undefined };
      }
      return { versionId: req.versionId };
    },
  };
}
