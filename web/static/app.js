// app.js — the `firegate dev` demo page, on @firegate/client (firegate.js is
// its committed browser build). Plain ES2020, no other dependencies. It
// mints tokens from /dev/token, streams a collection or one document, and
// edits documents through the gateway's write path (the `write` message:
// optimistic, pending until confirmed, rolled back when refused).
import { collection, createClient, doc, redactToken, serverTimestamp } from './firegate.js';

const OPS = ['==', '!=', '<', '<=', '>', '>=', 'in', 'not-in', 'array-contains', 'array-contains-any'];
const PREFERRED_COLUMNS = ['title', 'text', 'number', 'customer', 'status', 'visibility', 'assignee',
  'amount_cents', 'currency', 'org_id', 'owner_id', 'created_at'];
const MAX_COLUMNS = 8;
const MAX_LOG = 400;

const $ = (id) => document.getElementById(id);

const state = {
  users: [],
  collections: [],
  user: null, // DemoUser
  org: '', // org id used for tokens ('' = none)
  client: null,
  unsubscribe: null, // stops the current listener
  target: null, // current Query or DocRef
  snap: null, // last Snapshot
  welcome: null,
  rows: new Map(), // doc path -> <tr>
  columns: [],
  simulating: false,
};

// ---------- helpers

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function option(value, label) {
  const o = el('option', { text: label ?? value });
  o.value = value;
  return o;
}

async function api(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = { error: text };
  }
  if (!res.ok) throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

function docURL(path) {
  return '/dev/docs/' + path.split('/').map(encodeURIComponent).join('/');
}

function membership(user, orgID) {
  return (user?.memberships || []).find((m) => m.org_id === orgID);
}

function orgLabel(m) {
  return `${m.org_slug} (${m.org_id}) — ${m.role}`;
}

function collectionInfo(path) {
  return state.collections.find((c) => c.example === path || c.path === path);
}

function showNotice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = !text;
}

// ---------- log pane

function log(direction, payload) {
  if ($('pause-log').checked) return;
  if ($('hide-pings').checked && payload && (payload.type === 'ping' || payload.type === 'pong')) return;
  const list = $('log-list');
  const arrow = direction === 'in' ? '←' : direction === 'out' ? '→' : '•';
  let text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  if (text.length > 3000) text = text.slice(0, 3000) + ` … (${text.length} chars)`;
  const li = el('li', { class: direction }, el('span', { class: 't', text: new Date().toLocaleTimeString() }),
    `${arrow} ${text}`);
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  while (list.children.length > MAX_LOG) list.firstChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---------- identity

function fillOrgSelect(select, user, selected) {
  select.replaceChildren(option('', '(no active org)'));
  for (const m of user?.memberships || []) select.append(option(m.org_id, orgLabel(m)));
  select.value = selected;
}

function onUserChange() {
  state.user = state.users.find((u) => u.id === $('user').value) || null;
  const first = state.user?.memberships?.[0]?.org_id || '';
  fillOrgSelect($('org'), state.user, first);
  fillOrgSelect($('switch-org'), state.user, '');
}

function tokenURL(orgID) {
  const q = new URLSearchParams({ user: state.user.id, ttl: $('ttl').value });
  if (orgID) q.set('org', orgID);
  if (orgID && $('role').value) q.set('role', $('role').value);
  if (orgID && $('permissions').value.trim()) q.set('permissions', $('permissions').value.trim());
  if ($('v2').checked) q.set('v2', '1');
  return '/dev/token?' + q.toString();
}

async function mintToken(orgID) {
  if (!state.user) return null; // signed out: the client closes and clears
  const res = await api('GET', tokenURL(orgID));
  log('note', `minted token for ${res.user_id}${res.org_id ? ' in ' + res.org_id : ''}` +
    ` (${res.org_role || 'no role'}), expires ${res.expires_at}: ${redactToken(res.token)}`);
  return res.token;
}

function renderWelcome(w) {
  const dl = $('welcome');
  dl.replaceChildren();
  if (!w) return;
  const add = (k, v) => dl.append(el('dt', { text: k }), el('dd', { text: v || '—' }));
  add('user_id', w.user_id);
  add('org_id', w.org_id || '(none)');
  add('session_id', w.session_id);
  add('expires_at', w.expires_at);
}

function setConnState(s, detail) {
  const pill = $('conn-state');
  let label = s;
  if (s === 'waiting' && detail && detail.delayMs !== undefined) label = `reconnecting in ${Math.round(detail.delayMs)} ms`;
  pill.textContent = label;
  pill.className = `pill state-${s}`;
  const ready = s === 'ready';
  const live = !['idle', 'closed', 'signed_out'].includes(s);
  $('connect').disabled = live;
  $('disconnect').disabled = !live;
  $('user').disabled = live;
  $('org').disabled = live;
  $('switch').disabled = !ready;
  $('subscribe').disabled = !ready;
  updateDocButtons();
}

function connect() {
  if (!state.user) return;
  state.org = $('org').value;
  if (state.client) state.client.dispose();
  const client = createClient({
    getToken: () => mintToken(state.org),
    onFrame: (dir, frame) => log(dir, frame),
    userId: state.user.id,
    orgId: state.org || null,
    // The cache survives a reload. Each tab of this page picks its own user
    // and org, so tabs do not share a socket here (multi-tab sharing assumes
    // one session per browser, as with Clerk: see the React example).
    persistence: true,
    multiTab: false,
  });
  client.on('state', (s, detail) => {
    setConnState(s, detail);
    if (detail && detail.code && s !== 'ready') {
      log('note', `closed ${detail.code} ${detail.reason || ''}` +
        (detail.willReconnect ? ` — reconnecting in ${Math.round(detail.delayMs)} ms` : ''));
    }
  });
  client.on('welcome', (w, prev) => {
    state.welcome = w;
    renderWelcome(w);
    if (prev && (prev.org_id || '') !== (w.org_id || '')) {
      showNotice(`Active org changed: ${prev.org_id || '(none)'} → ${w.org_id || '(none)'}. ` +
        'Org-scoped subscriptions ended with org_changed and were re-opened.');
    }
    updateDocButtons();
  });
  client.on('error', (err) => showNotice(err.message));
  state.client = client;
  setConnState(client.state);
  if (state.target) openSubscription(state.target);
}

function disconnect() {
  if (state.unsubscribe) state.unsubscribe();
  state.unsubscribe = null;
  if (state.client) state.client.dispose();
  state.client = null;
  state.snap = null;
  state.welcome = null;
  renderWelcome(null);
  setSubInfo();
  stopSimulation();
  setConnState('idle');
}

async function switchOrg() {
  const target = $('switch-org').value;
  if (!state.client) return;
  const previous = state.org;
  state.org = target;
  try {
    // An in-band refresh: the client asks getToken (now for the other org).
    await state.client.refresh();
    $('org').value = target;
    if (state.simulating) await startSimulation();
  } catch (err) {
    state.org = previous;
    showNotice(`switch failed: ${err.message}`);
  }
}

// ---------- subscription

function readTarget() {
  const path = $('collection').value.trim();
  const info = collectionInfo(path);
  const fields = { created_at: 'timestamp' };
  if (path.split('/').length % 2 === 0) return doc(path, { fields });
  let q = collection(path, { fields });
  const field = $('f-field').value.trim();
  if (field) {
    const raw = $('f-value').value.trim();
    let value = raw;
    try {
      value = JSON.parse(raw);
    } catch (_) {
      // a bare word is a string
    }
    q = q.where(field, $('f-op').value, value);
  }
  const order = $('o-field').value.trim();
  if (order) q = q.orderBy(order, $('o-dir').value);
  const limit = parseInt($('limit').value, 10);
  if (limit > 0) q = q.limit(limit);
  void info;
  return q;
}

function setSubInfo() {
  const snap = state.snap;
  if (!state.unsubscribe) {
    $('sub-info').textContent = '';
    $('unsubscribe').disabled = true;
    return;
  }
  $('unsubscribe').disabled = false;
  if (!snap) {
    $('sub-info').textContent = `${state.target.path} · loading`;
    return;
  }
  $('sub-info').textContent = `${state.target.path} · ${snap.status}` +
    (snap.error ? ` (${snap.error.code})` : '') + (snap.fromCache ? ' · from cache' : '') +
    ` · ${snap.docs.length} docs` + (snap.hasPendingWrites ? ' · pending writes' : '');
}

function openSubscription(target) {
  if (state.unsubscribe) state.unsubscribe();
  clearTable();
  showNotice('');
  state.target = target;
  state.snap = null;
  state.unsubscribe = state.client.onSnapshot(target, (snap) => {
    const prev = state.snap;
    state.snap = snap;
    if (snap.error && (!prev || prev.error !== snap.error)) {
      showNotice(`subscription: ${snap.error.message}` + (snap.status === 'error' ? '' : ' (retrying)'));
    }
    renderTable(snap);
    setSubInfo();
  });
  setSubInfo();
  updateDocButtons();
}

function subscribe() {
  if (!state.client) return;
  try {
    openSubscription(readTarget());
  } catch (err) {
    showNotice(err.message);
  }
}

function unsubscribe() {
  if (state.unsubscribe) state.unsubscribe();
  state.unsubscribe = null;
  state.target = null;
  state.snap = null;
  clearTable();
  setSubInfo();
  updateDocButtons();
}

// ---------- table

function clearTable() {
  $('table').tHead.replaceChildren();
  $('table').tBodies[0].replaceChildren();
  state.rows.clear();
  state.columns = [];
  $('empty').hidden = false;
}

function columnsFor(docs) {
  const keys = new Set();
  for (const d of docs) for (const k of Object.keys(d.data || {})) keys.add(k);
  const cols = PREFERRED_COLUMNS.filter((k) => keys.has(k));
  for (const k of [...keys].sort()) if (!cols.includes(k)) cols.push(k);
  return cols.slice(0, MAX_COLUMNS);
}

function formatValue(v) {
  if (v === undefined) return '';
  if (v === null) return 'null';
  if (typeof v === 'object' && typeof v.toISOString === 'function') return v.toISOString();
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function flash(tr, kind) {
  tr.classList.remove('flash-added', 'flash-modified');
  void tr.offsetWidth; // restart the animation
  tr.classList.add(kind === 'added' ? 'flash-added' : 'flash-modified');
}

function actionButtons(d) {
  const cell = el('td', { class: 'actions' });
  const data = d.data || {};
  if (typeof data.status === 'string') {
    const next = { open: 'done', done: 'open', due: 'paid', paid: 'due' }[data.status] || 'open';
    cell.append(el('button', {
      class: 'small', text: `→ ${next}`, title: 'update status',
      onclick: () => write(`update ${d.path}`, state.client.update(d.path, { status: next })),
    }));
  }
  if (typeof data.visibility === 'string') {
    const next = data.visibility === 'private' ? 'public' : 'private';
    cell.append(el('button', {
      class: 'small', text: `→ ${next}`, title: 'update visibility',
      onclick: () => write(`update ${d.path}`, state.client.update(d.path, { visibility: next })),
    }));
  }
  cell.append(el('button', { class: 'small', text: 'delete', title: 'delete',
    onclick: () => write(`delete ${d.path}`, state.client.delete(d.path)) }));
  return cell;
}

function fillRow(tr, d) {
  const cells = [el('td', { class: 'mono', text: d.id })];
  for (const c of state.columns) cells.push(el('td', { text: formatValue(d.data?.[c]) }));
  cells.push(el('td', { class: 'mono muted', text: d.pending ? 'pending…' : (d.updateTime || '') }));
  cells.push(actionButtons(d));
  tr.replaceChildren(...cells);
  tr.classList.toggle('pending', d.pending);
  tr.dataset.id = d.id;
  tr.dataset.pending = String(d.pending);
}

function renderTable(snap) {
  const table = $('table');
  const tbody = table.tBodies[0];
  const docs = snap.docs;
  const cols = columnsFor(docs);
  const colsChanged = cols.join('\u0000') !== state.columns.join('\u0000');
  if (colsChanged) {
    state.columns = cols;
    const head = el('tr', {}, el('th', { text: 'id' }));
    for (const c of cols) head.append(el('th', { text: c }));
    head.append(el('th', { text: 'update_time' }), el('th', { text: '' }));
    table.tHead.replaceChildren(head);
  }
  const kinds = new Map(snap.docChanges().map((c) => [c.doc.path, c.type]));
  const live = new Set(docs.map((d) => d.path));
  // Rows of removed documents stay a moment, struck through.
  for (const [path, tr] of state.rows) {
    if (!live.has(path)) {
      state.rows.delete(path);
      tr.classList.add('removed');
      setTimeout(() => tr.remove(), 900);
    }
  }
  let anchor = tbody.firstChild;
  for (const d of docs) {
    let tr = state.rows.get(d.path);
    const kind = kinds.get(d.path);
    if (!tr) {
      tr = el('tr');
      state.rows.set(d.path, tr);
      fillRow(tr, d);
    } else if (kind || colsChanged) {
      fillRow(tr, d);
    }
    while (anchor && anchor.classList.contains('removed')) anchor = anchor.nextSibling;
    if (anchor !== tr) tbody.insertBefore(tr, anchor);
    else anchor = anchor.nextSibling;
    if (kind === 'added' || kind === 'modified') flash(tr, kind);
  }
  $('empty').hidden = docs.length > 0;
}

// ---------- writes through the gateway (the `write` message)

function currentCollection() {
  const t = state.target;
  if (!t) return $('collection').value;
  return t.kind === 'doc' ? t.parent : t.path;
}

function updateDocButtons() {
  const ready = state.client?.state === 'ready';
  $('add').disabled = !ready || !state.target;
  const org = state.welcome?.org_id || '';
  $('simulate').disabled = !ready || !org;
}

function newDocument(collectionPath) {
  const info = collectionInfo(collectionPath);
  const title = $('new-title').value.trim() || 'Untitled';
  const base = { created_at: serverTimestamp() };
  if (info?.scope === 'user') base[info.scope_field || 'user_id'] = state.user.id;
  // Org scope: the gateway stamps the scope field (org_id) itself.
  if (collectionPath.endsWith('tasks')) {
    return { ...base, title, status: 'open', visibility: $('new-visibility').value, assignee: state.user.id };
  }
  if (collectionPath === 'invoices') {
    return { ...base, number: `INV-${Math.floor(Math.random() * 9000) + 1000}`, customer: title,
      amount_cents: Math.floor(Math.random() * 100000), currency: 'USD', status: 'due' };
  }
  if (collectionPath === 'notes') return { ...base, text: title };
  return { ...base, title };
}

async function write(what, promise) {
  try {
    const ack = await promise;
    log('note', `${what}: committed at ${ack.commitTime}`);
  } catch (err) {
    showNotice(`${what} refused — rolled back: ${err.message}`);
  }
}

function addDoc() {
  const col = currentCollection();
  write(`add to ${col}`, state.client.add(col, newDocument(col)));
}

async function startSimulation() {
  const org = state.welcome?.org_id;
  if (!org) return;
  const q = new URLSearchParams({ on: '1', org, rate: $('sim-rate').value });
  try {
    await stopSimulation(true);
    const res = await api('POST', '/dev/simulate?' + q.toString());
    state.simulating = true;
    state.simOrg = org;
    log('note', `simulating activity in ${res.org} at ${res.rate}/s`);
  } catch (err) {
    $('simulate').checked = false;
    showNotice(`simulate failed: ${err.message}`);
  }
}

async function stopSimulation(quiet) {
  if (!state.simulating) return;
  state.simulating = false;
  const org = state.simOrg;
  if (!quiet) $('simulate').checked = false;
  try {
    await api('POST', '/dev/simulate?' + new URLSearchParams({ on: '0', org }).toString());
    if (!quiet) log('note', `simulation in ${org} stopped`);
  } catch (err) {
    showNotice(`stopping simulation failed: ${err.message}`);
  }
}

// ---------- boot

async function boot() {
  for (const op of OPS) $('f-op').append(option(op));
  let info;
  try {
    info = await api('GET', '/dev/users');
  } catch (err) {
    showNotice(`cannot load /dev/users: ${err.message} (the dev endpoints answer loopback callers only)`);
    return;
  }
  state.users = info.users || [];
  state.collections = info.collections || [];
  for (const u of state.users) {
    const orgs = (u.memberships || []).map((m) => `${m.org_slug}:${m.role.replace('org:', '')}`).join(', ');
    $('user').append(option(u.id, `${u.name} — ${orgs || 'no org'}`));
  }
  for (const c of state.collections) {
    $('collection').append(option(c.example || c.path, `${c.example || c.path} (${c.scope} scope)`));
  }
  onUserChange();
  $('user').addEventListener('change', onUserChange);
  $('connect').addEventListener('click', connect);
  $('disconnect').addEventListener('click', disconnect);
  $('switch').addEventListener('click', switchOrg);
  $('subscribe').addEventListener('click', subscribe);
  $('unsubscribe').addEventListener('click', unsubscribe);
  $('add').addEventListener('click', addDoc);
  $('simulate').addEventListener('change', () => ($('simulate').checked ? startSimulation() : stopSimulation()));
  $('sim-rate').addEventListener('change', () => { if (state.simulating) startSimulation(); });
  $('clear-log').addEventListener('click', () => $('log-list').replaceChildren());
  window.addEventListener('beforeunload', () => {
    if (state.simulating) {
      navigator.sendBeacon?.('/dev/simulate?' + new URLSearchParams({ on: '0', org: state.simOrg }).toString());
    }
  });
  setConnState('idle');
}

boot();
