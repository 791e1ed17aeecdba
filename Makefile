# Herald: the two commands a fresh machine needs.
#   make demo   replay a recorded event stream into .eml files and print a summary
#   make test   install the test tools, then run every test
.PHONY: demo test test-deps wasm-target lint bench

# Real SMTP peers for the tests and the SMTP benchmark, installed under target/tools.
TOOLS := $(CURDIR)/target/tools
export HERALD_AIOSMTPD_PYTHON := $(TOOLS)/venv/bin/python
export HERALD_SMTP_SINK := $(TOOLS)/postfix/usr/sbin/smtp-sink
export HERALD_SMTP_SOURCE := $(TOOLS)/postfix/usr/sbin/smtp-source

CARGO ?= cargo

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

demo: wasm-target
	rm -rf var/demo
	$(CARGO) run --quiet --bin herald -- --state-dir var/demo replay --deliver tests/recordings/skeleton.jsonl
	@echo "mail written to var/demo/mail:"
	@ls var/demo/mail

# aiosmtpd from PyPI into a venv; smtp-sink/smtp-source from Debian's postfix package, unpacked (no daemon);
# systemd-analyze (Debian's systemd) to verify etc/herald.service; Debian's postgresql for the OMERO
# connector's tests (they start their own server in a temp dir; HERALD_PG_BIN overrides where the binaries are).
test-deps:
	@mkdir -p $(TOOLS)
	@test -x $(HERALD_AIOSMTPD_PYTHON) && $(HERALD_AIOSMTPD_PYTHON) -c 'import aiosmtpd' 2>/dev/null || \
		{ python3 -m venv $(TOOLS)/venv && $(TOOLS)/venv/bin/pip install --quiet aiosmtpd; }
	@test -x $(HERALD_SMTP_SINK) || { \
		apt-get update -qq && \
		cd $(TOOLS) && rm -f postfix_*.deb && apt-get download postfix && \
		dpkg -x postfix_*.deb $(TOOLS)/postfix; }
	@command -v systemd-analyze >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd; }
	@test -n "$$HERALD_PG_BIN" || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq postgresql; }

test: lint test-deps
	$(CARGO) test --workspace --lib --bins --tests
	$(CARGO) test --workspace --doc

lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The example rules are a workspace of their own (built like `herald rule new` crates).
	$(CARGO) fmt --manifest-path rules/examples/Cargo.toml --all -- --check
	CARGO_TARGET_DIR=target/examples $(CARGO) clippy --manifest-path rules/examples/Cargo.toml --all-targets -- -D warnings

bench: wasm-target test-deps
	$(CARGO) bench --bench invoke
	$(CARGO) bench --bench ingest
	$(CARGO) bench --bench smtp
	$(CARGO) bench --bench serve
	$(CARGO) bench --bench pipeline
	$(CARGO) bench --bench relay
	$(CARGO) bench --bench omero
	$(CARGO) bench --bench python
	$(CARGO) bench --bench directory
