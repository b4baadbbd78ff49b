# The two commands of README.md, and a few helpers. `make help` lists them.
.PHONY: help run test lint typecheck services clean bench

help:
	@echo "make run   set up and run web + worker + beat with demo data (embedded or PostgreSQL/Redis)"
	@echo "make test  set up, start PostgreSQL and Redis, and run the whole test suite"
	@echo "make lint  ruff; make typecheck  mypy"
	@echo "make bench the load benchmark (python -m bench load; ARGS=... passes options)"

run:
	scripts/run.sh

test:
	scripts/test.sh

lint:
	scripts/venv.sh requirements-dev.txt
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck:
	scripts/venv.sh requirements-dev.txt
	SCHOOLHOUSE_TESTING=true .venv/bin/mypy .

services:
	scripts/ensure_services.sh

# Seeds schoolhouse_load once (reused after), runs gunicorn + locust, rewrites BENCHMARKS.md's
# "## Load" section. Needs PostgreSQL on 127.0.0.1:5432 (`make services`) and redis-server.
bench:
	scripts/venv.sh requirements-dev.txt
	.venv/bin/python -m bench load $(ARGS)

clean:
	rm -rf var staticfiles .pytest_cache .ruff_cache .mypy_cache
