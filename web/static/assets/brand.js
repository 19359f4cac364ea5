// The operator's branding on both pages: logo and name in the header, who
// is responsible for the data and the policy link in the footer. The values
// come from the public `operator` field (the --config file's `branding:` and
// `controller:`); the accent colour comes separately, through /brand.css.
//
// The page marks the places with data attributes and this script fills them:
//   data-brand-name        the operator's name
//   data-brand-logo        an <img>, shown only when a logo is configured
//   data-brand-controller  "<controller> is responsible for your personal data."
//   data-brand-policy      a link to the privacy policy
// It renders in the language of <html lang> and again on
// `consentgraph:langchange`, with the `brand.*` strings of /locales/<lang>.json.

const QUERY = '{ operator { name logoUrl policyUrl controller { name email } } }';

let operator = null;
const catalogues = new Map();

// The page's language, reduced to the catalogue files' tags (ja-JP -> ja).
function pageLang() {
  return (document.documentElement.lang || 'en').toLowerCase().split('-')[0] || 'en';
}

async function catalogue(lang) {
  if (!catalogues.has(lang)) {
    catalogues.set(lang, fetch(`/locales/${encodeURIComponent(lang)}.json`)
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null));
  }
  return (await catalogues.get(lang)) || (lang === 'en' ? {} : catalogue('en'));
}

function format(text, vars) {
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? vars[k] : m));
}

async function loadOperator(lang) {
  const res = await fetch('/graphql', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Accept-Language': lang },
    body: JSON.stringify({ query: QUERY }),
  });
  const body = await res.json();
  if (!body.data || !body.data.operator) throw new Error('the operator could not be read');
  return body.data.operator;
}

// Only web links and paths on this server become hrefs or image sources
// (the server validates them too; this keeps a bad answer inert).
function safe(url) {
  try {
    const u = new URL(url, window.location.origin);
    return u.protocol === 'https:' || u.origin === window.location.origin ? u.href : '';
  } catch {
    return '';
  }
}

function render(strings) {
  const t = (key, vars = {}) => format(strings[key] || key, vars);
  for (const el of document.querySelectorAll('[data-brand-name]')) el.textContent = operator.name;
  const logo = safe(operator.logoUrl || '');
  for (const img of document.querySelectorAll('img[data-brand-logo]')) {
    // Decorative: the name is written next to it.
    img.alt = '';
    if (logo) img.src = logo;
    img.hidden = !logo;
    const brand = img.closest('.brand');
    if (brand) brand.classList.toggle('has-logo', Boolean(logo));
  }
  for (const el of document.querySelectorAll('[data-brand-controller]')) {
    el.replaceChildren(t('brand.controller', { name: operator.controller.name }));
    if (operator.controller.email) {
      const mail = document.createElement('a');
      mail.href = `mailto:${operator.controller.email}`;
      mail.textContent = operator.controller.email;
      mail.dataset.brandContact = '';
      el.append(' ', t('brand.contact'), ' ', mail);
    }
  }
  const policy = safe(operator.policyUrl) || '/privacy';
  for (const a of document.querySelectorAll('a[data-brand-policy]')) {
    a.href = policy;
    a.textContent = t('brand.policy');
  }
  document.documentElement.dataset.brandLang = strings['_meta.tag'] || '';
}

let pending = 0;
async function update() {
  const lang = pageLang();
  const run = ++pending;
  try {
    if (!operator) operator = await loadOperator(lang);
    const strings = await catalogue(lang);
    if (run === pending) render(strings); // a later language change wins
  } catch (e) {
    // The stock name and links in the page stay as they are.
    console.warn(`branding: ${e.message}`);
  }
}

document.addEventListener('consentgraph:langchange', update);
update();
