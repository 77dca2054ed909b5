import type { AgentConfig } from '../config/load.js';
import type { Logger } from '../util/logger.js';
import { Authorizer } from './auth.js';
import { CredentialsFile } from './credentialsFile.js';

/** The broker's credentials: the config's, and the credentials file's, read now and again when it changes. */
export function authorizerFromConfig(auth: AgentConfig['auth'], logger: Logger): Authorizer {
  if (!auth.credentialsFile) return new Authorizer(auth);
  const file = new CredentialsFile(auth.credentialsFile, auth, logger);
  file.load();
  return new Authorizer(auth, file);
}
