# `make demo` sets up and runs the example agent; `make test` sets up and runs every test,
# `make test-quick` the inner-loop subset.
# Each installs only what it needs: the demo codemode with the agent frameworks and the one npm
# MCP server it talks to; the tests also the test and lint tools, the MCP inspector CLI and the
# OpenAPI mock servers (tests/openapi_servers).
VENV := .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
NODE_DEMO_STAMP := tests/mcp_servers/node_modules/.installed-demo
NODE_STAMP := tests/mcp_servers/node_modules/.installed
OPENAPI_STAMP := tests/openapi_servers/node_modules/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-quick check bench bench-smoke soak setup clean typescript-bundle postgres haproxy

$(DEMO_STAMP): pyproject.toml constraints.txt
	@echo "make demo: installing codemode and the agent frameworks its examples use into $(VENV) (about a minute)..."
	@python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet -c constraints.txt -e '.[agents,pydantic-ai,langchain]'
	@touch $@

# The test install is a superset of the demo's.
$(STAMP): pyproject.toml constraints.txt
	@echo "installing codemode with its test and development tools into $(VENV) (a minute or two)..."
	@python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@ $(DEMO_STAMP)

$(NODE_DEMO_STAMP): tests/mcp_servers/package.json tests/mcp_servers/package-lock.json
	@echo "make demo: installing the MCP server the demo talks to (npm @modelcontextprotocol/server-everything, about 20 s)..."
	@npm ci --prefix tests/mcp_servers --omit=dev --no-audit --no-fund --loglevel=error
	@touch $@

# The test servers: server-everything and the MCP inspector CLI (a superset of the demo's).
$(NODE_STAMP): tests/mcp_servers/package.json tests/mcp_servers/package-lock.json
	@echo "installing the npm MCP test servers into tests/mcp_servers..."
	@npm ci --prefix tests/mcp_servers --no-audit --no-fund --loglevel=error
	@touch $@ $(NODE_DEMO_STAMP)

$(OPENAPI_STAMP): tests/openapi_servers/package.json tests/openapi_servers/package-lock.json
	@echo "installing the OpenAPI test servers (Prism and a 13 MB spec) into tests/openapi_servers..."
	@npm ci --prefix tests/openapi_servers --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)

DEMOS := examples/demo.py examples/agents_demo.py examples/pydantic_ai_demo.py examples/langchain_demo.py

demo: $(DEMO_STAMP) $(NODE_DEMO_STAMP)
	@for demo in $(DEMOS); do echo; echo "make demo: running $$demo"; $(PY) $$demo || exit 1; done

# The whole suite on the default engine (worker processes), then the engine-facing suites again
# with V8 in the test process.
IN_PROCESS_SUITES := tests/spec tests/hardening tests/test_agent_loops.py tests/test_mcp_client.py tests/test_cell_logic.py \
	tests/durable tests/test_determinism.py

test: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP) postgres haproxy
	$(MAKE) check
	$(PY) -m pytest -q
	CODEMODE_TEST_ISOLATION=in-process $(PY) -m pytest -q $(IN_PROCESS_SUITES)
	$(MAKE) bench-smoke

# A private PostgreSQL server for the store tests: Debian's package installed if missing, a cluster
# in .build/postgres started if stopped; tests/postgres_support.py reads the URL it writes there.
postgres:
	@scripts/postgres.sh

# HAProxy for the two-replica tests (tests/test_mcp_replicas.py starts its own, from
# scripts/haproxy-test.cfg): Debian's package, installed if missing.
haproxy:
	@scripts/haproxy.sh

# The net: lint, strict types on src/, the import layering (.importlinter), the public surface.
check: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/pyright
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests/test_exports.py

# The inner loop: no external servers or processes (`integration`), nothing over about a second
# (`slow`); `make test` runs those too.
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not slow"

bench: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)
	$(PY) -m pip install --quiet pydeno || echo "pydeno did not install; its peer rows will say so"
	$(PY) benchmarks/run_all.py

soak: $(STAMP)
	$(PY) benchmarks/soak.py

# Every benchmark at a tiny size against the public API (about a minute), so none can rot; the
# report goes to a temp file (run_all.py prints where), never to benchmarks/RESULTS.md. In `make test`.
bench-smoke: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)
	$(PY) benchmarks/run_all.py --smoke
	$(PY) benchmarks/soak.py --smoke

# The TypeScript strippers bundled into the package (src/codemode/_typescript/strippers.js and
# its NOTICE.md), rebuilt from the versions pinned in scripts/typescript_bundle/package-lock.json.
typescript-bundle:
	npm ci --prefix scripts/typescript_bundle --no-audit --no-fund --loglevel=error
	npm run --prefix scripts/typescript_bundle build

clean:
	scripts/postgres.sh stop
	rm -rf $(VENV) build .build src/*.egg-info tests/mcp_servers/node_modules tests/openapi_servers/node_modules scripts/typescript_bundle/node_modules
