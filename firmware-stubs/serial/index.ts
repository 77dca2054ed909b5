export { parseSimulateSerialArgs, simulateSerial, simulateSerialUsage } from './cli.js';
export { openPtyPair, type PtyPair } from './ptyPair.js';
export {
  refuseLivePath,
  type SerialSensorStub,
  type SerialSensorStubOptions,
  type SerialStubMode,
  serialStubMode,
  startSerialSensorStub,
} from './sensorStub.js';
