import { describe, expect, it } from 'vitest';
import { debugEchoHandler } from '../../discovery-handlers/debugEcho/index.js';
import { modbusHandler } from '../../discovery-handlers/modbus/index.js';
import { mqttHandler } from '../../discovery-handlers/mqtt/index.js';
import { onvifHandler } from '../../discovery-handlers/onvif/index.js';
import { opcuaHandler } from '../../discovery-handlers/opcua/index.js';
import { serialHandler } from '../../discovery-handlers/serial/index.js';
import { builtinHandlers } from '../../src/builtinHandlers.js';

describe('the handler list', () => {
  it('each lazy entry says what its handler says (name, sharing, schema), so the two cannot drift', () => {
    const real = [onvifHandler, opcuaHandler, serialHandler, mqttHandler, modbusHandler, debugEchoHandler];
    expect(builtinHandlers.map((h) => h.name)).toEqual(real.map((h) => h.name));
    builtinHandlers.forEach((lazy, i) => {
      const h = real[i]!;
      expect(lazy.shared).toBe(h.shared);
      expect(lazy.detailsSchema).toBe(h.detailsSchema);
    });
    const rtu = { serialPorts: [{ path: '/dev/ttyUSB0' }] } as never;
    expect(builtinHandlers[4]!.sharedFor?.(rtu)).toBe(false);
    expect(builtinHandlers[4]!.sharedFor?.({ hosts: ['plc'] } as never)).toBe(
      modbusHandler.sharedFor({ hosts: ['plc'] }),
    );
    expect(modbusHandler.sharedFor(rtu)).toBe(false);
    expect(builtinHandlers[5]!.sharedFor?.({ shared: true } as never)).toBe(
      debugEchoHandler.sharedFor({ shared: true } as never),
    );
  });
});
