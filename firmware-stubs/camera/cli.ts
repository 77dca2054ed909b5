import { parseArgs } from 'node:util';
import { LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { type CameraStub, startCameraStub } from './index.js';

export const simulateCameraUsage = `leafbridge simulate camera [options]
  --count N             cameras to start (default 1, at most 1000)
  --interface ADDR      IPv4 address for WS-Discovery and the SOAP servers (default 127.0.0.1)
  --http-address ADDR   address the SOAP servers bind (default: the interface address)
  --port N              first HTTP port; camera i gets N+i (default 0: any free port)
  --username U --password P   require WS-UsernameToken digest auth
  --manufacturer M --model M --firmware V
  --uuid-prefix P       uuids are P + 12 hex digits of the index (default: random uuids)
  --rtsp-base URI       stream URIs are URI/<profile token> (default rtsp://ADDR:8554)`;

function flags(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      count: { type: 'string', default: '1' },
      interface: { type: 'string', default: '127.0.0.1' },
      'http-address': { type: 'string' },
      port: { type: 'string', default: '0' },
      username: { type: 'string' },
      password: { type: 'string' },
      manufacturer: { type: 'string' },
      model: { type: 'string' },
      firmware: { type: 'string' },
      'uuid-prefix': { type: 'string' },
      'rtsp-base': { type: 'string' },
    },
  }).values;
}

function integer(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new LeafbridgeError(
      'USAGE',
      `--${name} must be an integer from ${min} to ${max}\n${simulateCameraUsage}`,
    );
  }
  return value;
}

function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

/** `urn:uuid:` + prefix, padded with the index to a full 8-4-4-4-12 uuid when the prefix is one. */
export function stubUuid(prefix: string | undefined, index: number): string | undefined {
  if (prefix === undefined) return undefined;
  const bare = prefix.replace(/^urn:uuid:/i, '');
  return `urn:uuid:${bare}${index.toString(16).padStart(12, '0')}`;
}

/** `leafbridge simulate camera`: starts N simulated ONVIF cameras; `stop()` says Bye and closes them. */
export async function simulateCamera(
  argv: string[],
  logger: Logger,
): Promise<{ stop(): Promise<void>; cameras: CameraStub[] }> {
  let values: ReturnType<typeof flags>;
  try {
    values = flags(argv);
  } catch (err) {
    throw new LeafbridgeError('USAGE', `${(err as Error).message}\n${simulateCameraUsage}`, { cause: err });
  }
  const count = integer('count', values.count, 1, 1000);
  const port = integer('port', values.port, 0, 65535);
  if ((values.username === undefined) !== (values.password === undefined)) {
    throw new LeafbridgeError('USAGE', `--username and --password go together\n${simulateCameraUsage}`);
  }
  const credentials =
    values.username !== undefined
      ? { username: values.username, password: values.password ?? '' }
      : undefined;
  const cameras: CameraStub[] = [];
  const stop = async () => {
    await Promise.all(cameras.splice(0).map((c) => c.stop()));
  };
  try {
    for (let i = 0; i < count; i++) {
      cameras.push(
        await startCameraStub({
          multicastInterface: values.interface,
          httpAddress: values['http-address'] ?? values.interface,
          httpPort: port === 0 ? 0 : port + i,
          ...optional('uuid', stubUuid(values['uuid-prefix'], i)),
          ...optional('credentials', credentials),
          ...optional('manufacturer', values.manufacturer),
          ...optional('model', values.model),
          ...optional('firmwareVersion', values.firmware),
          ...optional('rtspBaseUri', values['rtsp-base']),
          logger,
        }),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  logger.info({ count, interface: values.interface }, 'simulated cameras running');
  return { stop, cameras };
}
