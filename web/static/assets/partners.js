// The partner console: an API key held only in this module's memory,
// demographics as an SVG bar chart and a paged table, the budget as a meter
// and the cost of the next answer before it is asked.
import { gql, submitting, setStatus, clearErrors, h, localError } from './gql.js';

const $ = (sel) => document.querySelector(sel);
const SVG = 'http://www.w3.org/2000/svg';

// Every text a person reads on this page, in one place so a translation
// replaces one object.
const MSG = {
  dims: { AGE_BAND: 'Age band', COUNTRY: 'Country', GENDER: 'Gender', LANGUAGE: 'Language', SIGNUP_MONTH: 'Sign-up month' },
  age: {
    UNDER_18: 'under 18', AGE_18_24: '18–24', AGE_25_34: '25–34', AGE_35_44: '35–44', AGE_45_54: '45–54',
    AGE_55_64: '55–64', AGE_65_PLUS: '65+', UNKNOWN: 'unknown',
  },
  unknown: 'unknown',
  everyone: 'Everyone',
  group: 'Group',
  count: 'Count',
  countsCaption: 'Counts per group',
  enterKey: 'Enter your API key.',
  badKey: 'This API key is not valid or has been revoked.',
  badEpsilon: 'Epsilon must be a number such as 0.5.',
  budgetLeft: (left, total) => `${left} of ${total} ε left`,
  cost: (eps, left, date) => `This query costs ε ${eps}; ${left} left until ${date}.`,
  costTooHigh: (eps, left, date) => `This query costs ε ${eps} but only ${left} is left until ${date}. Lower epsilon or wait until then.`,
  costUnknown: 'Enter an epsilon to see what this query costs.',
  grouped: (by, made, left) => `Grouped by ${by}. Made ${made}; ${left} ε left after it.`,
  total: 'no dimension (the total)',
  noise: (sd, eps, threshold, delta) => `Counts have random noise of about ±${sd} (ε ${eps}); groups whose noisy count is ` +
    `below ${threshold} are not shown, and one that should not be shown slips through with a probability of at most δ = ${delta}.`,
  nothing: 'No group\'s noisy count reached the threshold, so nothing is shown. Try fewer dimensions or more epsilon.',
  chartTitle: (n, all) => `Bar chart of ${n} groups by count` + (all > n ? ` (the ${n} largest; all are in the table)` : ''),
  rows: (from, to, total) => `Rows ${from}–${to} of ${total}`,
  prev: 'Previous 50',
  next: 'Next 50',
  pager: 'Table pages',
};

const PAGE_ROWS = 50;
const DIM_FIELD = { AGE_BAND: 'ageBand', COUNTRY: 'country', GENDER: 'gender', LANGUAGE: 'language', SIGNUP_MONTH: 'signupMonth' };

// One language for every date and number on the page: the document's, not
// the browser's, so a German browser does not put German dates into
// English sentences.
const lang = document.documentElement.lang || 'en';
const dateFmt = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' });
const date = (iso) => dateFmt.format(new Date(iso));
const fmt = (x, d = 2) => new Intl.NumberFormat(lang, { maximumFractionDigits: d }).format(Number(x));

const value = (dim, cell) => {
  const v = cell[DIM_FIELD[dim]];
  if (v == null) return '—';
  if (dim === 'AGE_BAND') return MSG.age[v] || v;
  if (v === 'UNKNOWN') return MSG.unknown;
  return dim === 'GENDER' ? v.toLowerCase().replaceAll('_', '-') : v;
};

// Everything this tab knows about the signed-in partner; sign-out resets
// it to this, so the next partner inherits nothing.
const blank = () => ({ apiKey: '', partner: null, last: null, page: 0 });
let state = blank();

function showBudget(p) {
  state.partner = p;
  $('#partner-name').textContent = p.name;
  const m = $('#budget-meter');
  m.max = p.epsilonBudget;
  m.value = p.budgetRemaining;
  m.low = p.epsilonBudget * 0.2;
  m.high = p.epsilonBudget * 0.5;
  m.optimum = p.epsilonBudget;
  $('#budget-text').textContent = MSG.budgetLeft(fmt(p.budgetRemaining, 3), fmt(p.epsilonBudget, 3));
  $('#budget-reset').textContent = date(p.budgetResetsAt);
  showCost();
}

function epsilonOf(form) {
  const raw = form.epsilon.value.trim();
  const eps = Number(raw.replace(',', '.'));
  return raw === '' || !Number.isFinite(eps) ? null : eps;
}

// The request sends one demographics field, so its cost is its epsilon;
// the run is refused here, with the reason, when that is more than is left.
function showCost() {
  const form = $('#ask-form');
  const out = $('#cost');
  const p = state.partner;
  const run = form.querySelector('button[type=submit]');
  if (!p) {
    out.textContent = '';
    run.disabled = false;
    return;
  }
  const eps = epsilonOf(form);
  const left = p.budgetRemaining;
  const when = date(p.budgetResetsAt);
  const tooMuch = eps !== null && eps > left + 1e-9;
  if (eps === null) out.textContent = MSG.costUnknown;
  else out.textContent = (tooMuch ? MSG.costTooHigh : MSG.cost)(fmt(eps, 6), fmt(left, 3), when);
  out.className = tooMuch ? 'cost error' : 'cost';
  run.disabled = tooMuch;
  if (tooMuch) run.setAttribute('aria-describedby', 'cost');
  else run.removeAttribute('aria-describedby');
}

const PARTNER_ME = `{ partnerMe { name epsilonBudget budgetPeriodDays budgetRemaining budgetResetsAt } }`;

$('#key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  submitting(form, async () => {
    const key = form.apiKey.value.trim();
    if (!key) {
      setStatus(form, MSG.enterKey, 'error');
      return;
    }
    try {
      const { partnerMe } = await gql(PARTNER_ME, {}, key);
      state = blank();
      state.apiKey = key;
      form.reset();
      showBudget(partnerMe);
    } catch (err) {
      if (err.code === 'UNAUTHENTICATED' || err.code === 'FORBIDDEN') {
        err.field = 'apiKey';
        err.message = MSG.badKey;
      }
      throw err;
    }
    $('#signin').hidden = true;
    $('#console').hidden = false;
    $('#session').hidden = false;
    $('#main').focus();
  });
});

// Sign-out forgets the key and everything shown or chosen with it.
$('#forget').addEventListener('click', () => {
  state = blank();
  const ask = $('#ask-form');
  ask.reset();
  clearErrors(ask);
  clearErrors($('#key-form'));
  $('#key-form').reset();
  for (const id of ['#chart', '#table', '#noise-note', '#result-desc', '#stat-cells', '#stat-threshold', '#stat-epsilon',
    '#partner-name', '#budget-text', '#budget-reset', '#cost']) $(id).replaceChildren();
  const m = $('#budget-meter');
  m.max = 1;
  m.value = 1;
  showCost();
  $('#console').hidden = true;
  $('#session').hidden = true;
  $('#result').hidden = true;
  $('#signin').hidden = false;
  $('#api-key').focus();
});

$('#epsilon').addEventListener('input', showCost);

$('#ask-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  submitting(form, async () => {
    const dims = [...form.querySelectorAll('input[name=groupBy]:checked')].map((x) => x.value);
    const eps = epsilonOf(form);
    if (eps === null) throw localError('epsilon', MSG.badEpsilon);
    const key = state.apiKey;
    const { demographics: r } = await gql(`query($g: [Dimension!]!, $e: Float) { demographics(groupBy: $g, epsilon: $e) {
      cells { ageBand country gender language signupMonth count } k threshold epsilon delta budgetRemaining generatedAt } }`,
    { g: dims, e: eps }, key);
    const { partnerMe } = await gql(PARTNER_ME, {}, key);
    // Signed out (or in as someone else) while asking: show nothing.
    if (state.apiKey !== key) return;
    showBudget(partnerMe);
    showResult(dims, r);
  }).finally(showCost);
});

function labelOf(dims, cell) {
  return dims.length ? dims.map((d) => value(d, cell)).join(' · ') : MSG.everyone;
}

// The standard deviation of the discrete Laplace noise P(z) ∝ exp(-ε|z|/2)
// (schema/partners.graphqls): with p = exp(-ε/2), Var = 2p / (1-p)².
function noiseSD(eps) {
  const p = Math.exp(-eps / 2);
  return Math.sqrt(2 * p) / (1 - p);
}

function showResult(dims, r) {
  $('#result').hidden = false;
  const by = dims.length ? dims.map((d) => MSG.dims[d]).join(' × ') : MSG.total;
  $('#result-desc').textContent = MSG.grouped(by, date(r.generatedAt), fmt(r.budgetRemaining, 3));
  $('#stat-cells').textContent = fmt(r.cells.length, 0);
  $('#stat-threshold').textContent = r.threshold;
  $('#stat-epsilon').textContent = fmt(r.epsilon, 6);
  $('#noise-note').textContent = MSG.noise(fmt(noiseSD(r.epsilon), 1), fmt(r.epsilon, 6), fmt(r.threshold, 0), r.delta);
  const cells = [...r.cells].sort((a, b) => b.count - a.count);
  state.last = cells.length ? { dims, cells } : null;
  state.page = 0;
  $('#chart').replaceChildren(cells.length ? chart(dims, cells) : h('p', { class: 'muted' }, MSG.nothing));
  renderTable();
  $('#result').focus();
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

let resizeTimer = 0;

// The chart is drawn in CSS pixels of its box, so its text stays readable
// on a phone: redraw it when the box changes width.
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (state.last && !$('#result').hidden) $('#chart').replaceChildren(chart(state.last.dims, state.last.cells));
  }, 150);
});

const FONT = '12px system-ui, sans-serif';
let measurer = null;
function textWidth(s) {
  measurer ??= document.createElement('canvas').getContext('2d');
  measurer.font = FONT;
  return measurer.measureText(s).width;
}

// Splits a label into lines no wider than max: between dimensions first,
// then between words, then (for one overlong word) between characters.
function wrap(label, max) {
  const words = label.split(' ');
  const lines = [];
  let line = '';
  for (const w of words) {
    const next = line ? `${line} ${w}` : w;
    if (textWidth(next) <= max) {
      line = next;
      continue;
    }
    if (line) lines.push(line);
    line = '';
    let rest = w;
    while (textWidth(rest) > max) {
      let i = rest.length - 1;
      while (i > 1 && textWidth(rest.slice(0, i)) > max) i--;
      lines.push(rest.slice(0, i));
      rest = rest.slice(i);
    }
    line = rest;
  }
  if (line) lines.push(line);
  // a line that starts with the separator reads better with it at the end
  return lines.map((l, i) => (i < lines.length - 1 && lines[i + 1].startsWith('· ') ? `${l} ·` : l.replace(/^· /, '')));
}

// A horizontal bar chart: one bar per group, largest first. Labels wrap
// within their column, so none is cut off however many dimensions there are.
function chart(dims, cells) {
  const shown = cells.slice(0, 40);
  const lineH = 14;
  const width = Math.round(Math.min(720, Math.max(280, $('#chart').clientWidth || 720)));
  const labelW = Math.round(Math.min(200, width * 0.42));
  const countW = 44;
  const barW = width - labelW - countW;
  const max = Math.max(1, ...shown.map((c) => c.count));
  const rows = shown.map((c) => ({ c, lines: wrap(labelOf(dims, c), labelW - 10) }));
  let y = 4;
  const root = svg('svg', { class: 'chart', role: 'img', 'aria-labelledby': 'chart-title', preserveAspectRatio: 'xMinYMin meet' });
  root.append(svg('title', { id: 'chart-title' }, MSG.chartTitle(shown.length, cells.length)));
  for (const { c, lines } of rows) {
    const rowH = Math.max(24, lines.length * lineH + 10);
    const mid = y + rowH / 2;
    const w = Math.max(1, (c.count / max) * barW);
    const g = svg('g', { class: 'row' });
    const label = svg('text', { x: labelW - 8, 'text-anchor': 'end', class: 'label' });
    lines.forEach((l, i) => label.append(svg('tspan', { x: labelW - 8, y: mid + 4 + (i - (lines.length - 1) / 2) * lineH }, l)));
    g.append(label);
    g.append(svg('rect', { class: 'bar', x: labelW, y: mid - 8, width: w.toFixed(1), height: 16, rx: 3 }));
    g.append(svg('text', { x: labelW + w + 6, y: mid + 4, class: 'count' }, fmt(c.count, 0)));
    root.append(g);
    y += rowH;
  }
  const height = y + 6;
  root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  root.append(svg('line', { class: 'axis', x1: labelW, x2: labelW, y1: 0, y2: height }));
  return root;
}

// The table shows PAGE_ROWS groups at a time, with buttons for the rest.
function renderTable() {
  const last = state.last;
  if (!last) {
    $('#table').replaceChildren();
    return;
  }
  const { dims, cells } = last;
  const pages = Math.ceil(cells.length / PAGE_ROWS);
  const from = state.page * PAGE_ROWS;
  const slice = cells.slice(from, from + PAGE_ROWS);
  const head = [...(dims.length ? dims.map((d) => MSG.dims[d]) : [MSG.group]), MSG.count];
  const parts = [h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': MSG.countsCaption },
    h('table', { class: 'result-table' },
      h('caption', { class: 'sr-only' }, MSG.countsCaption),
      h('thead', {}, h('tr', {}, head.map((x, i) => h('th', { scope: 'col', class: i === head.length - 1 ? 'num' : '' }, x)))),
      h('tbody', {}, slice.map((c) => h('tr', {},
        (dims.length ? dims.map((d) => h('td', {}, value(d, c))) : [h('td', {}, MSG.everyone)]),
        h('td', { class: 'num' }, fmt(c.count, 0)))))))];
  if (pages > 1) {
    const turn = (by, focusSel) => () => {
      state.page += by;
      renderTable();
      const b = $(focusSel);
      (b && !b.disabled ? b : $('#table-rows')).focus();
    };
    parts.push(h('nav', { class: 'pager actions', 'aria-label': MSG.pager },
      h('button', { type: 'button', class: 'btn secondary', id: 'page-prev', disabled: state.page === 0, onclick: turn(-1, '#page-prev') }, MSG.prev),
      h('span', { id: 'table-rows', role: 'status', tabindex: '-1' }, MSG.rows(fmt(from + 1, 0), fmt(from + slice.length, 0), fmt(cells.length, 0))),
      h('button', { type: 'button', class: 'btn secondary', id: 'page-next', disabled: state.page >= pages - 1, onclick: turn(1, '#page-next') }, MSG.next)));
  }
  $('#table').replaceChildren(...parts);
}
