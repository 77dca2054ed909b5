import { Type } from '@sinclair/typebox';
import type { DiscoveryHandler } from './handler.js';

// The shape of external handlers (src/discovery/external/ runs them): shared vocabulary, since the install
// (src/install/) writes their names and details schema into the DiscoveryConfig CRD.

/**
 * Any details: they go to the handler as Akri sends them, one YAML document. `discoveryDetails` alone, as a
 * string, is sent as it is (an Akri Configuration's `discoveryHandler.discoveryDetails`, copied over).
 */
export const ExternalDetailsSchema = Type.Object(
  {
    discoveryDetails: Type.Optional(
      Type.String({
        description: 'YAML sent to the handler as it is; without it, the details themselves as YAML',
      }),
    ),
  },
  { additionalProperties: true },
);

/** The handlers configs may name: `external` ones in place of built-in ones of the same name. */
export function withExternal(
  builtin: readonly DiscoveryHandler[],
  external: readonly DiscoveryHandler[],
): DiscoveryHandler[] {
  const names = new Set(external.map((h) => h.name));
  return [...builtin.filter((h) => !names.has(h.name)), ...external];
}

/** What checking a config needs of external handlers (their names and schema), before any runs. */
export function externalHandlerSpecs(names: readonly string[]): DiscoveryHandler[] {
  return names.map((name) => ({
    name,
    shared: false,
    detailsSchema: ExternalDetailsSchema,
    discover: () => {
      throw new Error(`${name}: a specification only`);
    },
  }));
}
