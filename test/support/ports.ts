import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * Asks the OS for a free TCP port by listening on port 0 and closing again.
 * There is a small race (another process may take the port before the caller
 * binds it); acceptable for tests, and the stand-ins avoid it entirely by
 * listening first when no port is given.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
