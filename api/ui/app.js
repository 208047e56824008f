// The page for site owners. Every value that comes from a report is attacker-controlled: it is
// only ever rendered with textContent / text nodes / setAttribute of non-URL attributes, never
// with innerHTML, and the page's CSP (script-src 'self') blocks any script that slips through.

import { ApiError, call, fp, session } from './api.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

/** An element with text children (strings become text nodes, never markup). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

/** An RFC 3339 time (or Unix seconds) as `YYYY-MM-DD HH:MM:SS UTC`. */
function when(time) {
  if (typeof time === 'number') time = new Date(time * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  return typeof time === 'string' ? time.replace('T', ' ').replace('Z', ' UTC') : '';
}

const count = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;

// --- errors ------------------------------------------------------------------------------------

function showError(failure) {
  const box = $('error');
  box.textContent = failure instanceof ApiError ? failure.message : `error: ${failure}`;
  box.hidden = false;
  if (failure instanceof ApiError && failure.status === 401) logout(box.textContent);
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/** Runs an action, showing its failure instead of throwing. */
async function guarded(action) {
  clearError();
  try {
    await action();
  } catch (failure) {
    showError(failure);
  }
}

// --- login -------------------------------------------------------------------------------------

function logout(message) {
  session.clear();
  $('app').hidden = true;
  $('who').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  if (message) {
    $('error').textContent = message;
    $('error').hidden = false;
  }
}

async function login(event) {
  event.preventDefault();
  const project = $('login-project').value.trim();
  const token = $('login-token').value.trim();
  if (!/^[0-9]+$/.test(project)) {
    showError(new ApiError(0, 'invalid_project', 'the project id is a number'));
    return;
  }
  session.save(token, project);
  $('login-token').value = '';
  await guarded(async () => {
    try {
      await call('GET', '/violations', { query: { limit: 1 } }); // the token works for this project
    } catch (failure) {
      session.clear(); // a reload must not enter with a refused token or project
      throw failure;
    }
    enter();
  });
}

function enter() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('who').textContent = `project ${session.project}`;
  $('who').hidden = false;
  $('logout').hidden = false;
  showTab('violations');
}

// --- tabs --------------------------------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll('.tabs button')) {
    button.classList.toggle('active', button.dataset.tab === name);
  }
  $('violations').hidden = name !== 'violations';
  $('group').hidden = true;
  $('policy').hidden = name !== 'policy';
  $('alerts').hidden = name !== 'alerts';
  if (name === 'violations') guarded(() => loadGroups(false));
  if (name === 'policy') guarded(loadPolicy);
  if (name === 'alerts') guarded(loadAlerts);
}

// --- violation groups --------------------------------------------------------------------------

let cursor = null;

function filters() {
  const form = new FormData($('filters'));
  return {
    kind: form.get('kind').trim(),
    directive: form.get('directive').trim(),
    host: form.get('host').trim(),
    q: form.get('q').trim(),
    include_muted: form.get('include_muted') ? 'true' : '',
  };
}

async function loadGroups(more) {
  const query = filters();
  if (more && cursor) query.cursor = cursor;
  const page = await call('GET', '/violations', { query });
  const body = $('groups').tBodies[0];
  if (!more) body.replaceChildren();
  for (const group of page.groups) body.append(groupRow(group));
  cursor = page.next_cursor;
  $('more').hidden = !cursor;
  $('groups-empty').hidden = body.rows.length > 0;
}

function groupRow(group) {
  const open = el('button', { type: 'button', class: 'link' }, 'Open');
  open.addEventListener('click', () => guarded(() => openGroup(group.fingerprint)));
  const blocked = el('td', { class: 'mono' }, group.blocked);
  if (group.muted) blocked.append(' ', el('span', { class: 'badge' }, 'muted'));
  const row = el(
    'tr',
    { 'data-fingerprint': group.fingerprint },
    el('td', {}, when(group.last_seen)),
    el('td', { class: 'mono' }, group.effective_directive),
    blocked,
    el('td', {}, group.document_host),
    el('td', {}, group.kind),
    el('td', { class: 'num' }, group.occurrences),
    el('td', { class: 'num' }, group.distinct_pages),
    el('td', { class: 'num' }, group.distinct_client_networks),
    el('td', {}, open),
  );
  return row;
}

// --- one group ---------------------------------------------------------------------------------

let current = null;

async function openGroup(fingerprint) {
  const details = await call('GET', `/violations/${fp(fingerprint)}`);
  current = details.group;
  $('violations').hidden = true;
  $('group').hidden = false;
  renderGroup(details);
  await loadResolution();
}

function renderGroup(details) {
  const group = details.group;
  $('group-title').textContent = `${group.effective_directive} blocked ${group.blocked}`;
  const facts = [
    ['Fingerprint', group.fingerprint],
    ['Kind', group.kind],
    ['Disposition', group.disposition],
    ['Blocked class', group.blocked_class],
    ['Page host', group.document_host],
    ['First seen', when(group.first_seen)],
    ['Last seen', when(group.last_seen)],
    ['Occurrences', group.occurrences],
    ['Distinct pages', group.distinct_pages],
    ['Distinct clients', group.distinct_clients],
    ['Distinct client networks', group.distinct_client_networks],
    ['Muted', group.muted ? 'yes' : 'no'],
  ];
  $('group-facts').replaceChildren(
    ...facts.flatMap(([name, value]) => [el('dt', {}, name), el('dd', {}, value)]),
  );
  $('mute').textContent = group.muted ? 'Unmute' : 'Mute';
  renderSeries(details.series);
  const body = $('samples').tBodies[0];
  body.replaceChildren(
    ...details.samples.map((sample) => {
      const source = sample.source_file
        ? `${sample.source_file}:${sample.line_number}:${sample.column_number}`
        : '';
      const browser = [sample.ua_family, sample.ua_major, sample.os_family].filter(Boolean).join(' ');
      return el(
        'tr',
        {},
        el('td', {}, when(sample.last_seen)),
        el('td', { class: 'mono wrap' }, sample.document_url),
        el('td', { class: 'mono wrap' }, sample.blocked_url),
        el('td', { class: 'mono wrap' }, source),
        el('td', { class: 'mono wrap' }, sample.sample),
        el('td', {}, browser),
        el('td', { class: 'num' }, sample.occurrences),
      );
    }),
  );
}

/** Inline SVG bars, one per hour; each bar's <title> says its hour and count. */
function renderSeries(series) {
  const width = 640;
  const height = 120;
  const max = Math.max(1, ...series.map((hour) => hour.occurrences));
  const step = width / Math.max(1, series.length);
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height + 16}`,
    role: 'img',
    'aria-label': 'occurrences per hour',
    class: 'chart',
  });
  series.forEach((hour, i) => {
    const barHeight = hour.occurrences ? Math.max(2, (hour.occurrences / max) * height) : 0;
    const bar = svg('rect', {
      x: (i * step + 1).toFixed(1),
      y: (height - barHeight).toFixed(1),
      width: Math.max(1, step - 2).toFixed(1),
      height: barHeight.toFixed(1),
      class: 'bar',
    });
    const title = svg('title');
    title.textContent = `${when(hour.hour)}: ${hour.occurrences}`;
    bar.append(title);
    chart.append(bar);
  });
  chart.append(svg('line', { x1: 0, y1: height, x2: width, y2: height, class: 'axis' }));
  const first = svg('text', { x: 0, y: height + 14, class: 'tick' });
  first.textContent = series.length ? when(series[0].hour) : '';
  const last = svg('text', { x: width, y: height + 14, class: 'tick end' });
  last.textContent = series.length ? when(series[series.length - 1].hour) : '';
  const peak = svg('text', { x: 4, y: 12, class: 'tick' });
  peak.textContent = `max ${max}/h`;
  chart.append(first, last, peak);
  $('series').replaceChildren(chart);
}

async function loadResolution() {
  const box = $('resolution');
  box.replaceChildren();
  let resolution;
  try {
    resolution = await call('GET', `/violations/${fp(current.fingerprint)}/resolution`);
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 409) {
      box.append(el('p', {}, failure.detail));
      return;
    }
    throw failure;
  }
  const change = resolution.sources.length
    ? `${resolution.directive} += ${resolution.sources.join(' ')}`
    : 'no policy change can allow this';
  const evidence = resolution.evidence;
  box.append(
    el('p', { class: 'mono change', id: 'resolution-change' }, change),
    el('p', {}, resolution.explanation),
    el(
      'p',
      { class: 'hint' },
      `Evidence: ${count(evidence.occurrences, 'occurrence')} on ${count(evidence.distinct_pages, 'page')} ` +
        `from ${count(evidence.distinct_client_networks, 'client network')}. `,
      resolution.qualifies
        ? el('strong', {}, 'Qualifies for the proposed policy.')
        : el('strong', {}, `Does not qualify: ${resolution.not_qualified_because}`),
    ),
  );
  if (resolution.sources.length) {
    const apply = el('button', { type: 'button', id: 'apply' }, resolution.qualifies ? 'Apply' : 'Apply anyway');
    apply.addEventListener('click', () =>
      guarded(async () => {
        const force = !resolution.qualifies;
        if (force && !window.confirm(`The evidence does not qualify (${resolution.not_qualified_because}). Apply anyway?`)) {
          return;
        }
        const applied = await call('POST', `/violations/${fp(current.fingerprint)}/resolution/apply`, {
          body: force ? { force: true } : {},
        });
        box.append(el('p', { class: 'ok', id: 'applied-note' }, `Applied: ${applied.directive} += ${applied.sources.join(' ')}`));
        apply.disabled = true;
      }),
    );
    box.append(apply);
  }
}

async function toggleMute() {
  const muted = !current.muted;
  await call(muted ? 'POST' : 'DELETE', `/violations/${fp(current.fingerprint)}/mute`);
  current.muted = muted;
  $('mute').textContent = muted ? 'Unmute' : 'Mute';
  back();
}

async function deleteGroup() {
  const text = `Delete the ${current.occurrences} occurrences of this group (${current.blocked})? This cannot be undone.`;
  if (!window.confirm(text)) return;
  await call('DELETE', `/violations/${fp(current.fingerprint)}`);
  back();
}

function back() {
  $('group').hidden = true;
  $('violations').hidden = false;
  guarded(() => loadGroups(false));
}

// --- proposed policy and applied resolutions ---------------------------------------------------

async function loadPolicy() {
  const box = $('proposed');
  box.replaceChildren();
  try {
    const proposed = await call('GET', '/policy/proposed');
    const value = el('textarea', { id: 'policy-value', readonly: '', rows: '4', spellcheck: 'false' });
    value.value = proposed.value;
    const copy = el('button', { type: 'button', id: 'copy' }, 'Copy');
    const copied = el('span', { class: 'ok', id: 'copied' });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(`${proposed.header}: ${proposed.value}`);
        copied.textContent = 'copied';
      } catch {
        value.select(); // no clipboard permission: select it for Ctrl+C
        copied.textContent = 'selected: press Ctrl+C';
      }
    });
    const diff = el('ul', { id: 'policy-diff' });
    for (const change of proposed.diff) {
      const how = change.created
        ? ` (new directive${change.copied_from ? `, copied from ${change.copied_from}` : ''})`
        : '';
      diff.append(el('li', { class: 'mono' }, `${change.directive} += ${change.added.join(' ')}${how}`));
    }
    if (!proposed.diff.length) diff.append(el('li', {}, 'no change to the observed policy'));
    box.append(
      el('p', { class: 'mono' }, `${proposed.header}:`),
      value,
      el('div', { class: 'actions' }, copy, ' ', copied),
      el('h3', {}, 'Changes'),
      diff,
      el('h3', {}, 'Observed policy'),
      el('pre', { class: 'mono wrap' }, proposed.observed),
    );
  } catch (failure) {
    if (failure instanceof ApiError && failure.error === 'no_policy_observed') {
      box.append(el('p', { class: 'empty' }, 'No policy observed yet.'));
    } else {
      throw failure;
    }
  }
  const { resolutions } = await call('GET', '/resolutions');
  const body = $('applied').tBodies[0];
  body.replaceChildren(
    ...resolutions.map((r) => {
      const withdraw = el('button', { type: 'button', class: 'withdraw' }, 'Withdraw');
      withdraw.addEventListener('click', () =>
        guarded(async () => {
          const change = `${r.directive} += ${r.sources.join(' ')}`;
          if (!window.confirm(`Withdraw ${change}? It leaves the proposed policy until applied again.`)) return;
          withdraw.disabled = true;
          await call('DELETE', `/violations/${fp(r.fingerprint)}/resolution`);
          await loadPolicy();
        }),
      );
      return el(
        'tr',
        {},
        el('td', {}, when(r.applied_at)),
        el('td', { class: 'mono' }, r.directive),
        el('td', { class: 'mono wrap' }, r.sources.join(' ')),
        el('td', { class: 'mono' }, r.fingerprint),
        el('td', {}, r.applied_by),
        el('td', {}, withdraw),
      );
    }),
  );
  $('applied-empty').hidden = resolutions.length > 0;
}

// --- alerts ------------------------------------------------------------------------------------

async function loadAlerts() {
  const body = $('alerts-table').tBodies[0];
  body.replaceChildren();
  let alerts = [];
  try {
    ({ alerts } = await call('GET', '/alerts'));
  } catch (failure) {
    // A server without alerting answers 404: that is "no alerts", not an error.
    if (!(failure instanceof ApiError && failure.status === 404)) throw failure;
  }
  for (const alert of alerts) {
    body.append(
      el(
        'tr',
        {},
        el('td', {}, when(alert.fired_at)),
        el('td', {}, alert.kind),
        el('td', { class: 'mono' }, alert.directive),
        el('td', { class: 'mono wrap' }, alert.origin),
        el('td', { class: 'num' }, alert.count),
        el('td', { class: 'mono' }, alert.fingerprint),
        el('td', {}, alert.delivery || (alert.delivered ? 'delivered' : 'not delivered')),
      ),
    );
  }
  $('alerts-table').hidden = alerts.length === 0;
  $('alerts-empty').hidden = alerts.length > 0;
}

// --- wiring ------------------------------------------------------------------------------------

function start() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', () => logout());
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    guarded(() => loadGroups(false));
  });
  $('more').addEventListener('click', () => guarded(() => loadGroups(true)));
  $('back').addEventListener('click', back);
  $('mute').addEventListener('click', () => guarded(toggleMute));
  $('delete').addEventListener('click', () => guarded(deleteGroup));
  for (const button of document.querySelectorAll('.tabs button')) {
    button.addEventListener('click', () => showTab(button.dataset.tab));
  }
  if (session.token && session.project) {
    enter();
  } else {
    logout();
  }
}

start();
