export { parseEscapes, printableBytes } from './escapes.js';
export {
  createSerialHandler,
  type SerialHandler,
  type SerialHandlerOptions,
  serialHandler,
} from './handler.js';
export { type ProbeRequest, type ProbeResult, probePort } from './probe.js';
export { defaultSerialPaths, type SerialDetails, SerialDetailsSchema, serialDefaults } from './schema.js';
export { readSerialIdentity, type SerialIdentity, type SysRoots, systemRoots } from './sysfs.js';
