// An S3-compatible server (s3rver) on loopback for storage tests: no network beyond this machine.
// It listens on port 0 and reports the port the kernel gave it.
import { removeTmpDir, tmpDir } from './tmp';

// s3rver ships no types.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver');

export interface LoopbackS3 {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

export async function startS3(bucket = 'miner-bucket'): Promise<LoopbackS3> {
  const dir = tmpDir('miner-s3'); // removed by close(), or at exit when a test dies first
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const addr: { port: number } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    close: async () => {
      await server.close();
      removeTmpDir(dir);
    },
  };
}
