export {
  type OpcuaDetails,
  opcuaDetailsSchema,
  SecurityMode,
  SecurityPolicy,
} from './detailsSchema.js';
export { Property } from './devices.js';
export { opcuaHandler } from './handler.js';
export { resolveSettings, settingsProblems } from './settings.js';
