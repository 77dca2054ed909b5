import { type FieldError, isObject } from './kubeSchema.js';

/**
 * What the real API server validates in built-in kinds, for the parts leafbridge writes: object names
 * (apimachinery pkg/util/validation) and a pod spec's required node affinity (k8s pkg/apis/core/validation
 * ValidateNodeSelector), with the real messages and field paths. The test server reports them as 422 Invalid.
 * Everything else about built-in kinds stays unchecked.
 */

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const DNS1035_LABEL = '[a-z]([-a-z0-9]*[a-z0-9])?';

/** apimachinery's RegexError: the message, examples, and the regex. */
function regexError(msg: string, format: string, ...examples: string[]): string {
  const shown = examples.map((e, i) => `${i > 0 ? ' or ' : ''}'${e}', `).join('');
  return `${msg} (e.g. ${shown}regex used for validation is '${format}')`;
}

const maxLenError = (n: number) => `must be no more than ${n} characters`;

/** IsDNS1123Subdomain: the name rule of most kinds (Pods, Jobs, custom resources). */
export function dns1123SubdomainErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 253) errs.push(maxLenError(253));
  if (!new RegExp(`^${DNS1123_SUBDOMAIN}$`).test(value)) {
    errs.push(
      regexError(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        DNS1123_SUBDOMAIN,
        'example.com',
      ),
    );
  }
  return errs;
}

/**
 * IsDNS1035Label: the name rule of Services (ValidateServiceName) up to Kubernetes 1.35; 1.36 relaxed it to a
 * DNS-1123 label by default (RelaxedServiceNameValidation), and this server reports v1.31.
 */
export function dns1035LabelErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push(maxLenError(63));
  if (!new RegExp(`^${DNS1035_LABEL}$`).test(value)) {
    errs.push(
      regexError(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
        DNS1035_LABEL,
        'my-name',
        'abc-123',
      ),
    );
  }
  return errs;
}

// ------------------------------------------------------------------------------------------ node affinity

const record = (v: unknown): Record<string, unknown> | undefined => (isObject(v) ? v : undefined);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

const required = (field: string, detail: string): FieldError => ({
  reason: 'FieldValueRequired',
  field,
  message: `Required value: ${detail}`,
});
const invalid = (field: string, value: unknown, detail: string): FieldError => ({
  reason: 'FieldValueInvalid',
  field,
  message: `Invalid value: ${JSON.stringify(value ?? '')}: ${detail}`,
});
const forbidden = (field: string, detail: string): FieldError => ({
  reason: 'FieldValueForbidden',
  field,
  message: `Forbidden: ${detail}`,
});

/** The errors of a pod spec at `path` (`spec`, or `spec.template.spec` in a Job): its required node affinity. */
export function podSpecErrors(spec: unknown, path: string): FieldError[] {
  const nodeAffinity = record(record(record(spec)?.affinity)?.nodeAffinity);
  const selector = record(nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution);
  if (!selector) return [];
  return nodeSelectorErrors(
    selector,
    `${path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`,
  );
}

/** ValidateNodeSelector: at least one term; each term's expressions and field requirements. */
function nodeSelectorErrors(selector: Record<string, unknown>, path: string): FieldError[] {
  const terms = list(selector.nodeSelectorTerms);
  if (terms.length === 0) {
    return [required(`${path}.nodeSelectorTerms`, 'must have at least one node selector term')];
  }
  return terms.flatMap((term, i) => {
    const at = `${path}.nodeSelectorTerms[${i}]`;
    const t = record(term) ?? {};
    return [
      ...list(t.matchExpressions).flatMap((r, j) =>
        expressionErrors(record(r) ?? {}, `${at}.matchExpressions[${j}]`),
      ),
      ...list(t.matchFields).flatMap((r, j) => fieldErrors(record(r) ?? {}, `${at}.matchFields[${j}]`)),
    ];
  });
}

/** ValidateNodeSelectorRequirement, its operator and value count (not the label key and value formats). */
function expressionErrors(r: Record<string, unknown>, at: string): FieldError[] {
  const values = list(r.values);
  switch (r.operator) {
    case 'In':
    case 'NotIn':
      return values.length === 0
        ? [required(`${at}.values`, "must be specified when `operator` is 'In' or 'NotIn'")]
        : [];
    case 'Exists':
    case 'DoesNotExist':
      return values.length > 0
        ? [forbidden(`${at}.values`, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")]
        : [];
    case 'Gt':
    case 'Lt':
      return values.length !== 1
        ? [required(`${at}.values`, "must be specified single value when `operator` is 'Lt' or 'Gt'")]
        : [];
    default:
      return [invalid(`${at}.operator`, r.operator, 'not a valid selector operator')];
  }
}

/**
 * ValidateNodeFieldSelectorRequirement: the only key is `metadata.name` (a node name), the operator In or
 * NotIn, and exactly one value.
 */
function fieldErrors(r: Record<string, unknown>, at: string): FieldError[] {
  const errs: FieldError[] = [];
  const values = list(r.values);
  if (r.operator !== 'In' && r.operator !== 'NotIn') {
    errs.push(invalid(`${at}.operator`, r.operator, 'not a valid selector operator'));
  } else if (values.length !== 1) {
    errs.push(
      required(
        `${at}.values`,
        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
      ),
    );
  }
  if (r.key !== 'metadata.name') {
    errs.push(invalid(`${at}.key`, r.key, 'not a valid field selector key'));
    return errs;
  }
  values.forEach((v, k) => {
    for (const msg of dns1123SubdomainErrors(String(v))) errs.push(invalid(`${at}.values[${k}]`, v, msg));
  });
  return errs;
}
