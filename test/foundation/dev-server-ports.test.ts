/**
 * startDevServer starts the dev server again when a port it chose itself was
 * taken before the server bound it (seen with the rotation benchmark's three
 * dev servers starting one after another): `portTaken` reads which port from
 * the server's output. A port the caller fixed is not retried.
 */
import { portTaken } from '../../src/dev/dev-server';

test("reads the taken port from the Temporal CLI's own failure output", () => {
  // As temporal CLI 1.5.1 (server 1.29.1) printed it when its random HTTP API port was taken.
  const output =
    'time=2026-12-08T00:42:24.750 level=ERROR msg="failed starting server: could not build arguments for function ... ' +
    'failed to build *frontend.HTTPAPIServer: received non-nil error from function \\"go.temporal.io/server/service/frontend\\".HTTPAPIServerProvider ' +
    '(/root/go/pkg/mod/go.temporal.io/server@v1.29.1/service/frontend/fx.go:835): failed listening for HTTP API on 127.0.0.1:34887: listen tcp 127.0.0.1:34887: bind: address already in use"';
  expect(portTaken(output)).toBe(34887);
  expect(portTaken('listen tcp 127.0.0.1:7233: bind: address already in use')).toBe(7233);
  expect(portTaken('temporal dev server exited with code 1: unknown flag --foo')).toBeUndefined();
  expect(portTaken('listen tcp 127.0.0.1:7233: bind: permission denied')).toBeUndefined();
});
