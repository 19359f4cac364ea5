// A small GraphQL client and form helpers shared by both pages.
import { t, has, lang, when as whenIn } from './i18n.js';

/** An error answered by the API; code and field come from extensions. */
export class ApiError extends Error {
  constructor(errors, status) {
    const first = errors[0] || {};
    super(first.message || '');
    this.errors = errors;
    this.code = (first.extensions && first.extensions.code) || '';
    this.field = (first.extensions && first.extensions.field) || '';
    this.status = status;
  }
}

/**
 * Posts a query. With a bearer token (the partner key, held in memory only)
 * it is sent as Authorization; otherwise the session cookie is used.
 */
export async function gql(query, variables = {}, bearer = '') {
  // The server answers texts (purpose descriptions …) in the page's language.
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json', 'Accept-Language': lang() };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let res;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      headers,
      credentials: bearer ? 'omit' : 'same-origin',
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError([{ extensions: { code: 'NETWORK' } }], 0);
  }
  let body;
  try {
    body = await res.json();
  } catch {
    throw new ApiError([{ extensions: { code: 'HTTP_STATUS' } }], res.status);
  }
  if (body.errors && body.errors.length) throw new ApiError(body.errors, res.status);
  return body.data;
}

/** Whether the error says the query used a field this server does not have. */
export function isSchemaMismatch(err) {
  return err instanceof ApiError && err.code === 'GRAPHQL_VALIDATION_FAILED';
}

/**
 * The plain-words message of an error, in the page's language: from
 * error.<CODE>.<field path>, error.<CODE>.<last field segment> or
 * error.<CODE>; the server's own message only for a code the catalogue
 * does not know. A page may set err.text to say it better for its context.
 */
export function plain(err) {
  if (err && err.local) return err.message;
  if (err && err.text) return err.text;
  if (!(err instanceof ApiError)) return t('error.PAGE');
  const field = String(err.field || '');
  const keys = [];
  if (field) keys.push(`error.${err.code}.${field}`, `error.${err.code}.${field.split('.').pop()}`);
  keys.push(`error.${err.code}`);
  const key = keys.find((k) => err.code && has(k));
  if (key) return t(key, { status: err.status });
  const m = err.message || '';
  if (m) return m.charAt(0).toUpperCase() + m.slice(1) + (/[.!?。]$/.test(m) ? '' : '.');
  return t('error.UNKNOWN');
}

/** Removes the error messages a previous submit left in form. */
export function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
    el.removeAttribute('aria-errormessage');
  }
  const status = form.querySelector('.form-status');
  if (status) {
    status.textContent = '';
    status.className = 'form-status';
  }
}

let errorSeq = 0;

/**
 * Shows err next to the control named by extensions.field (its last path
 * segment, so "input.profile.country" finds name="country"), or at the
 * form's status line when no control matches.
 */
export function showError(form, err) {
  const msg = plain(err);
  const field = err && err.field ? String(err.field).split('.').pop() : '';
  const control = field ? form.querySelector(`[name="${CSS.escape(field)}"]`) : null;
  if (control) {
    const p = document.createElement('p');
    p.className = 'field-error';
    p.id = `err-${++errorSeq}`;
    p.textContent = msg;
    control.setAttribute('aria-invalid', 'true');
    control.setAttribute('aria-errormessage', p.id);
    const described = (control.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && !x.startsWith('err-'));
    control.setAttribute('aria-describedby', [...described, p.id].join(' '));
    const wrap = control.closest('.field') || control.parentElement;
    wrap.append(p);
    control.focus();
    return;
  }
  setStatus(form, msg, 'error');
}

/** An error found in the page before asking the server, shown next to field. */
export function localError(field, message) {
  return Object.assign(new Error(message), { field, local: true });
}

/** Writes a status line (role=status or alert) at the end of form. */
export function setStatus(form, msg, kind = 'ok') {
  let status = form.querySelector('.form-status');
  if (!status) {
    status = document.createElement('p');
    form.append(status);
  }
  status.className = `form-status ${kind}`;
  status.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  status.textContent = msg;
}

/** Runs fn while the form's submit button is disabled; errors go to the form. */
export async function submitting(form, fn) {
  clearErrors(form);
  const buttons = form.querySelectorAll('button');
  for (const b of buttons) b.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof ApiError) && !err.local) console.error(err);
    showError(form, err);
    return undefined;
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

/** Creates an element: h('p', {class: 'x'}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A date and time in the page's language. */
export const when = whenIn;
