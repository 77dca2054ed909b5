"""Paho (Debian's python3-paho-mqtt 1.6.1) as an independent client for test/conformance/independentClients.test.ts.

argv: HOST PORT CLIENT_ID VERSION(4|5) USER PASS ACTION TOPIC [COUNT]
  subscribe: connect with a persistent session, subscribe TOPIC at QoS 2, disconnect.
  receive:   reconnect the persistent session; print {"sessionPresent": bool}, then one JSON line per message
             (topic, payload, qos, dup, retain) until COUNT arrived or 3 s passed; then disconnect.
Prints {"error": ...} and exits 1 when it cannot connect or subscribe within 5 s.
"""
import json
import sys
import threading

import paho.mqtt.client as mqtt

host, port, client_id, version, user, password, action, topic = sys.argv[1:9]
count = int(sys.argv[9]) if len(sys.argv) > 9 else 0
v5 = version == "5"
client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                     **({} if v5 else {"clean_session": False}))
client.username_pw_set(user, password)
connected = threading.Event()
subscribed = threading.Event()
enough = threading.Event()
received = []


def on_connect(c, userdata, flags, rc, properties=None):
    if rc != 0:
        print(json.dumps({"error": f"CONNACK {rc}"}), flush=True)
        return
    print(json.dumps({"sessionPresent": bool(flags.get("session present"))}), flush=True)
    connected.set()


def on_message(c, userdata, msg):
    received.append(msg)
    print(json.dumps({"topic": msg.topic, "payload": msg.payload.decode(), "qos": msg.qos,
                      "dup": bool(msg.dup), "retain": bool(msg.retain)}), flush=True)
    if count and len(received) >= count:
        enough.set()


client.on_connect = on_connect
client.on_message = on_message
client.on_subscribe = lambda *args: subscribed.set()
kwargs = {}
if v5:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    kwargs = {"clean_start": False, "properties": props}
client.connect(host, int(port), 30, **kwargs)
client.loop_start()
if not connected.wait(5):
    print(json.dumps({"error": "no CONNACK"}), flush=True)
    sys.exit(1)
if action == "subscribe":
    client.subscribe(topic, qos=2)
    if not subscribed.wait(5):
        print(json.dumps({"error": "no SUBACK"}), flush=True)
        sys.exit(1)
else:
    enough.wait(3)
client.disconnect()
client.loop_stop()
