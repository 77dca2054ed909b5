#!/usr/bin/python3
"""A test-pattern RTSP server for the simulated camera, which answers ONVIF but streams nothing itself.

The camera simulator reports stream URIs rtsp://ADDR:8554/<profile token> (`leafbridge simulate camera
--rtsp-base URI`); this serves a scrolling test pattern (MJPEG over RTP, RFC 2435) at those paths, so the
camera broker has something to read.

    /usr/bin/python3 examples/camera-broker/rtsp_source.py [--address 127.0.0.1] [--port 8554]
        [--path profile_main --path profile_sub] [--width 320 --height 240 --fps 10]

Prints one JSON line, {"port": N, "paths": [...]}, once it listens (--port 0 takes a free port); stops on
SIGTERM or SIGINT. Needs GStreamer's RTSP server (Debian: gir1.2-gst-rtsp-server-1.0 python3-gi
gstreamer1.0-plugins-base gstreamer1.0-plugins-good).
"""
import argparse
import json
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", action="append", help="mount path (repeatable)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()
    paths = args.path or ["profile_main", "profile_sub"]

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    # jpegenc needs I420 for rtpjpegpay to send it (RTP/JPEG types 0 and 1 are 4:2:2 and 4:2:0 only).
    launch = (
        f"( videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width={args.width},height={args.height},"
        f"framerate={args.fps}/1 ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=85 ! "
        "rtpjpegpay name=pay0 pt=26 )"
    )
    mounts = server.get_mount_points()
    for path in paths:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        mounts.add_factory("/" + path.lstrip("/"), factory)
    if server.attach(None) == 0:
        print(f"rtsp_source: cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1
    print(json.dumps({"port": server.get_bound_port(), "paths": paths}), flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
