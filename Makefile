# Shortcuts; the scripts hold the steps.
.PHONY: test demo bench
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash scripts/bench.sh
