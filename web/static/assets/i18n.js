// The pages' languages: one flat catalogue per language at
// /locales/<tag>.json (dotted keys, {name} placeholders, plurals as
// key.one/key.other), the list of languages at /locales/index.json.
//
// The language is the remembered choice, else the browser's languages
// negotiated against the catalogues, else English. Every date and number is
// formatted in it, not in the browser's locale, so a sentence never mixes
// two languages.

const STORE = 'consentgraph.lang';
const FALLBACK = 'en';

let current = FALLBACK;
let englishLoading = null;
let messages = {};
let english = {};
let languages = [{ tag: FALLBACK, name: 'English' }];

async function catalogue(tag) {
  const res = await fetch(`/locales/${encodeURIComponent(tag)}.json`, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`catalogue ${tag}: status ${res.status}`);
  return res.json();
}

/** The language the page is in (a tag of /locales/index.json). */
export const lang = () => current;

/** The languages on offer: [{tag, name}], name in its own language. */
export const offered = () => languages;

/**
 * The best of tags for a reader who wants `wanted` (navigator.languages,
 * most wanted first): an exact tag, else the same primary language.
 */
export function negotiate(wanted, tags) {
  const lower = tags.map((t) => t.toLowerCase());
  for (const w of wanted || []) {
    const x = String(w).toLowerCase();
    const exact = lower.indexOf(x);
    if (exact >= 0) return tags[exact];
    const primary = lower.indexOf(x.split('-')[0]);
    if (primary >= 0) return tags[primary];
  }
  return '';
}

function remembered() {
  try {
    return localStorage.getItem(STORE) || '';
  } catch {
    return ''; // storage off: the browser's languages decide
  }
}

/** Picks the language, loads its catalogue and translates the document. */
export async function init() {
  // English is the fallback of every key: fetched beside the index, not after it
  englishLoading = catalogue(FALLBACK).catch(() => ({}));
  try {
    const res = await fetch('/locales/index.json', { credentials: 'same-origin' });
    if (res.ok) languages = await res.json();
  } catch { /* English only */ }
  const tags = languages.map((l) => l.tag);
  const pick = negotiate([remembered()].filter(Boolean), tags) || negotiate(navigator.languages, tags) || FALLBACK;
  await use(pick);
}

/** Switches to tag and, when remember is set, keeps the choice for next time. */
export async function setLang(tag, remember = true) {
  if (remember) {
    try {
      localStorage.setItem(STORE, tag);
    } catch { /* not remembered, still applied */ }
  }
  await use(tag);
}

async function use(tag) {
  try {
    if (!Object.keys(english).length) english = await (englishLoading || catalogue(FALLBACK));
    messages = tag === FALLBACK ? english : await catalogue(tag);
    current = tag;
  } catch {
    messages = english;
    current = FALLBACK;
  }
  plurals = new Intl.PluralRules(current);
  dateFmt = new Intl.DateTimeFormat(current, { dateStyle: 'medium', timeStyle: 'short' });
  dayFmt = new Intl.DateTimeFormat(current, { dateStyle: 'long', timeZone: 'UTC' });
  regionNames = new Intl.DisplayNames([current], { type: 'region', fallback: 'none' });
  languageNames = new Intl.DisplayNames([current], { type: 'language', fallback: 'none' });
  document.documentElement.lang = current;
  translate(document);
  document.dispatchEvent(new CustomEvent('consentgraph:langchange', { detail: { lang: current } }));
}

/** Whether the catalogue (or English) has key. */
export const has = (key) => key in messages || key in english;

/** The message key in the page's language with its {placeholders} filled. */
export function t(key, params = {}) {
  const raw = messages[key] ?? english[key] ?? key;
  return raw.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

let plurals = new Intl.PluralRules(FALLBACK);

/** key.one, key.other … chosen for count; {count} is the formatted count. */
export function plural(key, count, params = {}) {
  const form = plurals.select(count);
  const k = has(`${key}.${form}`) ? `${key}.${form}` : `${key}.other`;
  return t(k, { count: number(count), ...params });
}

let dateFmt = new Intl.DateTimeFormat(FALLBACK, { dateStyle: 'medium', timeStyle: 'short' });
let dayFmt = new Intl.DateTimeFormat(FALLBACK, { dateStyle: 'long', timeZone: 'UTC' });

/** A date and time in the page's language. */
export const when = (iso) => (iso ? dateFmt.format(new Date(iso)) : '');

/** A calendar day (YYYY-MM-DD or an ISO time) in the page's language. */
export const day = (iso) => (iso ? dayFmt.format(new Date(iso)) : '');

/** A number in the page's language, with at most digits decimals. */
export const number = (x, digits = 0) => new Intl.NumberFormat(current, { maximumFractionDigits: digits }).format(Number(x));

let regionNames = null;
let languageNames = null;

/** The name of an ISO 3166-1 country code in the page's language ('' if none). */
export const countryName = (code) => (code && regionNames ? regionNames.of(code) || '' : '');

/** The name of an ISO 639-1 language code in the page's language ('' if none). */
export const languageName = (code) => {
  if (!code || !languageNames) return '';
  try {
    return languageNames.of(code) || '';
  } catch {
    return '';
  }
};

// Static text: data-i18n="key" sets the text, data-i18n-attr="attr:key;…"
// sets attributes (aria-label, placeholder, title, content …).
export function translate(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':').map((s) => s.trim());
      if (attr && key) el.setAttribute(attr, t(key));
    }
  }
}

/**
 * Fills the language switcher (a <select>) and switches on change; onChange
 * runs after the new language is applied, to redraw what scripts wrote.
 */
export function switcher(select, onChange) {
  select.replaceChildren(...languages.map((l) => {
    const o = document.createElement('option');
    o.value = l.tag;
    o.textContent = l.name;
    o.lang = l.tag;
    return o;
  }));
  select.value = current;
  select.addEventListener('change', async () => {
    await setLang(select.value);
    onChange();
  });
}
