import { parseArgs } from 'node:util';
import { ConfigError, LeafbridgeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { type PlcSecurity, type PlcStub, startPlcStub } from './plcStub.js';

export const PLC_USAGE = `leafbridge simulate plc [--port N] [--count N] [--name NAME] [--host ADDR]
                       [--lds opc.tcp://HOST:PORT] [--security None,SignAndEncrypt]
  --port      first TCP port (each further PLC takes the next one); 0, the default, takes free ports
  --count     how many PLCs (default 1); names get -1, -2, ... when more than one
  --name      application name (default plc); the applicationUri is urn:leafbridge:plc:<name>
  --host      address to listen on and to advertise (default 127.0.0.1)
  --lds       register with this Local Discovery Server; fails (exit 1) when it does not list the PLCs
              within 15 s (it refused them, or cannot be reached)
  --security  endpoints to offer (default None,SignAndEncrypt: SignAndEncrypt is with Basic256Sha256)`;

export interface PlcSimulation {
  stubs: PlcStub[];
  stop(): Promise<void>;
}

interface PlcFlags {
  port: number;
  count: number;
  name: string;
  host: string;
  lds?: string;
  security: PlcSecurity[];
}

/** `leafbridge simulate plc ...`: starts the PLC stubs; throws ConfigError (nothing started) on bad flags. */
export async function simulatePlc(argv: string[], logger: Logger): Promise<PlcSimulation> {
  const flags = parsePlcFlags(argv);
  const names = Array.from({ length: flags.count }, (_, i) =>
    flags.count === 1 ? flags.name : `${flags.name}-${i + 1}`,
  );
  const started = await Promise.allSettled(
    names.map((name, i) =>
      startPlcStub({
        applicationName: name,
        port: flags.port === 0 ? 0 : flags.port + i,
        host: flags.host,
        security: flags.security,
        ...(flags.lds !== undefined && { discoveryServerEndpointUrl: flags.lds }),
        logger: logger.child({ plc: name }),
      }),
    ),
  );
  const stubs = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async () => {
    await Promise.all(stubs.map((s) => s.stop()));
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  if (flags.lds !== undefined) await requireRegistration(stubs, flags.lds, stop);
  return { stubs, stop };
}

const REGISTRATION_WAIT_MS = 15_000;

/** Every stub listed by the discovery server, or all stopped and an error that says why not. */
async function requireRegistration(stubs: PlcStub[], lds: string, stop: () => Promise<void>): Promise<void> {
  const registered = await Promise.all(stubs.map((s) => s.waitForRegistration(REGISTRATION_WAIT_MS)));
  const problems = stubs
    .filter((_, i) => !registered[i])
    .map((s) => {
      const reason = s.registration()?.reason ?? `no answer within ${REGISTRATION_WAIT_MS / 1000} s`;
      return `${s.applicationName}: ${reason}`;
    });
  if (problems.length === 0) return;
  await stop();
  throw new LeafbridgeError(
    'PLC_REGISTRATION',
    `not registered with the discovery server ${lds}: ${problems.join('; ')}`,
  );
}

export function parsePlcFlags(argv: string[]): PlcFlags {
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse(argv).values;
  } catch (err) {
    throw new ConfigError([`${err instanceof Error ? err.message : String(err)}\n${PLC_USAGE}`]);
  }
  const problems: string[] = [];
  const port = integer(values.port ?? '0', 'port', 0, 65535, problems);
  const count = integer(values.count ?? '1', 'count', 1, 100, problems);
  const security = securities(values.security ?? 'None,SignAndEncrypt', problems);
  if (values.lds !== undefined && !values.lds.startsWith('opc.tcp://'))
    problems.push('--lds: must be an opc.tcp:// URL');
  if (port !== 0 && port + count - 1 > 65535)
    problems.push('--port: the last PLC would need a port above 65535');
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    port,
    count,
    name: values.name ?? 'plc',
    host: values.host ?? '127.0.0.1',
    ...(values.lds !== undefined && { lds: values.lds }),
    security,
  };
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: 'string' },
      count: { type: 'string' },
      name: { type: 'string' },
      host: { type: 'string' },
      lds: { type: 'string' },
      security: { type: 'string' },
    },
  });
}

function integer(text: string, flag: string, min: number, max: number, problems: string[]): number {
  const n = Number(text);
  if (Number.isInteger(n) && n >= min && n <= max) return n;
  problems.push(`--${flag}: must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  return min;
}

function securities(text: string, problems: string[]): PlcSecurity[] {
  const items = text.split(',').map((s) => s.trim());
  const known: readonly string[] = ['None', 'SignAndEncrypt'];
  const bad = items.filter((s) => !known.includes(s));
  if (bad.length > 0 || items.length === 0) {
    problems.push(`--security: each of ${JSON.stringify(text)} must be None or SignAndEncrypt`);
    return [];
  }
  return [...new Set(items)] as PlcSecurity[];
}
