import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTcpHandler } from '../../examples/tcp-handler/handler.js';
import { type CameraStub, startCameraStub } from '../../firmware-stubs/camera/index.js';
import type { MeterModel } from '../../firmware-stubs/modbus/meter.js';
import { startModbusTcpStub } from '../../firmware-stubs/modbus/tcpServer.js';
import { type MqttSensor, startMqttSensor } from '../../firmware-stubs/mqtt-sensor/sensor.js';
import { startPlcStub } from '../../firmware-stubs/plc/index.js';
import { loadOpcua } from '../../firmware-stubs/plc/opcuaModule.js';
import { type SerialSensorStub, startSerialSensorStub } from '../../firmware-stubs/serial/index.js';
import type { DiscoveryConfigEntry } from '../config/schema.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

/** One kind of simulated device in the demo: what runs, the DiscoveryConfig that finds it, how to stop it. */
export interface DemoDevices {
  kind: string;
  /** One line for the banner: what runs and where. */
  summary: string;
  config: DiscoveryConfigEntry;
  /** Device files its probes write to: the agent's discovery.probeWritePaths must name them. */
  probeWritePaths?: string[];
  /** TCP endpoints (host:port) it serves, for the external handler to watch. */
  endpoints?: string[];
  stop(): Promise<void>;
}

/** A kind that could not be simulated here, and why. */
export interface DemoSkip {
  kind: string;
  reason: string;
}

export interface DemoDeviceOptions {
  dataDir: string;
  cameras: number;
  plcs: number;
  serials: number;
  modbus: number;
  logger: Logger;
}

/** Fixed uuids, so a camera is the same Device from one demo run to the next. */
const CAMERA_UUID_PREFIX = 'urn:uuid:1eafb1d9-de30-4000-8000-';
const LOOPBACK = '127.0.0.1';

/**
 * Starts the simulated cameras, PLCs, serial sensors and Modbus meters at once (each kind on its own: one that cannot run
 * here is skipped with its reason). MQTT sensors start later, once the edge broker is up.
 */
export async function startDemoDevices(
  o: DemoDeviceOptions,
): Promise<{ started: DemoDevices[]; skipped: DemoSkip[] }> {
  const kinds: [string, number, () => Promise<DemoDevices>][] = [
    ['ONVIF camera', o.cameras, () => startCameras(o)],
    ['OPC UA PLC', o.plcs, () => startPlcs(o)],
    ['serial sensor', o.serials, () => startSerials(o)],
    ['Modbus meter', o.modbus, () => startModbus(o)],
  ];
  const wanted = kinds.filter(([, count]) => count > 0);
  const results = await Promise.allSettled(wanted.map(([, , start]) => start()));
  const started: DemoDevices[] = [];
  const skipped: DemoSkip[] = [];
  results.forEach((r, i) => {
    const kind = wanted[i]?.[0] ?? '';
    if (r.status === 'fulfilled') started.push(r.value);
    else skipped.push({ kind, reason: errorMessage(r.reason) });
  });
  return { started, skipped };
}

/** ONVIF cameras: WS-Discovery multicast pinned to loopback (TTL 1), SOAP on 127.0.0.1. */
async function startCameras(o: DemoDeviceOptions): Promise<DemoDevices> {
  const uuids = Array.from(
    { length: o.cameras },
    (_, i) => `${CAMERA_UUID_PREFIX}${i.toString(16).padStart(12, '0')}`,
  );
  const cameras: CameraStub[] = [];
  try {
    for (const [i, uuid] of uuids.entries()) {
      cameras.push(
        await startCameraStub({
          multicastInterface: LOOPBACK,
          uuid,
          model: 'LB-Cam 1000',
          hostname: `demo-camera-${i + 1}`,
          serialNumber: `DEMO-CAM-${i + 1}`,
          macAddress: `02:1e:af:b1:00:${(i + 1).toString(16).padStart(2, '0')}`,
          logger: o.logger,
        }),
      );
    }
  } catch (err) {
    await Promise.all(cameras.map((c) => c.stop()));
    throw err;
  }
  return {
    kind: 'onvif',
    summary: `${count(o.cameras, 'ONVIF camera')}   ${cameras.map((c) => c.deviceServiceUrl).join(' ')}`,
    // Only the demo's own cameras: other WS-Discovery traffic on loopback (tests, simulators) is left alone.
    config: {
      name: 'cameras',
      spec: {
        handler: {
          name: 'onvif',
          details: { interface: LOOPBACK, filters: { uuids: { action: 'include', items: uuids } } },
        },
        capacity: 2,
        properties: {},
      },
    },
    stop: async () => {
      await Promise.all(cameras.map((c) => c.stop()));
    },
  };
}

/** OPC UA PLCs: node-opcua servers on free ports, security None. */
async function startPlcs(o: DemoDeviceOptions): Promise<DemoDevices> {
  // node-opcua prints its warnings (a Node 20 RSA PKCS#1 v1.5 notice, unused here) to stdout: into the log.
  const opcua = await loadOpcua();
  opcua.setWarningLogger((...args: unknown[]) =>
    o.logger.warn({ ns: 'node-opcua' }, args.filter((a) => typeof a !== 'object').join(' ')),
  );
  const started = await Promise.allSettled(
    Array.from({ length: o.plcs }, (_, i) =>
      startPlcStub({
        applicationName: `demo-plc-${i + 1}`,
        host: LOOPBACK,
        security: ['None'],
        pkiDir: join(o.dataDir, 'plc-pki'),
        logger: o.logger,
      }),
    ),
  );
  const plcs = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(plcs.map((p) => p.stop()));
    throw failed.reason;
  }
  return {
    kind: 'opcua',
    summary: `${count(o.plcs, 'OPC UA PLC')}     ${plcs.map((p) => p.endpointUrl).join(' ')}`,
    config: {
      name: 'plcs',
      spec: {
        handler: {
          name: 'opcua',
          details: {
            discoveryUrls: plcs.map((p) => p.endpointUrl),
            pkiDir: join(o.dataDir, 'opcua-client-pki'),
            browsePaths: [
              { name: 'serialNumber', path: '/Objects/1:Plant/1:SerialNumber' },
              { name: 'model', path: '/Objects/1:Plant/1:Model' },
            ],
            pollIntervalMs: 5000,
          },
        },
        capacity: 1,
        properties: {},
      },
    },
    stop: async () => {
      await Promise.all(plcs.map((p) => p.stop()));
    },
  };
}

/** Serial sensors on socat pseudo-terminal pairs, symlinked as <dataDir>/serial/ttyLB<i>. */
async function startSerials(o: DemoDeviceOptions): Promise<DemoDevices> {
  if (spawnSync('socat', ['-V'], { stdio: 'ignore' }).error)
    throw new Error('socat is not installed (apt-get install socat, or scripts/install-test-deps.sh)');
  const dir = join(o.dataDir, 'serial');
  mkdirSync(dir, { recursive: true });
  const stubs: SerialSensorStub[] = [];
  try {
    for (let i = 0; i < o.serials; i++) {
      stubs.push(
        await startSerialSensorStub({
          dir,
          name: `ttyLB${i}`,
          model: 'TH-100',
          serial: `DEMO-TH-${i + 1}`,
          // Nobody reads the port between probes: unsolicited readings would only fill the pty's buffer.
          readingIntervalMs: 0,
          logger: o.logger,
        }),
      );
    }
  } catch (err) {
    await Promise.all(stubs.map((s) => s.stop()));
    throw err;
  }
  return {
    kind: 'serial',
    summary: `${count(o.serials, 'serial sensor')}  ${stubs.map((s) => s.devicePath).join(' ')}`,
    // The stubs' own pseudo-terminals, not all of /dev/pts (the terminals of the user's shells).
    probeWritePaths: stubs.map((s) => s.nodePath),
    config: {
      name: 'serial-sensors',
      spec: {
        handler: {
          name: 'serial',
          details: {
            paths: [join(dir, 'ttyLB*')],
            probe: { write: 'ID?\\r\\n', expect: '^LEAFBRIDGE-SENSOR,', timeoutMs: 1000, baudRate: 115200 },
          },
        },
        capacity: 1,
        properties: {},
      },
    },
    stop: async () => {
      await Promise.all(stubs.map((s) => s.stop()));
    },
  };
}

/** Modbus meters (units 1..n) behind one Modbus TCP server on 127.0.0.1, probed every 10 s. */
async function startModbus(o: DemoDeviceOptions): Promise<DemoDevices> {
  const units = new Map<number, MeterModel>();
  for (let unitId = 1; unitId <= o.modbus; unitId++) {
    units.set(unitId, {
      vendor: 'Leafbridge Simulated',
      productCode: `LB-EM${unitId}`,
      revision: '1.0',
      registers: [230, 10 * unitId],
      identification: true,
    });
  }
  const stub = await startModbusTcpStub({ host: LOOPBACK, port: 0, units, logger: o.logger });
  return {
    kind: 'modbus',
    summary: `${count(o.modbus, 'Modbus meter')}   modbus tcp://${LOOPBACK}:${stub.port} (units 1-${o.modbus})`,
    endpoints: [`${LOOPBACK}:${stub.port}`],
    config: {
      name: 'modbus-meters',
      spec: {
        handler: {
          name: 'modbus',
          details: {
            hosts: [`${LOOPBACK}:${stub.port}`],
            unitIdRange: { first: 1, last: o.modbus },
            registers: [
              { name: 'voltage', address: 0 },
              { name: 'current', address: 1 },
            ],
            timeoutMs: 500,
            rescanIntervalMs: 10_000,
          },
        },
        capacity: 1,
        properties: {},
      },
    },
    stop: () => stub.stop(),
  };
}

/** The name the demo's external handler registers under (the agent's discovery.external.handlers). */
export const DEMO_EXTERNAL_HANDLER = 'tcp-endpoints';

/**
 * The external (Akri-protocol) discovery handler of examples/tcp-handler, in this process but speaking
 * gRPC over the agent's registration socket in `dir`: it reports which of `targets` (host:port) accept TCP.
 */
export async function startDemoExternalHandler(
  dir: string,
  targets: string[],
  logger: Logger,
): Promise<DemoDevices> {
  const handler = await startTcpHandler({ dir, name: DEMO_EXTERNAL_HANDLER, logger });
  return {
    kind: DEMO_EXTERNAL_HANDLER,
    summary: `external handler ${DEMO_EXTERNAL_HANDLER} (Akri gRPC, ${handler.endpoint})   watching ${targets.join(' ')}`,
    config: {
      name: 'tcp-endpoints',
      spec: {
        handler: { name: DEMO_EXTERNAL_HANDLER, details: { targets, intervalMs: 1_000 } },
        capacity: 1,
        properties: {},
      },
    },
    stop: () => handler.stop(),
  };
}

/** MQTT sensors on the edge broker: telemetry every second, a reported twin, desired twins applied. */
export async function startDemoSensors(brokerUrl: string, sensors: number): Promise<DemoDevices> {
  const started: MqttSensor[] = [];
  for (let i = 1; i <= sensors; i++)
    started.push(await startMqttSensor({ url: brokerUrl, id: `sensor-${i}`, intervalMs: 1000 }));
  return {
    kind: 'mqtt',
    summary: `${count(sensors, 'MQTT sensor')}    ${started.map((s) => s.id).join(', ')}`,
    config: mqttSensorsConfig(brokerUrl),
    stop: async () => {
      await Promise.all(started.map((s) => s.stop()));
    },
  };
}

export function mqttSensorsConfig(brokerUrl: string): DiscoveryConfigEntry {
  return {
    name: 'mqtt-sensors',
    spec: {
      handler: { name: 'mqtt', details: { brokerUrl, ids: { include: ['sensor-*'] } } },
      capacity: 1,
      properties: {},
    },
  };
}

/** debug-echo: made-up devices, present as long as the config is. */
export function echoConfig(): DiscoveryConfigEntry {
  return {
    name: 'echo',
    spec: {
      handler: {
        name: 'debug-echo',
        details: { devices: [{ id: 'echo-1', properties: { ECHO_GREETING: 'hello' } }] },
      },
      capacity: 1,
      properties: {},
    },
  };
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}
