package plugins

// APIVersion is the version of this SDK (the plugins package, plugintest
// and cmd.Main), "major.minor". The module is tagged v{APIVersion}.{patch}.
// While the major version is 0, a minor version may change the SDK in the
// ways docs/plugins.md ("Compatibility") lists, and only those; a patch
// version never changes it. A plugin may record the version it was built
// against and log it; the core does not refuse plugins by version.
const APIVersion = "0.2"
