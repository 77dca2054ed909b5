export { ModbusError, type ModbusErrorCode, modbusErrorCode } from './errors.js';
export { type ModbusHandler, modbusHandler } from './handler.js';
export { modbusDeviceId } from './scanner.js';
export { type ModbusDetails, ModbusDetailsSchema, modbusDefaults } from './schema.js';
export { expandCidr, parseHost, resolveSettings } from './targets.js';
