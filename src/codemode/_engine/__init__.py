"""JavaScript engines behind one interface (`base`): V8 in this process (`miniracer/`) and V8 in
supervised worker processes (`process/`).

Invariant: this package imports only `codemode._protocol`, `codemode.errors` and `codemode._loop`,
never the session layer, so an engine worker process (which imports `codemode._engine.process.
_worker` and nothing else of codemode) starts without loading sessions, tools or formats. This
module imports nothing.
"""
