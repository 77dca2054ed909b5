// The leafbridge dashboard: one page fed by the agent's server-sent events (GET /api/v1/events).
// Every string from the agent may come from a device: it is set with textContent, never parsed as HTML.

const SVG = 'http://www.w3.org/2000/svg';
const CHART = { width: 600, height: 130, band: 10 };

const state = {
  historySamples: 600,
  samples: [],
  devices: [],
  telemetry: new Map(), // MQTT device id -> {stream, value, bytes, at, count, rate}
  twins: new Map(), // MQTT device id -> {reported, reportedVersion, desired, desiredVersion}
  rows: new Map(), // device name -> row parts
  otherRows: new Map(), // MQTT id -> row parts
};

const $ = (id) => document.getElementById(id);

/** An element with a class and children (strings become text nodes, never markup). */
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) node.append(child);
  return node;
}

function text(node, value) {
  const s = String(value);
  if (node.textContent !== s) node.textContent = s;
}

// ------------------------------------------------------------------------------------------- event stream

// The agent wants a bearer token for everything but this page's files. It is kept in this tab's
// sessionStorage and sent in the Authorization header, never in a URL: EventSource cannot send headers, so
// the stream is read with fetch and its server-sent events parsed here.
const TOKEN_KEY = 'leafbridge.token';
const RETRY_MS = 3000;

const handlers = {
  hello: (d) => {
    text($('node'), `node ${d.node}`);
    state.historySamples = d.historySamples;
  },
  samples: (d) => {
    state.samples = d.items;
    drawSync();
  },
  sample: (d) => {
    state.samples.push(d);
    if (state.samples.length > state.historySamples) state.samples.shift();
    drawSync();
  },
  devices: (d) => {
    state.devices = d.items;
    drawDevices();
  },
  configs: (d) => drawConfigs(d.items),
  twins: (d) => {
    for (const t of d.items) state.twins.set(t.device, t);
    drawDevices();
  },
  telemetry: (d) => {
    for (const t of d.items) state.telemetry.set(t.device, t);
    drawTelemetry();
  },
};

async function connect() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  // Nothing is served without one: ask first rather than be refused.
  if (!token) return askForToken('');
  const headers = { accept: 'text/event-stream', authorization: `Bearer ${token}` };
  let res;
  try {
    res = await fetch('../api/v1/events', { headers, cache: 'no-store' });
  } catch {
    return retry('reconnecting…');
  }
  if (res.status === 401 || res.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    const status = await res.json().catch(() => ({}));
    return askForToken(status.message ?? `refused (${res.status})`);
  }
  if (!res.ok || !res.body) return retry(`refused (${res.status}); retrying`);
  streamState('live', 'live');
  try {
    await readEvents(res.body);
  } catch {
    // the connection broke: reconnect below
  }
  retry('reconnecting…');
}

function retry(label) {
  streamState('down', label);
  setTimeout(connect, RETRY_MS);
}

/** Server-sent events from a byte stream: blocks split by a blank line, `event:` and `data:` fields. */
async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    pending += value.replaceAll('\r\n', '\n');
    const blocks = pending.split('\n\n');
    pending = blocks.pop() ?? '';
    for (const block of blocks) dispatch(block);
  }
}

function dispatch(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  const handle = Object.hasOwn(handlers, event) ? handlers[event] : undefined;
  if (handle && data.length > 0) handle(JSON.parse(data.join('\n')));
}

/** Shows the token form (with why, when a token was refused); a submitted token is kept and tried. */
function askForToken(why) {
  streamState('down', 'token needed');
  const form = $('token-form');
  text($('token-error'), why);
  form.hidden = false;
  $('token').focus();
  form.onsubmit = (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    form.hidden = true;
    streamState('', 'connecting…');
    connect();
  };
}

function streamState(cls, label) {
  const badge = $('stream-state');
  badge.className = `badge ${cls}`;
  text(badge, label);
}

// ----------------------------------------------------------------------------------- upstream and outbox

function drawSync() {
  const samples = state.samples;
  const last = samples.at(-1);
  if (!last) return;
  const upstream = $('upstream-state');
  text(upstream, last.upstream);
  upstream.className = last.upstream;
  text($('outbox-depth'), last.outboxMessages);
  text($('outbox-bytes'), `(${bytes(last.outboxBytes)})`);
  text($('dropped'), last.dropped);
  const prev = samples.at(-2);
  const dt = prev ? (last.t - prev.t) / 1000 : 0;
  text($('rate-in'), dt > 0 ? round((last.received - prev.received) / dt) : '–');
  text($('rate-out'), dt > 0 ? round((last.forwarded - prev.forwarded) / dt) : '–');
  drawChart(samples);
}

function drawChart(samples) {
  const svg = $('chart');
  const { width, height, band } = CHART;
  const first = samples[0];
  const last = samples.at(-1);
  const span = Math.max(1, last.t - first.t);
  const max = niceMax(Math.max(...samples.map((s) => s.outboxMessages)));
  const x = (s) => (((s.t - first.t) / span) * width).toFixed(1);
  const y = (s) => (height - band - 2 - (s.outboxMessages / max) * (height - band - 8)).toFixed(1);
  const points = samples.map((s) => `${x(s)},${y(s)}`);
  const base = height - band - 2;
  const area = svgEl('polygon', {
    class: 'area',
    points: `0,${base} ${points.join(' ')} ${x(last)},${base}`,
  });
  const children = [area, ...upstreamBand(samples, x)];
  svg.replaceChildren(...children);
  text($('chart-max'), max);
  text($('chart-span'), Math.round(span / 1000));
}

/** Runs of one upstream state, as rectangles along the bottom of the chart. */
function upstreamBand(samples, x) {
  const rects = [];
  let start = 0;
  for (let i = 1; i <= samples.length; i++) {
    if (i < samples.length && samples[i].upstream === samples[start].upstream) continue;
    const from = Number(x(samples[start]));
    const to = Number(x(samples[Math.min(i, samples.length - 1)]));
    const attrs = { class: samples[start].upstream, x: from, y: CHART.height - CHART.band };
    rects.push(svgEl('rect', { ...attrs, width: Math.max(1, to - from), height: CHART.band }));
    start = i;
  }
  return rects;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function niceMax(n) {
  if (n <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(n));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= n);
}

// ---------------------------------------------------------------------------------------------- devices

function drawDevices() {
  const tbody = $('device-rows');
  const names = new Set(state.devices.map((d) => d.metadata.name));
  for (const [name, row] of state.rows) {
    if (!names.has(name)) {
      row.tr.remove();
      state.rows.delete(name);
    }
  }
  for (const device of state.devices) {
    let row = state.rows.get(device.metadata.name);
    if (!row) {
      row = deviceRow(device.metadata.name);
      state.rows.set(device.metadata.name, row);
    }
    updateDevice(row, device);
    tbody.append(row.tr); // keeps the server's order (by name); moving keeps open <details> open
  }
  $('no-devices').hidden = state.devices.length > 0;
  text($('device-count'), `(${state.devices.length})`);
  drawTelemetry();
}

function deviceRow(name) {
  const cells = {};
  for (const key of ['name', 'config', 'handler', 'online', 'nodes', 'telemetry', 'twin', 'properties'])
    cells[key] = el('td', key);
  const tr = el('tr', '', ...Object.values(cells));
  tr.dataset.device = name;
  const twin = detailsBox();
  const properties = detailsBox();
  return { tr, cells, twin, properties, telemetry: telemetryCell(cells.telemetry) };
}

function detailsBox() {
  const summary = el('summary');
  const pre = el('pre');
  return { details: el('details', '', summary, pre), summary, pre };
}

function updateDevice(row, device) {
  const { cells } = row;
  const spec = device.spec ?? {};
  const status = device.status ?? {};
  row.id = spec.id;
  text(cells.name, device.metadata.name);
  cells.name.title = `id ${spec.id}`;
  text(cells.config, spec.configName ?? '');
  text(cells.handler, spec.handler ?? '');
  const conditions = (status.conditions ?? []).filter((c) => c.status !== 'True');
  cells.online.replaceChildren(
    el('span', status.online ? 'online' : 'offline', status.online ? '● online' : '○ offline'),
    conditionList(conditions),
  );
  cells.online.title = status.lastSeen ? `last seen ${status.lastSeen}` : '';
  text(cells.nodes, (spec.nodes ?? []).join(', '));
  const props = Object.entries(spec.properties ?? {});
  text(row.properties.summary, props.length === 1 ? '1 property' : `${props.length} properties`);
  text(row.properties.pre, props.map(([k, v]) => `${k}=${v}`).join('\n'));
  if (!cells.properties.firstChild) cells.properties.append(row.properties.details);
  updateTwin(row, state.twins.get(spec.id));
}

function updateTwin(row, twin) {
  const cell = row.cells.twin;
  if (!twin || (twin.reportedVersion === 0 && twin.desiredVersion === 0)) {
    text(cell, '–');
    return;
  }
  text(row.twin.summary, `reported v${twin.reportedVersion} · desired v${twin.desiredVersion}`);
  const show = (doc) => JSON.stringify(doc, null, 1);
  text(row.twin.pre, `reported ${show(twin.reported)}\ndesired ${show(twin.desired)}`);
  if (cell.firstChild !== row.twin.details) cell.replaceChildren(row.twin.details);
}

function conditionList(conditions) {
  const box = el('div', 'conditions');
  for (const c of conditions)
    box.append(el('span', `cond ${c.status}`, `${c.type}: ${c.reason} ${c.message ?? ''}`));
  return box;
}

// -------------------------------------------------------------------------------------------- telemetry

function telemetryCell(td) {
  const parts = {
    value: el('div', 'telemetry-value'),
    rate: el('span', 'telemetry-rate'),
    count: el('span', 'telemetry-count'),
  };
  parts.meta = el('div', 'telemetry-meta', parts.rate, '/s · ', parts.count, ' messages');
  td.append(parts.value, parts.meta);
  return parts;
}

function showTelemetry(parts, t) {
  text(parts.value, t ? t.value : '–');
  parts.value.title = t ? `${t.stream} · ${t.bytes} bytes · ${new Date(t.at).toLocaleTimeString()}` : '';
  parts.meta.hidden = !t;
  text(parts.rate, t ? t.rate : 0);
  text(parts.count, t ? t.count : 0);
}

function drawTelemetry() {
  const ids = new Set();
  for (const row of state.rows.values()) {
    ids.add(row.id);
    showTelemetry(row.telemetry, state.telemetry.get(row.id));
  }
  const tbody = $('other-rows');
  for (const [id, t] of state.telemetry) {
    if (ids.has(id)) {
      state.otherRows.get(id)?.tr.remove();
      state.otherRows.delete(id);
      continue;
    }
    let row = state.otherRows.get(id);
    if (!row) {
      const td = el('td', 'telemetry');
      row = { tr: el('tr', '', el('td', 'name', id), td), parts: telemetryCell(td) };
      row.tr.dataset.source = id;
      state.otherRows.set(id, row);
      tbody.append(row.tr);
    }
    showTelemetry(row.parts, t);
  }
  $('other-telemetry').hidden = state.otherRows.size === 0;
}

// ------------------------------------------------------------------------------------------------ configs

function drawConfigs(configs) {
  const rows = configs.map((c) => {
    const spec = c.spec ?? {};
    const tr = el(
      'tr',
      '',
      el('td', 'name', c.metadata.name),
      el('td', 'handler', spec.handler?.name ?? ''),
      el('td', 'capacity', String(spec.capacity ?? '')),
      el('td', 'devices', String(c.status?.devices ?? 0)),
      el('td', '', conditionList(c.status?.conditions ?? [])),
    );
    tr.dataset.config = c.metadata.name;
    return tr;
  });
  $('config-rows').replaceChildren(...rows);
}

// ------------------------------------------------------------------------------------------------- format

function round(n) {
  return Math.round(n * 10) / 10;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${round(n / 1024)} KiB`;
  return `${round(n / 1024 / 1024)} MiB`;
}

connect();
