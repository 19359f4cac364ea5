// Country and language as names in the page's language: the fields are
// text inputs with a datalist of names (native, labelled, keyboard
// operable); what is saved is the code the chosen name stands for. A name
// that is no country (or language) is refused in the page, never guessed:
// "Germany" must not become GE (Georgia).
import { COUNTRIES, LANGUAGES } from './codes.js';
import { countryName, languageName, lang } from './i18n.js';

// NFKC folds full-width letters, so "ＤＥ" or "ドイツ" typed in any width match.
const fold = (s) => s.normalize('NFKC').trim().toLocaleLowerCase();

function index(codes, nameOf) {
  const byName = new Map();
  const names = [];
  for (const code of codes) {
    const name = nameOf(code);
    if (!name || name === code) continue; // a code Intl cannot name is not offered
    names.push([name, code]);
    byName.set(fold(name), code);
  }
  names.sort((a, b) => a[0].localeCompare(b[0], lang()));
  return { names, byName };
}

let countries = index([], () => '');
let languages = index([], () => '');
let english = { countries: new Map(), languages: new Map() };

/** Rebuilds both lists in the page's language (after a language change). */
export function fillNames() {
  countries = index(COUNTRIES, countryName);
  languages = index(LANGUAGES, languageName);
  // English names are understood in any language: a reader of the Japanese
  // page who types "Germany" still means DE.
  const en = (type) => new Intl.DisplayNames(['en'], { type, fallback: 'none' });
  const enRegion = en('region');
  const enLanguage = en('language');
  english = {
    countries: new Map(COUNTRIES.map((c) => [fold(enRegion.of(c) || c), c])),
    languages: new Map(LANGUAGES.map((c) => [fold(enLanguage.of(c) || c), c])),
  };
  const fill = (id, names) => document.getElementById(id).replaceChildren(...names.map(([name]) => {
    const o = document.createElement('option');
    o.value = name;
    return o;
  }));
  fill('country-names', countries.names);
  fill('language-names', languages.names);
}

/**
 * The code a field's text names: '' for an empty field, null for a name
 * that matches nothing on the list.
 */
function codeOf(input, own, en) {
  const text = fold(input.value);
  if (!text) return '';
  if (input.dataset.code && fold(input.dataset.shown || '') === text) return input.dataset.code;
  return own.get(text) || en.get(text) || null;
}

export const countryField = (input) => codeOf(input, countries.byName, english.countries);
export const languageField = (input) => codeOf(input, languages.byName, english.languages);

function showCode(input, code, nameOf) {
  const name = code ? nameOf(code) || code : '';
  input.value = name;
  // a stored code Intl cannot name still round-trips unchanged
  input.dataset.code = code || '';
  input.dataset.shown = name;
}

export const showCountry = (input, code) => showCode(input, code, countryName);
export const showLanguage = (input, code) => showCode(input, code, languageName);
