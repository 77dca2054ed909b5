#!/usr/bin/env bash
# Installs the Debian packages the test suite runs as real peers. Idempotent: does nothing when all are present.
set -euo pipefail

packages=(
  mosquitto mosquitto-clients   # the interop broker and its command-line clients
  socat                         # pseudo-terminal pairs for serial devices, TCP proxies
  onvif-tools                   # onvif-util reads the camera stub (interop)
  iproute2                      # network namespaces for multicast tests
  util-linux                    # unshare
  chromium                      # headless browser for the dashboard test (test/e2e, through playwright-core)
  python3-paho-mqtt             # an independent MQTT client (run with /usr/bin/python3): test/interop/pahoSessions, test/conformance
  python3-grpcio                # an Akri discovery handler in Python (messages encoded by hand, no grpc-tools): test/interop/akriPythonHandler, examples/akri-handler
  python3-pymodbus python3-serial python3-serial-asyncio  # a Modbus TCP server nobody here wrote (test/interop/modbusPymodbus); pymodbus 3.0 imports both serial modules
  ffmpeg                        # the camera-broker example grabs frames with it; ffprobe checks them
  openssl                       # makes the CAs and certificates of the TLS tests (test/helpers/tlsCerts, controlPlaneCerts)
  strace                        # counts the fsyncs of store.synchronous (test/integration/storeSynchronous)
  curl                          # fetches the camera stub's snapshot with HTTP Digest (test/interop/onvifClient)
  gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good  # an RTSP source for it
)
# kubectl renders deploy/ (`kubectl kustomize`; test/integration/deploy.test.ts). Any kubectl will do: where
# there is none, Debian's kubernetes-client (kubectl 1.20, whose kustomize v2.0.3 deploy/ is kept within).
# Not when one is there: the package would clash with another package's /usr/bin/kubectl.
command -v kubectl >/dev/null || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: all present (${packages[*]})"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-test-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts mosquitto as a service where systemd runs; the tests start their own instances.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl stop mosquitto || true
fi
