// The development explorer: a query editor that posts to /graphql, and the
// schema's SDL from /schema.graphql with a filter. No inline script or
// style anywhere, so the page runs under the pages' strict CSP.
const $ = (id) => document.getElementById(id);

let sdl = "";

async function loadSchema() {
  try {
    const res = await fetch("/schema.graphql", { credentials: "same-origin" });
    if (!res.ok) throw new Error(`status ${res.status}`);
    sdl = await res.text();
    showSchema();
  } catch (err) {
    $("schema").textContent = `Could not load the schema: ${err.message}`;
    $("schema").classList.add("error");
  }
}

// showSchema prints the definitions (blocks separated by blank lines) that
// mention the filter text, or all of them.
function showSchema() {
  const want = $("filter").value.trim().toLowerCase();
  const blocks = sdl.split(/\n\s*\n/);
  $("schema").textContent = (want ? blocks.filter((b) => b.toLowerCase().includes(want)) : blocks).join("\n\n");
}

async function run() {
  const out = $("result");
  out.classList.remove("error");
  let variables;
  try {
    const text = $("variables").value.trim();
    variables = text ? JSON.parse(text) : undefined;
  } catch (err) {
    out.textContent = `Variables are not JSON: ${err.message}`;
    out.classList.add("error");
    return;
  }
  const headers = { "Content-Type": "application/json", Accept: "application/graphql-response+json, application/json" };
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  $("status").textContent = "…";
  try {
    const res = await fetch("/graphql", {
      method: "POST",
      credentials: "same-origin",
      headers,
      body: JSON.stringify({ query: $("query").value, variables }),
    });
    const body = await res.text();
    $("status").textContent = `(${res.status}, request ${res.headers.get("X-Request-Id") || "?"})`;
    try {
      out.textContent = JSON.stringify(JSON.parse(body), null, 2);
    } catch {
      out.textContent = body;
    }
    if (!res.ok) out.classList.add("error");
  } catch (err) {
    $("status").textContent = "";
    out.textContent = `Request failed: ${err.message}`;
    out.classList.add("error");
  }
}

$("run").addEventListener("click", run);
$("query").addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
    e.preventDefault();
    run();
  }
});
$("filter").addEventListener("input", showSchema);
loadSchema();
