import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { OnvifError, OnvifErrorCode } from './errors.js';

/** A parsed element: child elements by local name (repeated ones as arrays), attributes as `@_name`. */
export interface XmlElement {
  readonly [name: string]: XmlContent;
}
export type XmlContent = string | XmlElement | XmlContent[];

const maxDepth = 64;
const forbidden = /<!(DOCTYPE|ENTITY)/i;

const parser = new XMLParser({
  removeNSPrefix: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  maxNestedTags: maxDepth,
  tagValueProcessor: (_name, value) => decodeXmlText(value),
  attributeValueProcessor: (_name, value) => decodeXmlText(value),
});

const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes the five predefined entities and character references; nothing else is ever expanded. */
export function decodeXmlText(value: string): string {
  if (!value.includes('&')) return value;
  return value.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/g, (whole, ref: string) => {
    if (ref.startsWith('#')) {
      const code = ref[1] === 'x' ? Number.parseInt(ref.slice(2), 16) : Number.parseInt(ref.slice(1), 10);
      return code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return named[ref] ?? whole;
  });
}

/**
 * Parses untrusted XML. Refuses any DOCTYPE or ENTITY declaration (no entity expansion, no external
 * entities), refuses malformed documents, and limits nesting. Namespace prefixes are dropped.
 */
export function parseXml(text: string): XmlElement {
  if (forbidden.test(text)) {
    throw new OnvifError(OnvifErrorCode.rejectedXml, 'XML with a DOCTYPE or ENTITY declaration refused');
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    throw new OnvifError(OnvifErrorCode.malformedResponse, `malformed XML: ${valid.err.msg}`);
  }
  try {
    return asElement(parser.parse(text)) ?? {};
  } catch (err) {
    throw new OnvifError(OnvifErrorCode.malformedResponse, `unparsable XML: ${String(err)}`, { cause: err });
  }
}

function isElement(value: unknown): value is XmlElement {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The element itself, or the first of a repeated element. */
export function asElement(value: unknown): XmlElement | undefined {
  const first = Array.isArray(value) ? value[0] : value;
  return isElement(first) ? first : undefined;
}

/** The child elements named `name` (none, one or many). Empty elements count, as `{}`. */
export function children(parent: XmlElement | undefined, name: string): XmlElement[] {
  const value = parent?.[name];
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((item) => (isElement(item) ? item : { '#text': typeof item === 'string' ? item : '' }));
}

/** Follows a path of local names, taking the first element at each step. */
export function at(parent: XmlElement | undefined, ...path: string[]): XmlElement | undefined {
  let current = parent;
  for (const name of path) current = children(current, name)[0];
  return current;
}

/** The trimmed text of the element at `path`, or undefined when absent or empty. */
export function textAt(parent: XmlElement | undefined, ...path: string[]): string | undefined {
  const element = at(parent, ...path);
  const value = element?.['#text'];
  const text = typeof value === 'string' ? value.trim() : undefined;
  return text ? text : undefined;
}

export function attribute(element: XmlElement | undefined, name: string): string | undefined {
  const value = element?.[`@_${name}`];
  return typeof value === 'string' ? value : undefined;
}

/** Escapes text for an XML element or attribute. */
export function escapeXml(value: string): string {
  return value.replace(
    /[<>&"']/g,
    (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`,
  );
}
