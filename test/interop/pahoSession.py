"""Paho (Debian's python3-paho-mqtt) as a persistent-session client for test/interop/pahoSessions.test.ts.

argv: HOST PORT CLIENT_ID VERSION(4|5) ACTION USER PASS
  subscribe: connect with a persistent session, subscribe +/+ at QoS 2, disconnect.
  receive:   reconnect the session; print {"sessionPresent": bool} and one JSON line per message
             received within 3 s.
"""
import json
import sys
import time

import paho.mqtt.client as mqtt

host, port, client_id, version, action, user, password = sys.argv[1:8]
v5 = version == "5"
client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                     **({} if v5 else {"clean_session": False}))
client.username_pw_set(user, password)
state = {"connected": False, "subscribed": False}


def on_connect(c, u, flags, rc, properties=None):
    state["connected"] = True
    print(json.dumps({"sessionPresent": bool(flags.get("session present"))}), flush=True)


def on_message(c, u, msg):
    print(json.dumps({"topic": msg.topic, "payload": msg.payload.decode(), "qos": msg.qos}), flush=True)


client.on_connect = on_connect
client.on_message = on_message
client.on_subscribe = lambda *a: state.update(subscribed=True)
kwargs = {}
if v5:
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    kwargs = {"clean_start": False, "properties": props}
client.connect(host, int(port), 30, **kwargs)
client.loop_start()
deadline = time.time() + 5
while not state["connected"] and time.time() < deadline:
    time.sleep(0.02)
if action == "subscribe":
    client.subscribe("+/+", qos=2)
    while not state["subscribed"] and time.time() < deadline:
        time.sleep(0.02)
else:
    time.sleep(3)
client.disconnect()
client.loop_stop()
