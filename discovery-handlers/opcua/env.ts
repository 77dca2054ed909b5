import type { Clock } from '../../src/util/clock.js';
import type { Logger } from '../../src/util/logger.js';
import type { ClientPki } from './clientPki.js';
import type { FailureLog } from './failureLog.js';
import type { Opcua } from './opcuaModule.js';
import type { OpcuaSettings } from './settings.js';

/** Everything one running discovery shares: passed down, never global. */
export interface OpcuaEnv {
  opcua: Opcua;
  settings: OpcuaSettings;
  pki: ClientPki;
  logger: Logger;
  clock: Clock;
  signal: AbortSignal;
  failures: FailureLog;
}
