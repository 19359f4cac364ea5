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
// It renders each time the page's language is applied (the
// `consentgraph:langchange` event of i18n.js, which the page script starts),
// with the `brand.*` strings of the shared catalogue.

import { gql } from './gql.js';
import { t } from './i18n.js';

const QUERY = '{ operator { name logoUrl policyUrl controller { name email } } }';

let operator = null;

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

function render(lang) {
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
  document.documentElement.dataset.brandLang = lang;
}

async function update(event) {
  const lang = event.detail.lang;
  try {
    // The operator does not depend on the language: read once.
    if (!operator) operator = (await gql(QUERY)).operator;
    if (document.documentElement.lang === lang) render(lang); // a later change wins
  } catch (e) {
    // The stock name and links in the page stay as they are.
    console.warn(`branding: ${e.message}`);
  }
}

document.addEventListener('consentgraph:langchange', update);
