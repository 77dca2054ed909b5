/** The node-opcua module, loaded on demand: importing it costs ~70 MB, so nothing imports it at the top. */
export type Opcua = typeof import('node-opcua');

export async function loadOpcua(): Promise<Opcua> {
  return import('node-opcua');
}
