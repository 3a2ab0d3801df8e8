"""Developer kit: `vivified new plugin` (scaffold) and `vivified demo` (core plus the three
example plugins telling their story). Plugins are built on the SDK (`vivified_sdk`), never on
core's internals."""
