// The partner console: an API key held only in this module's memory,
// demographics as an SVG bar chart and a table, and the budget as a meter.
import { gql, submitting, setStatus, h, localError } from './gql.js';

const $ = (sel) => document.querySelector(sel);
const SVG = 'http://www.w3.org/2000/svg';

let apiKey = '';

const DIM_FIELD = { AGE_BAND: 'ageBand', COUNTRY: 'country', GENDER: 'gender', LANGUAGE: 'language', SIGNUP_MONTH: 'signupMonth' };
const DIM_LABEL = { AGE_BAND: 'Age band', COUNTRY: 'Country', GENDER: 'Gender', LANGUAGE: 'Language', SIGNUP_MONTH: 'Sign-up month' };
const AGE = {
  UNDER_18: 'under 18', AGE_18_24: '18–24', AGE_25_34: '25–34', AGE_35_44: '35–44', AGE_45_54: '45–54',
  AGE_55_64: '55–64', AGE_65_PLUS: '65+', UNKNOWN: 'unknown',
};
const fmt = (x, d = 2) => Number(x).toLocaleString(undefined, { maximumFractionDigits: d });
const value = (dim, cell) => {
  const v = cell[DIM_FIELD[dim]];
  if (v == null) return '—';
  if (dim === 'AGE_BAND') return AGE[v] || v;
  if (v === 'UNKNOWN') return 'unknown';
  return dim === 'GENDER' ? v.toLowerCase().replaceAll('_', '-') : v;
};

function showBudget(p) {
  $('#partner-name').textContent = p.name;
  const m = $('#budget-meter');
  m.max = p.epsilonBudget;
  m.value = p.budgetRemaining;
  m.low = p.epsilonBudget * 0.2;
  m.high = p.epsilonBudget * 0.5;
  m.optimum = p.epsilonBudget;
  $('#budget-text').textContent = `${fmt(p.budgetRemaining, 3)} of ${fmt(p.epsilonBudget, 3)} ε left`;
  $('#budget-reset').textContent = new Date(p.budgetResetsAt).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

const PARTNER_ME = `{ partnerMe { name epsilonBudget budgetPeriodDays budgetRemaining budgetResetsAt } }`;

$('#key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  submitting(form, async () => {
    const key = form.apiKey.value.trim();
    if (!key) {
      setStatus(form, 'Enter your API key.', 'error');
      return;
    }
    try {
      const { partnerMe } = await gql(PARTNER_ME, {}, key);
      apiKey = key;
      form.reset();
      showBudget(partnerMe);
    } catch (err) {
      if (err.code === 'UNAUTHENTICATED' || err.code === 'FORBIDDEN') {
        err.field = 'apiKey';
        err.message = 'This API key is not valid or has been revoked.';
      }
      throw err;
    }
    $('#signin').hidden = true;
    $('#console').hidden = false;
    $('#session').hidden = false;
    $('#main').focus();
  });
});

$('#forget').addEventListener('click', () => {
  apiKey = '';
  $('#console').hidden = true;
  $('#session').hidden = true;
  $('#result').hidden = true;
  $('#signin').hidden = false;
  $('#api-key').focus();
});

$('#ask-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  submitting(form, async () => {
    const dims = [...form.querySelectorAll('input[name=groupBy]:checked')].map((x) => x.value);
    const eps = Number(form.epsilon.value.replace(',', '.'));
    if (!Number.isFinite(eps) || form.epsilon.value.trim() === '') {
      throw localError('epsilon', 'Epsilon must be a number such as 0.5.');
    }
    const { demographics: r } = await gql(`query($g: [Dimension!]!, $e: Float) { demographics(groupBy: $g, epsilon: $e) {
      cells { ageBand country gender language signupMonth count } k threshold epsilon delta budgetRemaining generatedAt } }`,
    { g: dims, e: eps }, apiKey);
    const { partnerMe } = await gql(PARTNER_ME, {}, apiKey);
    showBudget(partnerMe);
    showResult(dims, r);
  });
});

function labelOf(dims, cell) {
  return dims.length ? dims.map((d) => value(d, cell)).join(' · ') : 'Everyone';
}

function showResult(dims, r) {
  $('#result').hidden = false;
  const by = dims.length ? dims.map((d) => DIM_LABEL[d]).join(' × ') : 'no dimension (the total)';
  $('#result-desc').textContent = `Grouped by ${by}. Made ${new Date(r.generatedAt).toLocaleString()}; ` +
    `${fmt(r.budgetRemaining, 3)} ε left after it. Counts include random noise; a group is shown only ` +
    `when its noisy count reaches ${r.threshold} (δ = ${r.delta}).`;
  $('#stat-cells').textContent = r.cells.length;
  $('#stat-threshold').textContent = r.threshold;
  $('#stat-epsilon').textContent = fmt(r.epsilon, 6);
  const cells = [...r.cells].sort((a, b) => b.count - a.count);
  last = cells.length ? { dims, cells } : null;
  $('#chart').replaceChildren(cells.length ? chart(dims, cells) : h('p', { class: 'muted' },
    'No group\'s noisy count reached the threshold, so nothing is shown. Try fewer dimensions or more epsilon.'));
  $('#table').replaceChildren(cells.length ? table(dims, cells) : '');
  $('#result').focus();
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

let last = null;
let resizeTimer = 0;

// The chart is drawn in CSS pixels of its box, so its text stays readable
// on a phone: redraw it when the box changes width.
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (last && !$('#result').hidden) $('#chart').replaceChildren(chart(last.dims, last.cells));
  }, 150);
});

// A horizontal bar chart: one bar per group, largest first.
function chart(dims, cells) {
  const shown = cells.slice(0, 40);
  const rowH = 24;
  const width = Math.round(Math.min(720, Math.max(300, $('#chart').clientWidth || 720)));
  const labelW = Math.round(Math.min(170, width * 0.4));
  const barW = width - labelW - 44;
  const max = Math.max(1, ...shown.map((c) => c.count));
  const height = shown.length * rowH + 10;
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-labelledby': 'chart-title',
    preserveAspectRatio: 'xMinYMin meet',
  });
  root.append(svg('title', { id: 'chart-title' }, `Bar chart of ${shown.length} groups by count` +
    (cells.length > shown.length ? ` (the ${shown.length} largest; all are in the table)` : '')));
  shown.forEach((c, i) => {
    const y = i * rowH + 4;
    const w = Math.max(1, (c.count / max) * barW);
    const g = svg('g', { class: 'row' });
    g.append(svg('text', { x: labelW - 8, y: y + rowH / 2 + 4, 'text-anchor': 'end' }, labelOf(dims, c)));
    g.append(svg('rect', { class: 'bar', x: labelW, y: y + 3, width: w.toFixed(1), height: rowH - 8, rx: 3 }));
    g.append(svg('text', { x: labelW + w + 6, y: y + rowH / 2 + 4 }, fmt(c.count, 0)));
    root.append(g);
  });
  root.append(svg('line', { class: 'axis', x1: labelW, x2: labelW, y1: 0, y2: height }));
  return root;
}

function table(dims, cells) {
  const head = [...(dims.length ? dims.map((d) => DIM_LABEL[d]) : ['Group']), 'Count'];
  return h('div', { class: 'table-wrap' }, h('table', { class: 'result-table' },
    h('caption', { class: 'sr-only' }, 'Counts per group'),
    h('thead', {}, h('tr', {}, head.map((x, i) => h('th', { scope: 'col', class: i === head.length - 1 ? 'num' : '' }, x)))),
    h('tbody', {}, cells.map((c) => h('tr', {},
      (dims.length ? dims.map((d) => h('td', {}, value(d, c))) : [h('td', {}, 'Everyone')]),
      h('td', { class: 'num' }, fmt(c.count, 0)))))));
}

