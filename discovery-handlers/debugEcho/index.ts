export {
  createDebugEchoHandler,
  type DebugEchoHandler,
  debugEchoHandler,
  discoverDebugEcho,
} from './handler.js';
export { type Presence, parsePresence, presentDevices, readPresence } from './presence.js';
export {
  type DebugEchoDetails,
  DebugEchoDetailsSchema,
  type DebugEchoDetailsSchemaType,
  debugEchoDefaults,
} from './schema.js';
