import { stringify } from 'yaml';
import { DiscoveryConfigEntrySchema } from '../config/schema.js';
import { inlineSecretRefusal } from '../model/discoveryConfigs.js';
import type { DiscoveryHandler } from '../model/handler.js';
import { API_GROUP } from '../model/resources.js';
import { foldHandlerDetails } from './handlerDetails.js';
import {
  CONFIG_NAME_PATTERN,
  DeviceSpecSchema,
  DeviceStatusSchema,
  DiscoveryConfigStatusSchema,
} from './schemas.js';
import { type JsonSchemaProps, toStructural } from './structural.js';

export const CRD_VERSION = 'v1alpha1';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
}

/** An apiextensions.k8s.io/v1 CustomResourceDefinition, as leafbridge generates them. */
export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: 'Namespaced' | 'Cluster';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      schema: { openAPIV3Schema: JsonSchemaProps };
    }[];
  };
}

const AGE: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
const VALID = '.status.conditions[?(@.type=="Valid")]';

/**
 * The CRDs for DiscoveryConfig and Device, generated from the schemas the code validates with: the config
 * file's `DiscoveryConfigEntrySchema` (spec), each handler's `detailsSchema` (folded into spec.handler, see
 * handlerDetails.ts), and src/install/schemas.ts (Device, statuses). deploy/crds/ holds their YAML; a test
 * keeps it in step.
 *
 * Short names: `lbdc` rather than `dc`, which OpenShift's DeploymentConfig has taken; `dev` and `lbdev`.
 * `kubectl get leafbridge` lists both kinds (the category).
 */
export function crdManifests(handlers: readonly DiscoveryHandler[]): CustomResourceDefinition[] {
  return [discoveryConfigCrd(handlers), deviceCrd()];
}

function discoveryConfigCrd(handlers: readonly DiscoveryHandler[]): CustomResourceDefinition {
  const spec = toStructural(DiscoveryConfigEntrySchema.properties.spec, 'spec');
  spec.description = 'What to look for, and how found devices are offered to pods.';
  spec.properties!.handler = refuseInlineSecrets(foldHandlerDetails(spec.properties!.handler!, handlers));
  return crd({
    kind: 'DiscoveryConfig',
    plural: 'discoveryconfigs',
    shortNames: ['lbdc'],
    description: 'What a leafbridge agent looks for: a discovery handler and its settings.',
    name: { type: 'string', pattern: CONFIG_NAME_PATTERN },
    spec,
    status: toStructural(DiscoveryConfigStatusSchema, 'status'),
    columns: [
      { name: 'Handler', type: 'string', jsonPath: '.spec.handler.name' },
      { name: 'Capacity', type: 'integer', jsonPath: '.spec.capacity' },
      { name: 'Devices', type: 'integer', jsonPath: '.status.devices' },
      { name: 'Valid', type: 'string', jsonPath: `${VALID}.status` },
      AGE,
      { name: 'Reason', type: 'string', jsonPath: `${VALID}.message`, priority: 1 },
    ],
  });
}

/**
 * An object with a field `X` beside an `XSecretRef` (a password) gets a CEL rule that refuses a non-empty
 * inline `X`, with the message the agent gives (model/discoveryConfigs.ts): the API server then refuses such
 * an object at `kubectl apply`, before it is stored where every reader of DiscoveryConfigs would see the
 * secret. The rule sits on the object, not the string: a rule on the string makes the API server quote the
 * value in its answer (`Invalid value: "the password"`); on the object, with `fieldPath`, it quotes
 * nothing. The field stays in the schema, so objects stored before still load and the refusal names what
 * to use.
 */
export function refuseInlineSecrets(schema: JsonSchemaProps): JsonSchemaProps {
  const out: JsonSchemaProps = { ...schema };
  if (schema.properties) {
    const props = schema.properties;
    out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, refuseInlineSecrets(v)]));
    const rules = Object.keys(props)
      .filter((k) => `${k}SecretRef` in props && props[k]?.type === 'string')
      .map((k) => ({
        rule: `!has(self.${k}) || self.${k} == ''`,
        message: inlineSecretRefusal(k),
        fieldPath: `.${k}`,
      }));
    if (rules.length > 0)
      out['x-kubernetes-validations'] = [...(schema['x-kubernetes-validations'] ?? []), ...rules];
  }
  if (schema.items) out.items = refuseInlineSecrets(schema.items);
  if (schema.additionalProperties)
    out.additionalProperties = refuseInlineSecrets(schema.additionalProperties);
  for (const k of ['anyOf', 'oneOf', 'allOf'] as const) {
    const list = schema[k];
    if (list) out[k] = list.map(refuseInlineSecrets);
  }
  return out;
}

function deviceCrd(): CustomResourceDefinition {
  return crd({
    kind: 'Device',
    plural: 'devices',
    shortNames: ['dev', 'lbdev'],
    description: 'A leaf device found by a leafbridge agent, offered to pods as an extended resource.',
    // <config>-<16 hex> (src/model/naming.ts); 63 at most, so the name fits a label value and the resource
    // name leafbridge.io/<name>.
    name: { type: 'string', maxLength: 63 },
    spec: toStructural(DeviceSpecSchema, 'spec'),
    status: toStructural(DeviceStatusSchema, 'status'),
    columns: [
      { name: 'Config', type: 'string', jsonPath: '.spec.configName' },
      { name: 'Handler', type: 'string', jsonPath: '.spec.handler' },
      { name: 'Online', type: 'boolean', jsonPath: '.status.online' },
      { name: 'Nodes', type: 'string', jsonPath: '.spec.nodes' },
      AGE,
      { name: 'ID', type: 'string', jsonPath: '.spec.id', priority: 1 },
      { name: 'Capacity', type: 'integer', jsonPath: '.spec.capacity', priority: 1 },
      { name: 'Last Seen', type: 'date', jsonPath: '.status.lastSeen', priority: 1 },
    ],
  });
}

interface CrdParts {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  name: JsonSchemaProps;
  spec: JsonSchemaProps;
  status: JsonSchemaProps;
  columns: PrinterColumn[];
}

function crd(p: CrdParts): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${p.plural}.${API_GROUP}`, labels: { 'app.kubernetes.io/part-of': 'leafbridge' } },
    spec: {
      group: API_GROUP,
      names: {
        kind: p.kind,
        listKind: `${p.kind}List`,
        plural: p.plural,
        singular: p.kind.toLowerCase(),
        shortNames: p.shortNames,
        categories: ['leafbridge'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: p.columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: p.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object', properties: { name: p.name } },
                spec: p.spec,
                status: p.status,
              },
            },
          },
        },
      ],
    },
  };
}

const HEADER =
  "# Generated from the code's schemas by crdFiles() in src/install/crds.ts; do not edit.\n" +
  '# Regenerate: npx vitest run test/unit/crds.test.ts -u\n';

/** The file name and YAML text of each CRD, as deploy/crds/ holds them. */
export function crdFiles(handlers: readonly DiscoveryHandler[]): { file: string; text: string }[] {
  return crdManifests(handlers).map((c) => ({
    file: `${c.spec.group}_${c.spec.names.plural}.yaml`,
    text: `${HEADER}${stringify(c, { lineWidth: 0 })}`,
  }));
}
