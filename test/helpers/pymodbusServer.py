"""A Modbus TCP server from Debian's python3-pymodbus (3.0), the third-party peer of the modbus tests.

Unit 1 and 2 answer Read Device Identification (43/14) and hold registers; unit 3 refuses 43/14 with an
exception (illegal function) but holds registers, so a client must fall back to them; pymodbus's framer drops
requests to any other unit id unanswered. Prints {"port": N} once it listens; with `--rtu PATH` it serves
Modbus RTU on that serial port (a pty) instead and prints {"rtu": PATH}.
"""
import asyncio
import json
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.pdu import ExceptionResponse
from pymodbus.server.async_io import ModbusSerialServer, ModbusTcpServer

NO_IDENTITY_UNIT = 3


def unit(first_registers):
    block = ModbusSequentialDataBlock(0, first_registers + [0] * 100)
    return ModbusSlaveContext(hr=block, zero_mode=True)


def refuse_identity(response):
    if response.unit_id == NO_IDENTITY_UNIT and response.function_code == 0x2B:
        refused = ExceptionResponse(0x2B, 0x01)
        refused.transaction_id = response.transaction_id
        refused.unit_id = response.unit_id
        return refused, False
    return response, False


async def main():
    context = ModbusServerContext(
        slaves={1: unit([230, 1, 2]), 2: unit([400, 5, 6]), NO_IDENTITY_UNIT: unit([777, 8, 9])},
        single=False,
    )
    identity = ModbusDeviceIdentification(
        info_name={
            "VendorName": "Pymodbus Works",
            "ProductCode": "PM-3000",
            "MajorMinorRevision": "3.0.0",
        }
    )
    if len(sys.argv) == 3 and sys.argv[1] == "--rtu":
        serial_server = ModbusSerialServer(
            context, identity=identity, port=sys.argv[2], baudrate=9600, response_manipulator=refuse_identity
        )
        await serial_server.start()
        print(json.dumps({"rtu": sys.argv[2]}), flush=True)
        await asyncio.Event().wait()
    server = ModbusTcpServer(
        context,
        identity=identity,
        address=("127.0.0.1", 0),
        response_manipulator=refuse_identity,
    )
    task = asyncio.ensure_future(server.serve_forever())
    await server.serving
    port = server.server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    await task


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
