// An endpoint that is down, for "server unreachable" tests: a TCP server on
// port 0 (the kernel picks a free port and it stays ours while the test runs)
// that resets every connection the moment it arrives. Finding a free port,
// closing it and connecting to the number later races with every other process
// that binds a port in between, which then answers instead.
import * as net from 'net';

export interface DeadServer {
  port: number;
  /** scheme://127.0.0.1:port */
  url(scheme: 'http' | 'ws'): string;
  close(): Promise<void>;
}

export async function deadServer(): Promise<DeadServer> {
  const server = net.createServer((socket) => socket.resetAndDestroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
