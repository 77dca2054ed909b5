import { realpath } from 'node:fs/promises';
import type { DeviceNode } from '../../src/model/handler.js';
import type { Clock } from '../../src/util/clock.js';
import { ModbusError, modbusErrorCode } from './errors.js';
import { RtuConnection } from './rtuConnection.js';
import { type Endpoint, endpointUrl, type SerialLine } from './targets.js';
import { type ModbusTransport, TcpConnection } from './tcpConnection.js';

/** One place units are probed at: a TCP endpoint or an RTU line. Its key prefixes its devices' ids. */
export interface ScanTarget {
  key: string;
  properties: Record<string, string>;
  deviceNodes?: DeviceNode[];
  open(timeoutMs: number, clock: Clock): Promise<ModbusTransport>;
}

export function tcpTarget(endpoint: Endpoint): ScanTarget {
  const key = endpointUrl(endpoint);
  return {
    key,
    properties: { MODBUS_ENDPOINT: key, MODBUS_HOST: endpoint.host, MODBUS_PORT: String(endpoint.port) },
    open: (timeoutMs, clock) => TcpConnection.open(endpoint.host, endpoint.port, timeoutMs, clock),
  };
}

/**
 * An RTU line, opened only when its real path lies under the agent's `discovery.probeWritePaths`: a probe
 * writes to the port, and a port of another device must not get Modbus requests.
 */
export async function rtuTarget(line: SerialLine, probeWritePaths: readonly string[]): Promise<ScanTarget> {
  const realPath = await realpath(line.path).catch(() => line.path);
  const allowed = probeWritePaths.some((prefix) => realPath.startsWith(prefix));
  return {
    key: `rtu://${line.path}`,
    properties: { MODBUS_ENDPOINT: `rtu://${line.path}`, MODBUS_SERIAL_PORT: line.path },
    deviceNodes: [{ hostPath: realPath, containerPath: line.path, permissions: 'rw' }],
    open: async (timeoutMs, clock) => {
      if (!allowed) {
        throw new ModbusError(
          modbusErrorCode.connection,
          `${realPath} is not under the agent's discovery.probeWritePaths (${probeWritePaths.join(', ')})`,
        );
      }
      return RtuConnection.open(line, timeoutMs, clock);
    },
  };
}
