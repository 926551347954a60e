# Two commands for a fresh machine; each sets up its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: demo test bench study clean fashion-mnist

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,serve]"
	touch $@

# Fashion-MNIST: $$REAR_DATA, else Debian's package (installed here when we are root with apt),
# else `rear` downloads it from the canonical source with checksums.
fashion-mnist:
	@if [ -z "$$REAR_DATA" ] && [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null; then \
		apt-get install -y -q dataset-fashion-mnist >/dev/null || echo "apt-get could not install dataset-fashion-mnist; rear will try to download it"; fi

demo: $(VENV)/.installed fashion-mnist
	$(PY) -m rear demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# AR vs reAR and the two ablations, several seeds, on two backbones and two code sizes (docs/study.md);
# rerun to continue. The RAR study goes first: the others share its instruments.
study: $(VENV)/.installed fashion-mnist
	$(PY) -m rear study configs/fmnist/study.yaml
	$(PY) -m rear study configs/fmnist/study_llama.yaml
	$(PY) -m rear study configs/fmnist/study_z64.yaml

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_sampling.py

clean:
	rm -rf $(VENV) runs/demo
