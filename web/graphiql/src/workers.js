// Monaco asks for a worker per language; build.mjs bundles each as its own
// file next to graphiql.js (classic workers, same origin: CSP worker-src 'self').
globalThis.MonacoEnvironment = {
  getWorker(_id, label) {
    switch (label) {
      case "json":
        return new Worker("/_dev/graphiql/json.worker.js");
      case "graphql":
        return new Worker("/_dev/graphiql/graphql.worker.js");
      default:
        return new Worker("/_dev/graphiql/editor.worker.js");
    }
  },
};
