# `make bench` and `make test` each set up .venv from the project's own files, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RESULTS ?= benchmark_results
BENCH_ARGS ?= --batch-sizes 1,8,32 --time-s 3 --warmup-time-s 1

.PHONY: setup bench test test-gpu lint clean report

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	@# the venv takes about 9 GiB (TensorFlow, torch with its CUDA libraries, OpenVINO, Ray): say so before pip fails midway
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); if [ ! -d $(VENV) ] && [ "$$free" -lt 10 ]; then \
	  echo "make setup: .venv needs about 10 GiB free on this disk; $$free GiB are free"; exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.txt -e ".[cpu]"
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

# The default benchmark on whatever this machine has: every available engine, a table at the end.
bench: setup
	$(VENV)/bin/infermeter run mobilenet_v3_large --engines all --results-dir $(RESULTS) $(BENCH_ARGS)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

test-gpu: setup
	$(PY) -m pytest -q -m gpu

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks py_scripts

report: setup
	$(VENV)/bin/infermeter report benchmark_results_final --out benchmark_results_final/report
	cp benchmark_results_final/report/Final_Analysis.pdf Final_Analysis.pdf

clean:
	rm -rf $(VENV) $(RESULTS)
