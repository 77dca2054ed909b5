"""An Akri discovery handler in Python: the example of examples/akri-handler, run by test/interop/akriPythonHandler.

It speaks Akri's v0 protocol the way Akri's own handlers do: it serves the DiscoveryHandler service on
DIR/NAME.sock, registers with the agent on DIR/agent-registration.sock, and streams device lists. The
protobuf messages are encoded and decoded here by hand (grpcio's generic handlers, no generated code), so
nothing of leafbridge's own .proto is shared with it.

The devices are read from a JSON file (a list of {id, properties, mounts, device_specs}), polled, and sent
again whenever it changes. The discovery details received are written to DETAILS_OUT.
"""
import argparse
import json
import os
import sys
import time
from concurrent import futures

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_str(num, s):
    return field_bytes(num, s.encode()) if s else b""


def field_varint(num, n):
    return varint(num << 3) + varint(n) if n else b""


def read_varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def fields(buf):
    """(field number, wire type, value) of each field of one message."""
    i = 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        yield num, wire, value


def encode_register(req):
    name, endpoint, shared = req
    # endpoint_type 0 = UDS
    return field_str(1, name) + field_str(2, endpoint) + field_varint(4, 1 if shared else 0)


def decode_discover_request(buf):
    details = ""
    for num, _, value in fields(buf):
        if num == 1:
            details = value.decode()
    return details


def encode_device(d):
    out = field_str(1, d["id"])
    for k, v in sorted(d.get("properties", {}).items()):
        out += field_bytes(2, field_str(1, k) + field_str(2, v))
    for m in d.get("mounts", []):
        out += field_bytes(3, field_str(1, m["container_path"]) + field_str(2, m["host_path"])
                           + field_varint(3, 1 if m.get("read_only") else 0))
    for s in d.get("device_specs", []):
        out += field_bytes(4, field_str(1, s["container_path"]) + field_str(2, s["host_path"])
                           + field_str(3, s.get("permissions", "")))
    return out


def encode_response(devices):
    return b"".join(field_bytes(1, encode_device(d)) for d in devices)


def read_devices(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return "[]"


class Handler:
    def __init__(self, devices_file, details_out):
        self.devices_file = devices_file
        self.details_out = details_out

    def discover(self, details, context):
        with open(self.details_out, "w") as f:
            f.write(details)
        last = None
        while context.is_active():
            text = read_devices(self.devices_file)
            if text != last:
                last = text
                yield json.loads(text)
            time.sleep(0.1)


def register(directory, name, endpoint, shared):
    channel = grpc.insecure_channel("unix:" + os.path.join(directory, "agent-registration.sock"))
    call = channel.unary_unary(
        "/v0.Registration/RegisterDiscoveryHandler",
        request_serializer=encode_register,
        response_deserializer=lambda b: b,
    )
    deadline = time.time() + 20
    while True:
        try:
            call((name, endpoint, shared), timeout=2)
            return
        except grpc.RpcError as e:
            if time.time() > deadline:
                raise
            print("registration failed, retrying: %s" % e.code(), flush=True)
            time.sleep(0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--shared", action="store_true")
    p.add_argument("--devices", required=True)
    p.add_argument("--details-out", required=True)
    a = p.parse_args()
    endpoint = os.path.join(a.dir, a.name + ".sock")
    if os.path.exists(endpoint):
        os.unlink(endpoint)
    handler = Handler(a.devices, a.details_out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("v0.DiscoveryHandler", {
        "Discover": grpc.unary_stream_rpc_method_handler(
            handler.discover,
            request_deserializer=decode_discover_request,
            response_serializer=encode_response,
        ),
    }),))
    server.add_insecure_port("unix:" + endpoint)
    server.start()
    register(a.dir, a.name, endpoint, a.shared)
    print("registered", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())
