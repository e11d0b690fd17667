.PHONY: demo test bench venv clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	.venv/bin/rlreg demo

test: venv
	@bash scripts/ensure-postgres.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)

bench:
	@bash scripts/bootstrap.sh s3,postgres,test,bench
	@bash scripts/ensure-postgres.sh
	@bash bench/peers/setup.sh
	.venv/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .venv .venv-peers .pytest_cache .hypothesis
