# `make demo` sets up and runs the example agent; `make test` sets up and runs every test,
# `make test-quick` the inner-loop subset.
# Both install what they need (a virtualenv in .venv, npm test servers in tests/mcp_servers and tests/openapi_servers).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := tests/mcp_servers/node_modules/.installed
OPENAPI_STAMP := tests/openapi_servers/node_modules/.installed

.PHONY: demo test test-quick bench soak setup clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): tests/mcp_servers/package.json tests/mcp_servers/package-lock.json
	npm ci --prefix tests/mcp_servers --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(OPENAPI_STAMP): tests/openapi_servers/package.json tests/openapi_servers/package-lock.json
	npm ci --prefix tests/openapi_servers --no-audit --no-fund --loglevel=error
	touch $(OPENAPI_STAMP)

setup: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)

demo: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)
	$(PY) examples/demo.py
	$(PY) examples/agents_demo.py
	$(PY) examples/pydantic_ai_demo.py
	$(PY) examples/langchain_demo.py

# The whole suite on the default engine (worker processes), then the engine-facing suites again
# with V8 in the test process.
IN_PROCESS_SUITES := tests/spec tests/hardening tests/test_agent_loops.py tests/test_mcp_client.py tests/test_cell_logic.py

test: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)
	$(PY) -m pytest -q
	CODEMODE_TEST_ISOLATION=in-process $(PY) -m pytest -q $(IN_PROCESS_SUITES)

# The inner loop: no external servers or processes (`integration`), nothing over about a second
# (`slow`); `make test` runs those too.
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not slow"

bench: $(STAMP) $(NODE_STAMP) $(OPENAPI_STAMP)
	$(PY) -m pip install --quiet pydeno || echo "pydeno did not install; its peer rows will say so"
	$(PY) benchmarks/run_all.py

soak: $(STAMP)
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) build src/*.egg-info tests/mcp_servers/node_modules tests/openapi_servers/node_modules
