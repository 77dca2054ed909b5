// What configs naming an external handler carry lives on the ground floor (the CRD generator needs it too).
export { ExternalDetailsSchema, externalHandlerSpecs, withExternal } from '../../model/externalHandlers.js';
