# Herald: the two commands a fresh machine needs.
#   make demo   replay a recorded event stream into .eml files and print a summary
#   make test   install the test tools, then run every test
.PHONY: demo test wasm-target lint bench

CARGO ?= cargo

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

demo: wasm-target
	rm -rf var/demo
	$(CARGO) run --quiet --bin herald -- --state-dir var/demo replay --deliver tests/recordings/skeleton.jsonl
	@echo "mail written to var/demo/mail:"
	@ls var/demo/mail

test: lint
	$(CARGO) test --workspace --lib --bins --tests
	$(CARGO) test --workspace --doc

lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: wasm-target
	$(CARGO) bench --bench invoke
