.PHONY: demo test bench venv clean rllib-check

venv:
	@bash scripts/bootstrap.sh

demo: venv
	.venv/bin/rlreg demo

# Tests run on up to 4 worker processes (pytest-xdist), a file's tests on one of them; PYTEST_ARGS="-n 0" runs
# them in this process.
test: venv
	@bash scripts/ensure-postgres.sh
	.venv/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

bench:
	@bash scripts/bootstrap.sh s3,postgres,test,bench
	@bash scripts/ensure-postgres.sh
	@bash bench/peers/setup.sh
	.venv/bin/python -m bench $(BENCH_ARGS)

# Real RLlib 2.60 (and 2.35 if .venv-peers-235 exists) loads rlreg's --format rllib exports and reads
# rlreg's space dicts (bench/rllib_check.py).
rllib-check:
	@bash scripts/bootstrap.sh
	@bash bench/peers/setup.sh
	.venv/bin/python -m bench.rllib_check

clean:
	rm -rf .venv .venv-peers .pytest_cache .hypothesis
