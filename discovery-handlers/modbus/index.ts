export { ModbusError, type ModbusErrorCode, modbusErrorCode } from './errors.js';
export { type ModbusHandler, modbusHandler, modbusShared } from './handler.js';
export { crc16 } from './rtuFrame.js';
export { type ModbusDetails, ModbusDetailsSchema, modbusDefaults } from './schema.js';
export { expandCidr, parseHost, resolveSettings } from './targets.js';
