import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** A parsed element: children by local name (repeated ones as arrays), attributes as `@_name`. */
export interface XmlElement {
  readonly [name: string]: XmlContent;
}
export type XmlContent = string | XmlElement | XmlContent[];

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
  maxNestedTags: 64,
  tagValueProcessor: (_name, value) => unescapeXml(value),
});

/** Parses a request the way a careful camera would: no DOCTYPE, no entities, well-formed or refused. */
export function parseXml(text: string): XmlElement | undefined {
  if (/<!(DOCTYPE|ENTITY)/i.test(text) || XMLValidator.validate(text) !== true) return undefined;
  try {
    const parsed: unknown = parser.parse(text);
    return isElement(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function isElement(value: unknown): value is XmlElement {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The first element along a path of local names. */
export function at(parent: XmlElement | undefined, ...path: string[]): XmlElement | undefined {
  let current: XmlContent | undefined = parent;
  for (const name of path) {
    const element: XmlContent | undefined = isElement(current) ? current[name] : undefined;
    current = Array.isArray(element) ? element[0] : element;
    if (typeof current === 'string') current = { '#text': current };
  }
  return isElement(current) ? current : undefined;
}

export function textAt(parent: XmlElement | undefined, ...path: string[]): string | undefined {
  const value = at(parent, ...path)?.['#text'];
  return typeof value === 'string' ? value.trim() : undefined;
}

/** Local name of the first child element of `parent` (the SOAP operation inside a Body). */
export function firstChildName(parent: XmlElement | undefined): string | undefined {
  return Object.keys(parent ?? {}).find((k) => !k.startsWith('@_') && k !== '#text');
}

const entities: Record<string, string> = {
  '<': '&lt;',
  '>': '&gt;',
  '&': '&amp;',
  '"': '&quot;',
  "'": '&apos;',
};

export function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => entities[c] ?? c);
}

function unescapeXml(value: string): string {
  return value.replace(
    /&(lt|gt|amp|quot|apos);/g,
    (_m, name: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[name] ?? '',
  );
}
