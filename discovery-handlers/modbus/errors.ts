import { LeafbridgeError } from '../../src/util/errors.js';

export const modbusErrorCode = {
  /** The unit or the endpoint did not answer in time. */
  timeout: 'MODBUS_TIMEOUT',
  /** The unit answered with a Modbus exception response. */
  exception: 'MODBUS_EXCEPTION',
  /** The reply broke the framing or did not fit the request; the connection is dropped. */
  malformed: 'MODBUS_MALFORMED',
  /** The connection could not be made, or closed under a request. */
  connection: 'MODBUS_CONNECTION',
} as const;
export type ModbusErrorCode = (typeof modbusErrorCode)[keyof typeof modbusErrorCode];

export class ModbusError extends LeafbridgeError {
  declare readonly code: ModbusErrorCode;
  /** The exception code the unit sent (1 illegal function, 2 illegal address, 0x0B gateway target...). */
  readonly exceptionCode?: number;
  constructor(code: ModbusErrorCode, message: string, options?: { cause?: unknown; exceptionCode?: number }) {
    super(code, message, options);
    if (options?.exceptionCode !== undefined) this.exceptionCode = options.exceptionCode;
  }
}
