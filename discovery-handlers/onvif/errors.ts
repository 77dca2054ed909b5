import { LeafbridgeError } from '../../src/util/errors.js';

/** Why talking to a camera failed; each code becomes the `reason` of a device condition. */
export const OnvifErrorCode = {
  notAuthorized: 'NotAuthorized',
  timeout: 'Timeout',
  responseTooLarge: 'ResponseTooLarge',
  rejectedXml: 'RejectedXml',
  malformedResponse: 'MalformedResponse',
  soapFault: 'SoapFault',
  httpError: 'HttpError',
  connectionFailed: 'ConnectionFailed',
  badAddress: 'BadAddress',
  aborted: 'Aborted',
} as const;

export type OnvifErrorCode = (typeof OnvifErrorCode)[keyof typeof OnvifErrorCode];

export class OnvifError extends LeafbridgeError {
  declare readonly code: OnvifErrorCode;
  constructor(code: OnvifErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export function onvifErrorCode(err: unknown): OnvifErrorCode {
  return err instanceof OnvifError ? err.code : OnvifErrorCode.connectionFailed;
}
