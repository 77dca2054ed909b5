export { type PlcSimulation, parsePlcFlags, simulatePlc } from './cli.js';
export {
  type DiscoveryServer,
  type DiscoveryServerOptions,
  startDiscoveryServer,
} from './discoveryServer.js';
export { PLANT_TICK_MS, type PlcIdentity } from './plantModel.js';
export { PlcSecurity, type PlcStub, type PlcStubOptions, startPlcStub } from './plcStub.js';
export { RegistrationState, type RegistrationStatus } from './registration.js';
