# Shortcuts; the scripts hold the steps.
.PHONY: test demo bench bench-comm
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash scripts/bench.sh
bench-comm:
	.venv/bin/python bench/comm/run.py --out bench/results
