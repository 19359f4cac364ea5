// The partner console: an API key held only in this module's memory,
// demographics as an SVG bar chart and a paged table, the budget as a meter
// and the cost of the next answer before it is asked.
import { gql, submitting, setStatus, clearErrors, h, localError } from './gql.js';
import { init as initI18n, switcher, t, plural, when as date, number as fmt, countryName, languageName } from './i18n.js';

const $ = (sel) => document.querySelector(sel);
const SVG = 'http://www.w3.org/2000/svg';

// Every text a person reads comes from the catalogue through t(); the keys
// of this page start with partners. or common.
const PAGE_ROWS = 50;
const DIM_FIELD = { AGE_BAND: 'ageBand', COUNTRY: 'country', GENDER: 'gender', LANGUAGE: 'language', SIGNUP_MONTH: 'signupMonth' };

// One language for every date and number on the page: the page's (i18n.js),
// not the browser's, so a German browser does not put German dates into
// English sentences.

const value = (dim, cell) => {
  const v = cell[DIM_FIELD[dim]];
  if (v == null) return '—';
  if (v === 'UNKNOWN') return t('partners.unknown');
  if (dim === 'AGE_BAND') return t(`partners.age.${v}`) === `partners.age.${v}` ? v : t(`partners.age.${v}`);
  if (dim === 'GENDER') return t(`common.gender.${v}`);
  // names in the page's language, with the code so groups stay tellable apart
  if (dim === 'COUNTRY') return countryName(v) ? t('partners.named', { name: countryName(v), code: v }) : v;
  if (dim === 'LANGUAGE') return languageName(v) ? t('partners.named', { name: languageName(v), code: v }) : v;
  if (dim === 'SIGNUP_MONTH' && /^\d{4}-\d{2}$/.test(v)) {
    return new Intl.DateTimeFormat(document.documentElement.lang, { year: 'numeric', month: 'short', timeZone: 'UTC' }).format(new Date(`${v}-01T00:00:00Z`));
  }
  return v;
};

// Everything this tab knows about the signed-in partner; sign-out resets
// it to this, so the next partner inherits nothing.
const blank = () => ({ apiKey: '', partner: null, last: null, answer: null, page: 0 });
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
  $('#budget-text').textContent = t('partners.budget.left', { left: fmt(p.budgetRemaining, 3), total: fmt(p.epsilonBudget, 3) });
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
  if (eps === null) out.textContent = t('partners.cost.unknown');
  else out.textContent = t(tooMuch ? 'partners.cost.tooHigh' : 'partners.cost.ok', { eps: fmt(eps, 6), left: fmt(left, 3), date: when });
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
      setStatus(form, t('partners.signin.empty'), 'error');
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
        err.text = t('partners.signin.badKey');
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
    if (eps === null) throw localError('epsilon', t('partners.ask.badEpsilon'));
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
  return dims.length ? dims.map((d) => value(d, cell)).join(' · ') : t('partners.everyone');
}

// The standard deviation of the discrete Laplace noise P(z) ∝ exp(-ε|z|/2)
// (schema/partners.graphqls): with p = exp(-ε/2), Var = 2p / (1-p)².
function noiseSD(eps) {
  const p = Math.exp(-eps / 2);
  return Math.sqrt(2 * p) / (1 - p);
}

function showResult(dims, r, focus = true) {
  state.answer = { dims, r };
  $('#result').hidden = false;
  const by = dims.length ? dims.map((d) => t(`partners.dim.${d}`)).join(' × ') : t('partners.result.total');
  $('#result-desc').textContent = t('partners.result.grouped', { by, date: date(r.generatedAt), left: fmt(r.budgetRemaining, 3) });
  $('#stat-cells').textContent = fmt(r.cells.length, 0);
  $('#stat-threshold').textContent = fmt(r.threshold, 0);
  $('#stat-epsilon').textContent = fmt(r.epsilon, 6);
  $('#noise-note').textContent = t('partners.result.noise', { sd: fmt(noiseSD(r.epsilon), 1), eps: fmt(r.epsilon, 6), threshold: fmt(r.threshold, 0), delta: r.delta });
  const cells = [...r.cells].sort((a, b) => b.count - a.count);
  state.last = cells.length ? { dims, cells } : null;
  state.page = 0;
  $('#chart').replaceChildren(cells.length ? chart(dims, cells) : h('p', { class: 'muted' }, t('partners.result.nothing')));
  renderTable();
  if (focus) $('#result').focus();
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
  root.append(svg('title', { id: 'chart-title' }, plural('partners.chart.title', shown.length) +
    (cells.length > shown.length ? t('partners.chart.largest', { n: fmt(shown.length, 0) }) : '')));
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
  const head = [...(dims.length ? dims.map((d) => t(`partners.dim.${d}`)) : [t('partners.table.group')]), t('partners.table.count')];
  const parts = [h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': t('partners.table.caption') },
    h('table', { class: 'result-table' },
      h('caption', { class: 'sr-only' }, t('partners.table.caption')),
      h('thead', {}, h('tr', {}, head.map((x, i) => h('th', { scope: 'col', class: i === head.length - 1 ? 'num' : '' }, x)))),
      h('tbody', {}, slice.map((c) => h('tr', {},
        (dims.length ? dims.map((d) => h('td', {}, value(d, c))) : [h('td', {}, t('partners.everyone'))]),
        h('td', { class: 'num' }, fmt(c.count, 0)))))))];
  if (pages > 1) {
    const turn = (by, focusSel) => () => {
      state.page += by;
      renderTable();
      const b = $(focusSel);
      (b && !b.disabled ? b : $('#table-rows')).focus();
    };
    parts.push(h('nav', { class: 'pager actions', 'aria-label': t('partners.table.pager') },
      h('button', { type: 'button', class: 'btn secondary', id: 'page-prev', disabled: state.page === 0, onclick: turn(-1, '#page-prev') }, t('partners.table.prev')),
      h('span', { id: 'table-rows', role: 'status', tabindex: '-1' }, t('partners.table.rows', { from: fmt(from + 1, 0), to: fmt(from + slice.length, 0), total: fmt(cells.length, 0) })),
      h('button', { type: 'button', class: 'btn secondary', id: 'page-next', disabled: state.page >= pages - 1, onclick: turn(1, '#page-next') }, t('partners.table.next'))));
  }
  $('#table').replaceChildren(...parts);
}

// After a language change, everything this script wrote is written again
// (the static text is translated by i18n.js).
function relabel() {
  if (state.partner) showBudget(state.partner);
  else showCost();
  if (state.answer) {
    const { page } = state;
    showResult(state.answer.dims, state.answer.r, false);
    state.page = page;
    renderTable();
  }
  // messages already shown stay in the language they were written in: clear them
  for (const form of document.querySelectorAll('form')) clearErrors(form);
}

// Handlers are bound above, before this wait, so no form can be sent
// natively (with the key in the address) while the catalogue loads.
await initI18n();
switcher($('#lang-select'), relabel);
